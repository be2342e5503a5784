"""The multipage app ui/app.py against one real ``python -m kerasbert.serve`` (gRPC, REST, Prometheus) serving
every kind of model it has a page for (tests/ui_utils.py: toy classifier, regression and embedder, a model
without metadata, a real tiny NER tagger and the session's tiny QA model).

Streamlit's AppTest drives each page (Classify, NER, Question answering, Embeddings, Server), the
navigation that follows the model, the messages for a down server, a missing model and a model of another
task. One real headless Chromium (Debian's ``chromium``, tests/browser_utils.py) then opens every page in
turn in one browser session, as a person would, checks what it shows and takes a screenshot of each
(KERASBERT_UPDATE_SCREENSHOTS=1 refreshes docs/images/ui_<page>.png; they go to the test's tmp folder
otherwise).
"""

from __future__ import annotations

import html
import json
import os
import re
import time
import urllib.request

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from browser_utils import TABLE_DRAWN, chromium_page, needs_chromium
from conftest import REPO
from kerasbert import contract
from kerasbert.client import Client
from serving_utils import free_port
from test_client import expected_positive
from test_client_embeddings import letter_counts
from ui_utils import (
    APP,
    CLASSIFIER,
    EMBEDDING_MODEL,
    NER_MODEL,
    OLD_MODEL,
    QA_MODEL,
    REGRESSION_MODEL,
    app_env,
    chart_data,
    running_streamlit,
    ui_server,
)

PAGE_FILES = {
    "Classify": "views/classify.py",
    "NER": "views/ner.py",
    "Question answering": "views/qa.py",
    "Embeddings": "views/embeddings.py",
    "Server": "views/server.py",
}


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    return ui_server(request, tmp_path_factory)


def open_app(monkeypatch, server, model: str, address: str | None = None) -> AppTest:
    """The app's first run for ``model`` (environment defaults pointing at ``server``)."""
    app_env(monkeypatch, server, model, address)
    return AppTest.from_file(str(APP), default_timeout=60).run()


def page_title(at: AppTest) -> str:
    [title] = [t.value for t in at.main.title]
    return title


def pick(at: AppTest, model: str) -> AppTest:
    """Types ``model`` into the sidebar's model field."""
    return at.sidebar.text_input(key="model_field").set_value(model).run()


def shown_text(at: AppTest) -> str:
    """Every message, caption, markdown and code block of the main area, one per line."""
    parts = [e.value for kind in ("error", "warning", "info", "caption", "markdown", "code") for e in at.main.get(kind)]
    return "\n".join(str(p) for p in parts)


def html_blocks(at: AppTest) -> list[str]:
    return [element.proto.body for element in at.get("html")]


def chip_tokens(block: str) -> list[str]:
    """The WordPieces of a tokens block, in order."""
    return [html.unescape(t) for t in re.findall(r'<span class="kb-token"[^>]*>([^<]*)', block)]


# --- pages follow the model --------------------------------------------------------------------------


def test_each_model_opens_the_page_of_its_task(server, monkeypatch):
    at = open_app(monkeypatch, server, CLASSIFIER)
    assert not at.exception and not at.error
    assert page_title(at) == "Classify"  # the model's metadata says classification
    assert at.sidebar.success[0].value == f"Model '{CLASSIFIER}' (classification): v1 AVAILABLE"
    for model, title in [
        (NER_MODEL, "NER"),
        (QA_MODEL, "Question answering"),
        (EMBEDDING_MODEL, "Embeddings"),
        (REGRESSION_MODEL, "Classify"),  # (regression models share the Classify page)
    ]:
        pick(at, model)
        assert not at.exception and not at.error, model
        assert page_title(at) == title, model
        assert at.sidebar.text_input(key="model_field").value == model  # the field keeps the new name
    # The Server page stays where it is when the model changes there.
    at.switch_page(PAGE_FILES["Server"]).run()
    pick(at, NER_MODEL)
    assert page_title(at) == "Server"


@pytest.mark.parametrize(
    "title, fitting, command",
    [
        ("NER", NER_MODEL, "--task token_classification"),
        ("Question answering", QA_MODEL, "--task question_answering"),
        ("Embeddings", EMBEDDING_MODEL, "--mode embedding"),
    ],
)
def test_a_page_of_another_task_says_which_model_to_pick_and_offers_it(server, monkeypatch, title, fitting, command):
    at = open_app(monkeypatch, server, CLASSIFIER)
    at.switch_page(PAGE_FILES[title]).run()
    assert not at.exception and not at.error and page_title(at) == title
    needs = {"NER": "a token-classification (NER) model", "Question answering": "a question-answering model"}
    [message] = at.main.info
    assert message.value == (
        f"Model '{CLASSIFIER}' is a classification model. This page needs "
        f"{needs.get(title, 'an embedding model')}: pick one below or in the sidebar, or make one:"
    )
    [code] = at.main.code
    assert command in code.value
    [offer] = [b for b in at.main.button if b.label.startswith("Use ")]  # the one served model that fits
    assert offer.label.startswith(f"Use '{fitting}' (")
    offer.click().run()
    assert not at.exception and not at.error
    assert page_title(at) == title and not at.main.info  # the page now works with that model
    assert at.sidebar.text_input(key="model_field").value == fitting
    assert at.main.button  # its own button (Find entities, Answer, Compare)


def test_model_without_metadata_says_how_to_reexport(server, monkeypatch):
    at = open_app(monkeypatch, server, OLD_MODEL)  # the toy, saved without `metadata`
    assert not at.exception and not at.error
    [message] = at.main.warning
    assert message.value.startswith(f"Model '{OLD_MODEL}' does not say which task it performs")
    assert f"no kerasbert `{contract.METADATA_SIGNATURE}` signature" in message.value
    assert [c.value for c in at.code] == [f"python -m kerasbert.export --run_dir runs/{OLD_MODEL}"]
    assert not at.text_area and not at.main.button  # no guessing which page fits
    assert "v1 AVAILABLE" in at.sidebar.success[0].value  # the server and model themselves are fine


# --- errors: one message each, with the command that fixes it ------------------------------------------


def test_dead_server_says_once_what_to_start_with_its_port(server, monkeypatch):
    port = free_port()  # nothing listens there
    at = open_app(monkeypatch, server, CLASSIFIER, address=f"127.0.0.1:{port}")
    assert not at.exception
    assert [e.value for e in at.main.error] == [f"No server answers at 127.0.0.1:{port}."]
    assert [c.value for c in at.main.code] == [
        f"python -m kerasbert.serve --port {port} --model_name {CLASSIFIER} --model_base_path exports/{CLASSIFIER}"
    ]
    assert not at.sidebar.error and not at.sidebar.success  # said once, on the page
    assert not at.text_area and not at.main.button  # nothing to click that could fail
    at.switch_page(PAGE_FILES["Server"]).run()
    assert [e.value for e in at.main.error] == [f"No server answers at 127.0.0.1:{port}."]
    # The address fixed in the sidebar: the page works at once.
    at.sidebar.text_input(key="server_field").set_value(server.address).run()
    assert not at.error and page_title(at) == "Server" and at.dataframe


def test_missing_model_is_named_once_with_the_served_ones_and_the_command(server, monkeypatch):
    at = open_app(monkeypatch, server, "nope")
    assert not at.exception
    [error] = at.main.error
    assert error.value == f"Model 'nope' is not served at {server.address}."
    text = shown_text(at)
    assert text.count("not served") == 1 and text.count("'nope'") == 1  # no "... is not served ... not served"
    offers = [b.label for b in at.main.button]
    assert offers == [
        "Use 'toy' (classification)",
        "Use 'toy_score' (regression)",
        "Use 'toy_embedder' (embedding)",
        "Use 'ner' (token_classification)",
        "Use 'qa' (question_answering)",
    ]  # toy_old does not say its task, so it is not offered
    assert [c.value for c in at.main.code] == [
        f"python -m kerasbert.serve --port {server.port} --model_name nope --model_base_path exports/nope"
    ]
    at.main.button[3].click().run()
    assert page_title(at) == "NER" and not at.error


# --- Classify -------------------------------------------------------------------------------------------


def probability_spec(at: AppTest) -> tuple[dict, object]:
    [chart] = at.get("vega_lite_chart")
    return json.loads(chart.proto.spec), chart_data(chart)


def test_classify_shows_label_probabilities_on_a_fixed_axis_and_tokens(server, monkeypatch):
    at = open_app(monkeypatch, server, CLASSIFIER)
    assert [c.value for c in at.main.caption] == [
        f"Model '{CLASSIFIER}' sorts text into the classes negative, positive."
    ]
    text = "a quiet evening out"
    p = expected_positive(text)  # 8 vowels / 19 chars -> negative
    at.text_area(key="text").input(text).run()
    at.button(key="run").click().run()
    assert not at.exception and not at.error
    assert [(m.label, m.value) for m in at.metric] == [("Predicted label", "negative"), ("Probability", f"{1 - p:.1%}")]
    spec, table = probability_spec(at)
    assert table["class"].tolist() == ["negative", "positive"]
    assert table["probability"].tolist() == pytest.approx([1 - p, p], abs=1e-6)
    assert table["predicted"].tolist() == [True, False]
    bars, outside, inside = spec["layer"]
    assert bars["mark"]["type"] == "bar"
    assert bars["encoding"]["x"]["scale"]["domain"] == [0, 1]  # fixed, not auto-scaled to the largest bar
    assert bars["encoding"]["x"]["axis"]["values"] == [0, 0.25, 0.5, 0.75, 1.0]
    for layer in (outside, inside):  # the values written on the bars, as percentages
        assert layer["mark"]["type"] == "text" and layer["encoding"]["text"]["format"] == ".1%"
    assert bars["encoding"]["color"]["condition"]["value"] == "#2563eb"  # the predicted class stands out
    # Tokens: the toy's `tokens` signature, called through the client's plain predict().
    [expander] = [e for e in at.expander if e.label.startswith("Tokens")]
    assert expander.label == "Tokens: 4 WordPieces"
    [block] = [b for b in html_blocks(at) if "kb-tokens" in b]
    assert chip_tokens(block) == ["a", "quiet", "evening", "out"]

    at.text_area(key="text").input("aeiou").run()  # new text: the old result disappears
    assert not at.metric and not at.get("vega_lite_chart")
    at.button(key="run").click().run()
    assert [m.value for m in at.metric] == ["positive", "100.0%"]
    spec, table = probability_spec(at)
    assert table["inside"].tolist() == [False, True]  # 100% is written inside its bar, not past the axis


def test_text_pair_field_follows_the_signature(server, monkeypatch):
    at = open_app(monkeypatch, server, CLASSIFIER)
    at.text_input(key="signature").set_value("pair").run()
    assert [a.label for a in at.text_area] == ["Text", "Text pair"]
    at.text_area(key="text").input("xyz").run()
    at.button(key="run").click().run()
    assert "text pair" in at.warning[0].value and not at.metric  # both texts needed
    at.text_area(key="text_pair").input("aaaaaaa").run()
    at.button(key="run").click().run()
    assert at.metric[0].value == "positive"
    assert probability_spec(at)[1]["probability"][1] == pytest.approx(expected_positive("xyzaaaaaaa"), abs=1e-6)


def test_regression_model_shows_score_and_says_it_has_no_tokens(server, monkeypatch):
    at = open_app(monkeypatch, server, REGRESSION_MODEL)
    assert page_title(at) == "Classify" and at.button(key="run").label == "Score"
    at.button(key="run").click().run()
    assert [w.value for w in at.warning] == ["Type the text first."] and not at.metric
    at.text_area(key="text").input("banana").run()
    at.button(key="run").click().run()
    assert [(m.label, m.value) for m in at.metric] == [("Score", f"{5 * expected_positive('banana'):.4f}")]
    assert not at.get("vega_lite_chart")
    [note] = [c.value for c in at.expander[0].caption]
    assert note == (
        f"Model '{REGRESSION_MODEL}' has no `tokens` signature, so the server cannot show its WordPieces "
        "(its signatures: `metadata`, `serving_default`)."
    )


# --- NER ------------------------------------------------------------------------------------------------

# A text with runs of spaces, an emoji and HTML that must show as text, not as markup.
NER_TEXT = "Mr. Jones flew from  Berlin to Rome 🙂 with <b>Mr. Smith</b> & friends."
NER_EXPECTED = [("Jones", "PER", 4, 9), ("Berlin", "LOC", 21, 27), ("Rome", "LOC", 31, 35), ("Smith", "PER", 50, 55)]


def visible_text(fragment: str) -> str:
    """What a reader sees in the highlighted text, minus the labels: tags stripped, entities unescaped."""
    without_labels = re.sub(r'<span class="kb-label"[^>]*>[^<]*</span>', "", fragment)
    return html.unescape(re.sub(r"<[^>]+>", "", without_labels))


def submit(at: AppTest, button: str, **fields: str) -> AppTest:
    """Types each field (key=text) and clicks ``button``; the page must answer without an error."""
    for key, text in fields.items():
        next(w for w in [*at.text_area, *at.text_input] if w.key == key).input(text)
    at.button(key=button).click().run()
    assert not at.exception and not at.error
    return at


def find_entities(at: AppTest, text: str) -> AppTest:
    return submit(at, "ner_run", ner_text=text)


def test_ner_highlights_entities_at_their_offsets_with_a_table_and_tagged_tokens(server, monkeypatch):
    at = open_app(monkeypatch, server, NER_MODEL)
    assert page_title(at) == "NER"
    assert f"Model '{NER_MODEL}' finds entities of the types LOC, PER." in [c.value for c in at.caption]
    assert at.text_area(key="ner_text").value.startswith("Mr. Smith flew from London")  # the prefilled example
    assert not at.get("html") and not at.dataframe  # nothing before the click
    find_entities(at, NER_TEXT)
    table, tokens = at.dataframe
    rows = table.value
    assert list(rows.columns) == ["entity", "type", "start", "end", "score"]
    assert list(zip(rows["entity"], rows["type"], rows["start"], rows["end"])) == NER_EXPECTED
    assert all(NER_TEXT[start:end] == entity for entity, _, start, end in NER_EXPECTED)
    assert (rows["score"] > 0.5).all() and (rows["score"] <= 1).all()

    legend, highlighted, token_block = html_blocks(at)
    assert re.findall(r'class="kb-legend-item" data-label="(\w+)"', legend) == ["LOC", "PER"]
    colours = dict(re.findall(r'data-label="(\w+)" style="background:(#[0-9a-f]{6})', legend))
    assert len(set(colours.values())) == 2  # one colour per type
    marks = re.findall(r'<mark class="kb-entity" data-label="(\w+)" title="[^"]*" style="background:(#\w+)[^"]*">'
                       r'([^<]*)<span class="kb-label"[^>]*>(\w+)</span></mark>', highlighted)  # fmt: skip
    assert marks == [(label, colours[label], entity, label) for entity, label, _, _ in NER_EXPECTED]
    assert visible_text(highlighted) == NER_TEXT  # every character, in order, spaces and emoji included
    assert "&lt;b&gt;Mr. " in highlighted and "&amp; friends" in highlighted and "<b>" not in highlighted

    # The tokens signature: each WordPiece with its tag, probability and offsets.
    tags = tokens.value
    assert list(tags.columns) == ["token", "tag", "probability", "start", "end"]
    expected_tokens = [("mr", "O"), (".", "O"), ("jones", "B-PER"), ("flew", "O"), ("from", "O"), ("berlin", "B-LOC")]
    assert list(zip(tags["token"], tags["tag"]))[:6] == expected_tokens
    assert tags["start"].tolist()[:3] == [0, 2, 4] and tags["end"].tolist()[2] == 9
    assert chip_tokens(token_block)[:6] == [t for t, _ in expected_tokens]
    assert re.findall(r'class="kb-tag"[^>]*>([^<]*)', token_block)[:2] == ["B-PER", "B-LOC"]


def test_ner_without_entities_and_new_text(server, monkeypatch):
    at = open_app(monkeypatch, server, NER_MODEL)
    find_entities(at, "we met friends today.")
    assert [i.value for i in at.info] == ["No entities found."]
    [highlighted] = [h for h in html_blocks(at) if "kb-ner-text" in h]
    assert "<mark" not in highlighted and visible_text(highlighted) == "we met friends today."
    assert at.dataframe[0].value["token"].tolist()[:2] == ["[UNK]", "met"]  # only the tokens table
    at.text_area(key="ner_text").input("Mr. Evans in Rome").run()  # not asked yet: the old result goes
    assert not at.dataframe and not at.get("html")
    at.text_area(key="ner_text").input("   ").run()
    at.button(key="ner_run").click().run()
    assert [w.value for w in at.warning] == ["Type a text first."] and not at.dataframe


# --- Question answering ---------------------------------------------------------------------------------

QUESTION = "room and John Smith"
CONTEXT = "Yesterday John Smith went to New York 🗽 with <b>friends</b> & then to Café Müller."


def served_answer(server, question: str, context: str) -> dict:
    with Client(target=server.address, model_name=QA_MODEL) as client:
        return client.answer(question, context)


def ask(at: AppTest, question: str, context: str) -> AppTest:
    return submit(at, "qa_run", qa_question=question, qa_context=context)


def test_qa_highlights_the_answer_at_its_raw_offsets_with_the_n_best(server, monkeypatch):
    expected = served_answer(server, QUESTION, CONTEXT)
    assert expected["answer"] == "New York" and expected["start"] == CONTEXT.index("New York")
    at = open_app(monkeypatch, server, QA_MODEL)
    assert page_title(at) == "Question answering"
    assert (
        f"Model '{QA_MODEL}' answers with a span of the paragraph (at most 4 WordPieces) and its 5 best candidates."
        in [c.value for c in at.caption]
    )
    assert at.text_input(key="qa_question").value == "Where did John Smith go?"  # the prefilled example
    ask(at, QUESTION, CONTEXT)
    answer, score = at.metric
    assert (answer.label, answer.value) == ("Answer", "New York")
    assert (score.label, score.value) == ("Score", f"{expected['score']:.1%}")
    [block] = [b for b in html_blocks(at) if "kb-qa-context" in b]
    [(start, end, marked)] = re.findall(
        r'<mark class="kb-answer" data-start="(\d+)" data-end="(\d+)"[^>]*>([^<]*)</mark>', block
    )
    assert (int(start), int(end)) == (expected["start"], expected["end"])
    assert html.unescape(marked) == CONTEXT[int(start) : int(end)] == "New York"
    before, after = block.split("<mark", 1)[0], block.split("</mark>", 1)[1]
    assert html.unescape(re.sub(r"<[^>]+>", "", before)) == CONTEXT[: int(start)]
    assert html.unescape(re.sub(r"<[^>]+>", "", after)) == CONTEXT[int(end) :]  # 🗽, the HTML and the accents
    assert "&lt;b&gt;friends&lt;/b&gt; &amp; then to Café Müller." in block and "<b>" not in block
    rows = at.dataframe[0].value  # the n-best table (then the token tables)
    assert list(zip(rows["answer"], rows["start"], rows["end"])) == [
        (c["answer"], c["start"], c["end"]) for c in expected["n_best"]
    ]
    assert rows["score"].tolist() == pytest.approx([c["score"] for c in expected["n_best"]], abs=1e-5)
    assert all(CONTEXT[s:e] == a for a, s, e in zip(rows["answer"], rows["start"], rows["end"]))
    # Tokens of the question and of the paragraph, each WordPiece at its offsets into the raw text.
    [expander] = [e for e in at.expander if e.label.startswith("Tokens")]
    assert [c.value for c in expander.caption] == ["Question", "Paragraph"]
    for text, table in zip((QUESTION, CONTEXT), [d.value for d in at.dataframe[1:]]):
        known = [(t, s, e) for t, s, e in zip(table["token"], table["start"], table["end"]) if t != "[UNK]"]
        assert all(text[s:e].lower() == t for t, s, e in known), known
        assert [t for t, _, _ in known][:4] == (
            ["room", "and", "john", "smith"] if text == QUESTION else ["yesterday", "john", "smith", "went"]
        )


def test_qa_empty_inputs_warn_and_new_input_hides_the_old_answer(server, monkeypatch):
    at = open_app(monkeypatch, server, QA_MODEL)
    for question, context, warning in [
        ("  ", CONTEXT, "Type a question first."),
        ("", "", "Type a question and a paragraph first."),
    ]:
        at.text_input(key="qa_question").input(question)
        at.text_area(key="qa_context").input(context).run()
        at.button(key="qa_run").click().run()
        assert [w.value for w in at.warning] == [warning] and not at.metric
    ask(at, QUESTION, CONTEXT)
    at.text_input(key="qa_question").input("staff and New York").run()  # not asked yet: the old answer goes
    assert not at.metric and not at.dataframe and not at.get("html")
    at.button(key="qa_run").click().run()
    assert at.metric[0].value == served_answer(server, "staff and New York", CONTEXT)["answer"] == "John Smith"
    ask(at, QUESTION, "\u200b")  # no WordPiece at all: no candidate span
    assert [i.value for i in at.main.info] == ["The model found no answer in this paragraph."]


# --- Embeddings -----------------------------------------------------------------------------------------

SENTENCES = ["abc", "  cab  ", "", "xyz zz", "aaab"]  # blank lines are skipped, spaces stripped
SHOWN = ["abc", "cab", "xyz zz", "aaab"]


def cosine(a: str, b: str) -> float:
    u, v = letter_counts(a), letter_counts(b)
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


def test_embeddings_heatmap_tokens_and_search(server, monkeypatch):
    at = open_app(monkeypatch, server, EMBEDDING_MODEL)
    assert page_title(at) == "Embeddings"
    assert "26-dimensional" in at.main.caption[0].value  # from GetModelMetadata
    at.button(key="emb_run").click().run()
    assert [w.value for w in at.warning] == ["Type at least one sentence (one per line) first."]
    at.text_area(key="emb_sentences").input("\n".join(SENTENCES)).run()
    at.button(key="emb_run").click().run()
    assert not at.exception and not at.error
    [chart] = at.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    assert {layer["mark"]["type"] for layer in spec["layer"]} == {"rect", "text"}
    legend = spec["layer"][0]["encoding"]["color"]["legend"]
    assert legend["orient"] == "bottom" and legend["values"] == [-1, -0.5, 0, 0.5, 1]  # "-1" has room
    assert spec["height"] == 44 * len(SHOWN) + 110  # the rows, the top axis and the legend
    table = chart_data(chart)
    labels = [f"{i}. {s}" for i, s in enumerate(SHOWN, 1)]
    assert table["sentence"].tolist() == [a for a in labels for _ in labels]  # row-major, input order
    np.testing.assert_allclose(table["cosine"], [cosine(a, b) for a in SHOWN for b in SHOWN], atol=1e-6)
    # Tokens of every sentence (the toy's `tokens` signature: its words; mask drops the padding).
    [expander] = [e for e in at.expander if e.label.startswith("Tokens")]
    assert expander.label == "Tokens: 5 WordPieces"
    assert [chip_tokens(b) for b in html_blocks(at) if "kb-tokens" in b] == [["abc"], ["cab"], ["xyz", "zz"], ["aaab"]]
    assert [c.value for c in expander.caption] == SHOWN

    at.text_input(key="emb_query").input("bca").run()
    at.number_input(key="emb_k").set_value(2).run()
    at.button(key="emb_search").click().run()
    hits = at.dataframe[-1].value
    assert hits["sentence"].tolist() == ["abc", "cab"]  # cosine 1.0 each; ties keep input order
    assert hits["cosine"].tolist() == pytest.approx([1.0, 1.0], abs=1e-4)
    at.text_area(key="emb_sentences").input("abc\nxyz").run()  # edited sentences: the old map and hits go
    assert not at.get("vega_lite_chart") and not at.dataframe


def test_embedding_signature_without_embeddings_says_so(server, monkeypatch):
    at = open_app(monkeypatch, server, EMBEDDING_MODEL)
    at.text_input(key="signature").set_value("score").run()  # the toy's signature returning only `score`
    assert not at.exception and not at.error and page_title(at) == "Embeddings"
    [message] = [i.value for i in at.main.info]
    assert "returns no `embeddings` (its outputs: `score`)" in message and "`serving_default`" in message
    assert not at.text_area


# --- Server ---------------------------------------------------------------------------------------------


def test_server_page_lists_models_signatures_and_live_request_figures(server, monkeypatch):
    with Client(target=server.address, model_name=REGRESSION_MODEL) as client:
        for _ in range(3):
            client.regress(["banana"])
    at = open_app(monkeypatch, server, CLASSIFIER)
    at.switch_page(PAGE_FILES["Server"]).run()
    assert not at.exception and not at.error and page_title(at) == "Server"
    models, requests, latency, signatures = (d.value for d in at.dataframe)
    assert models["model"].tolist() == [CLASSIFIER, REGRESSION_MODEL, EMBEDDING_MODEL, OLD_MODEL, NER_MODEL, QA_MODEL]
    assert models["task"].tolist() == [
        "classification", "regression", "embedding", "(does not say its task)", "token_classification",
        "question_answering",
    ]  # fmt: skip
    assert set(models["versions"]) == {"v1 AVAILABLE"}
    assert models["base path"].tolist()[4].endswith("/ner/exports/ner")  # from the model config file

    rows = {tuple(r) for r in signatures.itertuples(index=False)}
    assert ("serving_default", "input", "text", "string", "[?]") in rows
    assert ("serving_default", "output", "probabilities", "float32", "[?, 2]") in rows
    assert ("pair", "input", "text_pair", "string", "[?]") in rows
    assert ("metadata", "output", "metadata", "string", "[]") in rows
    assert not any(r[0].startswith("__") for r in rows)

    by_model = requests.set_index("model")
    assert by_model.loc[REGRESSION_MODEL, "ok"] >= 3 and by_model.loc[REGRESSION_MODEL, "failed"] == "-"
    assert "NOT_FOUND" in by_model.loc[OLD_MODEL, "failed"]  # asked for its missing metadata signature
    [predict] = latency[(latency["model"] == REGRESSION_MODEL) & (latency["API"] == "Predict")].itertuples()
    assert predict.requests >= 3 and predict._3 == "GRPC"
    assert 0 < predict._6 <= predict._7 and predict._5 > 0  # p50 <= p99, mean > 0 (ms)

    # The picker: another model, and the page stays on Server with that model's signatures.
    at.selectbox(key="server_pick").set_value(NER_MODEL).run()
    assert page_title(at) == "Server" and at.sidebar.text_input(key="model_field").value == NER_MODEL
    names = set(at.dataframe[-1].value["name"])
    assert {"entity_labels", "token_labels", "token_probabilities"} <= names


def test_server_page_without_metrics_says_how_to_turn_them_on(server, monkeypatch):
    at = open_app(monkeypatch, server, CLASSIFIER)
    dead = free_port()
    at.text_input(key="rest").set_value(f"127.0.0.1:{dead}").run()
    at.switch_page(PAGE_FILES["Server"]).run()
    [message] = at.main.info
    assert message.value.startswith(f"No metrics: nothing answers at http://127.0.0.1:{dead}/monitoring/prometheus/")
    [command] = [c.value for c in at.main.code if "kerasbert.serve" in c.value]
    assert command == (
        f"python -m kerasbert.serve --port {server.port} --rest_api_port {dead} --model_name {CLASSIFIER} "
        f"--model_base_path exports/{CLASSIFIER} --monitoring_config_file serving/monitoring.config"
    )


def test_prometheus_figures_are_read_like_prometheus():
    from kbui.server_page import latency_table, request_table

    text = """# TYPE :tensorflow:serving:request_count counter
:tensorflow:serving:request_count{model_name="m",status="OK"} 20.0
:tensorflow:serving:request_count{model_name="m",status="INVALID_ARGUMENT"} 2.0
:tensorflow:serving:request_latency_bucket{API="Predict",entrypoint="GRPC",model_name="m",le="100.0"} 0.0
:tensorflow:serving:request_latency_bucket{API="Predict",entrypoint="GRPC",model_name="m",le="200.0"} 10.0
:tensorflow:serving:request_latency_bucket{API="Predict",entrypoint="GRPC",model_name="m",le="400.0"} 20.0
:tensorflow:serving:request_latency_bucket{API="Predict",entrypoint="GRPC",model_name="m",le="+Inf"} 20.0
:tensorflow:serving:request_latency_sum{API="Predict",entrypoint="GRPC",model_name="m"} 5000.0
:tensorflow:serving:request_latency_count{API="Predict",entrypoint="GRPC",model_name="m"} 20.0
"""
    assert request_table(text).to_dict("records") == [
        {"model": "m", "requests": 22, "ok": 20, "failed": "INVALID_ARGUMENT 2"}
    ]
    [row] = latency_table(text).to_dict("records")
    assert row["requests"] == 20 and row["mean ms"] == pytest.approx(0.25)  # 5000 us / 20
    assert row["p50 ms"] == pytest.approx(0.2)  # rank 10 of 20: the top of the (100, 200] bucket
    assert row["p99 ms"] == pytest.approx(0.396)  # rank 19.8: 200 + 200 * 9.8 / 10 us


# --- one real browser: every page in turn, a screenshot of each ----------------------------------------

SCREENSHOTS = REPO / "docs" / "images"
NAV_LINKS = "[...document.querySelectorAll('[data-testid=\"stSidebarNavLink\"]')]"
NAV_LABEL = "a.querySelector('span[label]').getAttribute('label')"  # the title, without the icon's ligature text
NAV_SELECTED = f"{NAV_LINKS}.filter(a => a.getAttribute('aria-current') === 'page').map(a => {NAV_LABEL}).join()"
ENTITY_MARKS = "document.querySelectorAll('mark.kb-entity').length"
CHART_DRAWN = (
    '!!document.querySelector(\'[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg\')'
)


def type_into_textarea(page, text: str, index: int = 0) -> None:
    area = f"document.querySelectorAll('textarea')[{index}]"
    page.evaluate(f"{area}.focus(); {area}.select()")
    page.call("Input.insertText", text=text)
    page.evaluate(f"{area}.blur()")  # a text area sends its value when it loses the focus
    page.wait_for(f"{area}.value === {json.dumps(text)}", "the text was not typed")
    time.sleep(1.0)  # the rerun with the new text


def heading(page) -> str:
    return page.evaluate("(document.querySelector('h1') || {innerText: ''}).innerText.trim()")


@needs_chromium
def test_every_page_in_a_real_browser(server, tmp_path):
    shots = {}
    with running_streamlit(server, CLASSIFIER) as url, chromium_page(url, tmp_path / "profile") as page:
        # Classify: a sentence, the chart with its values, the tokens opened.
        button = page.wait_for_button("Classify", "the Classify page did not open")
        assert page.evaluate(NAV_SELECTED) == "Classify"
        type_into_textarea(page, "a quiet evening out")
        page.evaluate(f"{button}.click()")
        page.wait_for(CHART_DRAWN, "no probability chart")
        page.evaluate("[...document.querySelectorAll('summary')].find(s => s.innerText.includes('Tokens')).click()")
        page.wait_for("document.querySelectorAll('.kb-token').length === 4", "the tokens did not open")
        time.sleep(1.5)  # let the chart and the fonts paint
        visible = page.evaluate("document.body.innerText")
        p = expected_positive("a quiet evening out")
        assert f"{1 - p:.1%}" in visible and f"{p:.1%}" in visible  # the values on the bars
        assert "Predicted label" in visible and "Traceback" not in visible
        shots["classify"] = page.screenshot()

        # The NER model in the sidebar: the NER page opens by itself.
        page.type_into_input(CLASSIFIER, NER_MODEL)
        page.wait_for(f"{NAV_SELECTED} === 'NER'", "the NER page did not open for the NER model")
        button = page.wait_for_button("Find entities", "the NER page did not render")
        page.evaluate(f"{button}.click()")  # on the prefilled example sentence
        page.wait_for(f"{ENTITY_MARKS} === 4", "no entities were highlighted")
        page.wait_for(TABLE_DRAWN, "no entity table")
        time.sleep(1.5)
        visible = page.evaluate("document.body.innerText")
        for entity, label in [("Smith", "PER"), ("London", "LOC"), ("Berlin", "LOC"), ("Jones", "PER")]:
            assert re.search(rf"{entity}\s*{label}", visible), f"{entity} {label} not visible:\n{visible}"
        shots["ner"] = page.screenshot()

        # Question answering: the prefilled question, the answer highlighted.
        page.type_into_input(NER_MODEL, QA_MODEL)
        page.wait_for(f"{NAV_SELECTED} === 'Question answering'", "the QA page did not open for the QA model")
        page.wait_for(f"{ENTITY_MARKS} === 0", "the NER result stayed on the page")
        button = page.wait_for_button("Answer", "the QA page did not render")
        page.type_into_input("Where did John Smith go?", QUESTION)
        page.wait_for(
            f"[...document.querySelectorAll('input')].some(i => i.value === {json.dumps(QUESTION)})", "no question"
        )
        time.sleep(1.0)
        type_into_textarea(page, CONTEXT)
        page.evaluate(f"{button}.click()")
        answer = "(document.querySelector('mark.kb-answer') || {innerText: ''}).innerText"
        page.wait_for(f"{answer} === 'New York'", "the answer was not highlighted")
        page.wait_for(TABLE_DRAWN, "no n-best table")
        time.sleep(1.5)
        mark = page.evaluate("(() => { const m = document.querySelector('mark.kb-answer');"
                             " return [m.innerText, getComputedStyle(m).backgroundColor]; })()")  # fmt: skip
        assert mark == ["New York", "rgb(187, 247, 208)"]  # the answer, in the answer colour
        shots["qa"] = page.screenshot()

        # Embeddings: three sentences, the heatmap.
        page.type_into_input(QA_MODEL, EMBEDDING_MODEL)
        page.wait_for(f"{NAV_SELECTED} === 'Embeddings'", "the Embeddings page did not open")
        button = page.wait_for_button("Compare", "the Embeddings page did not render")
        type_into_textarea(page, "A man is playing a guitar.\nSomeone plays an instrument.\nA cat sleeps on the sofa.")
        page.evaluate(f"{button}.click()")
        page.wait_for(CHART_DRAWN, "no heatmap")
        time.sleep(1.5)
        visible = page.evaluate("document.body.innerText")
        assert "1. A man is playing a guitar." in visible and "Nearest neighbours" in visible
        shots["embeddings"] = page.screenshot()

        # Server: by the navigation link; the models, signatures and request tables.
        page.evaluate(f"{NAV_LINKS}.find(a => {NAV_LABEL} === 'Server').click()")
        page.wait_for(f"{NAV_SELECTED} === 'Server'", "the Server page did not open")
        page.wait_for("document.querySelectorAll('[data-testid=\"stDataFrame\"] canvas').length >= 4", "no tables")
        page.call("Emulation.setDeviceMetricsOverride", width=1280, height=2000, deviceScaleFactor=1, mobile=False)
        time.sleep(1.5)
        visible = page.evaluate("document.body.innerText")
        assert heading(page) == "Server"
        for text in ("Models", f"Signatures of '{EMBEDDING_MODEL}'", "Requests", "Live from http://127.0.0.1:"):
            assert text in visible, f"{text!r} not on the Server page:\n{visible}"
        assert "Traceback" not in visible
        shots["server"] = page.screenshot()
    for name, png in shots.items():
        (tmp_path / f"ui_{name}.png").write_bytes(png)
        if os.environ.get("KERASBERT_UPDATE_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            (SCREENSHOTS / f"ui_{name}.png").write_bytes(png)


def test_metrics_endpoint_is_the_one_the_app_reads(server):
    """The app's default metrics path is the one the server publishes (serving/monitoring.config)."""
    from kbui.core import METRICS_PATH

    with urllib.request.urlopen(f"{server.rest_url}{METRICS_PATH}", timeout=10) as answer:
        assert b":tensorflow:serving:request_count" in answer.read()
