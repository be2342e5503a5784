"""The Embeddings tab of ui/app.py against a real `python -m kerasbert.serve` serving the toy
embedding model of tests/test_client_embeddings.py (embedding = letter counts a..z; re-saved with
a `metadata` signature saying task embedding, see tests/test_ui.py), with Streamlit's AppTest:
the similarity heatmap's numbers, the nearest-neighbour table, and what the tab says for a
signature without embeddings and for a model of another task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from test_client_embeddings import letter_counts
from test_ui import EMBEDDING_MODEL as MODEL_NAME
from test_ui import MODEL_NAME as CLASSIFIER
from test_ui import opened_tab, shared_ui_server

APP = Path(__file__).resolve().parents[1] / "ui" / "app.py"
SENTENCES = ["abc", "  cab  ", "", "xyz zz", "aaab"]  # blank lines are skipped, spaces stripped
SHOWN = ["abc", "cab", "xyz zz", "aaab"]


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    return shared_ui_server(request, tmp_path_factory)  # the toys of test_ui.py, with their metadata


@pytest.fixture()
def at(server, monkeypatch):
    """The page connected to the toy embedding server."""
    monkeypatch.setenv("KERASBERT_SERVER", server.address)
    monkeypatch.setenv("KERASBERT_MODEL", MODEL_NAME)
    return AppTest.from_file(str(APP), default_timeout=60).run()


def cosine(a: str, b: str) -> float:
    u, v = letter_counts(a), letter_counts(b)
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


def heatmap_table(at: AppTest):
    """The (sentence, other, cosine) rows behind the page's single heatmap."""
    [chart] = at.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    assert {layer["mark"]["type"] for layer in spec["layer"]} == {"rect", "text"}
    [dataset] = chart.proto.datasets
    return pa.ipc.open_stream(dataset.data.data).read_pandas()


def test_tabs_and_classify_tab_points_to_embeddings(at):
    assert not at.exception and not at.error
    assert [t.label for t in at.tabs] == ["Classify", "Embeddings", "NER", "Question answering"]
    assert opened_tab(at) == "Embeddings"  # the model's metadata says embedding
    assert f"Model '{MODEL_NAME}' is an embedding model. Pick a classification or regression model" in at.info[0].value
    assert "Pick a token-classification model" in at.info[1].value
    assert "Pick a question-answering model" in at.info[2].value
    assert "26-dimensional" in at.caption[-1].value  # from the model's metadata


def test_similarity_heatmap_shows_the_cosine_matrix(at):
    at.text_area(key="emb_sentences").input("\n".join(SENTENCES)).run()
    assert not at.get("vega_lite_chart")  # nothing before the click
    at.button(key="emb_run").click().run()
    assert not at.exception and not at.error
    table = heatmap_table(at)
    labels = [f"{i}. {s}" for i, s in enumerate(SHOWN, 1)]
    assert table["sentence"].tolist() == [a for a in labels for _ in labels]  # row-major, input order
    assert table["other"].tolist() == labels * len(labels)
    expected = [cosine(a, b) for a in SHOWN for b in SHOWN]
    np.testing.assert_allclose(table["cosine"], expected, atol=1e-6)
    assert table["cosine"].tolist()[1] == pytest.approx(1.0)  # "abc" ~ "cab": same letters

    at.text_area(key="emb_sentences").input("abc\nxyz").run()  # edited sentences: the old map goes
    assert not at.get("vega_lite_chart")


def test_nearest_neighbour_search(at):
    at.text_area(key="emb_sentences").input("\n".join(SENTENCES)).run()
    at.text_input(key="emb_query").input("bca").run()
    at.number_input(key="emb_k").set_value(2).run()
    at.button(key="emb_search").click().run()
    assert not at.exception and not at.error
    [table] = at.dataframe
    hits = table.value
    assert hits["rank"].tolist() == [1, 2]
    assert hits["sentence"].tolist() == ["abc", "cab"]  # cosine 1.0 each; ties keep input order
    assert hits["cosine"].tolist() == pytest.approx([1.0, 1.0], abs=1e-4)

    at.text_input(key="emb_query").input("zzzy").run()
    at.number_input(key="emb_k").set_value(10).run()  # more than there are sentences: all, ranked
    at.button(key="emb_search").click().run()
    hits = at.dataframe[0].value
    assert hits["sentence"].tolist() == ["xyz zz", "abc", "cab", "aaab"]
    assert hits["cosine"].tolist()[0] == pytest.approx(round(cosine("zzzy", "xyz zz"), 4), abs=1e-4)


def test_empty_inputs_warn_without_calling(at):
    at.button(key="emb_run").click().run()
    assert [w.value for w in at.warning] == ["Type at least one sentence (one per line) first."]
    at.text_area(key="emb_sentences").input("abc").run()
    at.button(key="emb_search").click().run()
    assert [w.value for w in at.warning] == ["Type the sentences above and a query first."]
    assert not at.exception and not at.dataframe and not at.get("vega_lite_chart")


def test_signature_without_embeddings_says_so(at):
    at.text_input(key="signature").set_value("score").run()  # the toy's signature returning only `score`
    assert not at.exception and not at.error
    assert opened_tab(at) == "Embeddings"  # the task comes from the model, not from the signature's outputs
    [message] = [i.value for i in at.info if "embeddings" in i.value and "Pick" not in i.value]
    assert "returns no `embeddings` (its outputs: `score`)" in message
    assert "`serving_default`" in message
    assert not [a for a in at.text_area if a.key == "emb_sentences"]
    assert not [b for b in at.button if b.key in ("emb_run", "emb_search")]


def test_classifier_on_the_embeddings_tab_says_which_model_to_pick(at):
    at.sidebar.text_input(key="model").set_value(CLASSIFIER).run()
    assert not at.exception and not at.error
    assert opened_tab(at) == "Classify"
    message = f"Model '{CLASSIFIER}' is a classification model. Pick an embedding model in the sidebar"
    assert [i.value for i in at.info if i.value.startswith(message)]
    assert "--mode embedding" in at.code[0].value
    assert not [a for a in at.text_area if a.key == "emb_sentences"]
