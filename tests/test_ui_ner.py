"""The NER page of ui/app.py against a real `python -m kerasbert.serve` on a free loopback port.

The served "ner" model is a real export: a tiny BERT fine-tuned here (module fixture, a few
seconds) on a synthetic CoNLL-2003-style file it learns at once: the name after "Mr." is PER
(names from `NAMES`), a city from `CITIES` is LOC, everything else (also words outside the
vocabulary, read as [UNK]) is O. Next to it the server serves the toy classifier of
tests/test_ui.py, to check what the NER page says for a model of another task.

Streamlit's AppTest checks the table, the highlighted HTML and the legend; one real headless
Chromium, driven over the DevTools protocol, clicks the button and takes a screenshot
(KERASBERT_UPDATE_SCREENSHOTS=1 refreshes docs/images/ui_ner.png).
"""

from __future__ import annotations

import html
import os
import random
import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from browser_utils import SELECTED_TAB, TABLE_DRAWN, chromium_page, needs_chromium
from conftest import REPO, run_finetune
from serving_utils import running_server
from test_ui import (
    APP,
    check_classifier_is_sent_elsewhere,
    model_config,
    opened_tab,
    running_streamlit,
    write_toy_classifier,
)
from test_ui import (
    MODEL_NAME as CLASSIFIER,
)

MODEL = "ner"
NAMES = ["Smith", "Jones", "Brown", "Taylor", "Wilson", "Davies", "Evans", "Thomas"]
CITIES = ["London", "Berlin", "Paris", "Madrid", "Rome", "Vienna", "Lisbon", "Prague"]
FILLER = ["the", "a", "meeting", "was", "today", "and", "then", "met", "visited", "left", "for", "with"]
FILLER += ["friends", "in", "from", "arrived", "flew", "to", "said", "that", "."]
UNKNOWN = ["on", "Monday", "meet", "happy", "business", "trip", "we", "our", ",", "!"]  # not in the vocab
SCREENSHOT = REPO / "docs" / "images" / "ui_ner.png"


def conll_sentence(rng: random.Random) -> list[tuple[str, str]]:
    words = []
    for _ in range(rng.randint(2, 6)):
        r = rng.random()
        if r < 0.3:
            words += [("Mr.", "O"), (rng.choice(NAMES), "B-PER")]
        elif r < 0.55:
            words.append((rng.choice(CITIES), "B-LOC"))
        else:
            words += [(w, "O") for w in rng.sample(FILLER + UNKNOWN, rng.randint(1, 3))]
    return words


def write_conll(path: Path, n: int, seed: int) -> Path:
    """``n`` sentences in CoNLL-2003's layout: -DOCSTART-, 4 columns, a blank line after each sentence."""
    rng = random.Random(seed)
    lines = ["-DOCSTART- -X- -X- O", ""]
    for _ in range(n):
        lines += [f"{word} NNP I-NP {tag}" for word, tag in conll_sentence(rng)] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_vocab(path: Path) -> Path:
    words = sorted({w.lower() for w in NAMES + CITIES + FILLER} | {"mr"})
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`kerasbert.serve` serving the freshly trained "ner" export and the toy classifier."""
    root = tmp_path_factory.mktemp("ui_ner")
    run_finetune(
        [
            "--task", "token_classification",
            "--train_file", write_conll(root / "train.txt", 600, seed=1),
            "--dev_file", write_conll(root / "dev.txt", 100, seed=2),
            "--vocab", write_vocab(root / "vocab.txt"),
            "--model_size", "tiny", "--sequence_length", 32, "--epochs", 2, "--batch_size", 32,
            "--learning_rate", 2e-3, "--dropout", 0.0, "--seed", 0,
            "--output_dir", root / "run", "--export_dir", root / "exports", "--model_name", MODEL, "--quiet",
        ]
    )  # fmt: skip
    models = {MODEL: root / "exports" / MODEL, CLASSIFIER: write_toy_classifier(root)}
    with running_server(model_config_file=model_config(root / "models.config", models)) as srv:
        yield srv


@pytest.fixture()
def at(server, monkeypatch):
    """The page connected to the "ner" model."""
    monkeypatch.setenv("KERASBERT_SERVER", server.address)
    monkeypatch.setenv("KERASBERT_MODEL", MODEL)
    return AppTest.from_file(str(APP), default_timeout=60).run()


def find_entities(at: AppTest, text: str) -> AppTest:
    at.text_area(key="ner_text").input(text).run()
    at.button(key="ner_run").click().run()
    assert not at.exception and not at.error
    return at


def html_blocks(at: AppTest) -> list[str]:
    return [element.proto.body for element in at.get("html")]


def visible_text(fragment: str) -> str:
    """What a reader sees in the highlighted text, minus the labels: tags stripped, entities unescaped."""
    without_labels = re.sub(r'<span class="kb-label"[^>]*>[^<]*</span>', "", fragment)
    return html.unescape(re.sub(r"<[^>]+>", "", without_labels))


# A text with runs of spaces, an emoji and HTML that must show as text, not as markup.
TEXT = "Mr. Jones flew from  Berlin to Rome 🙂 with <b>Mr. Smith</b> & friends."
EXPECTED = [  # entity, type, start, end: Python string offsets into TEXT
    ("Jones", "PER", 4, 9),
    ("Berlin", "LOC", 21, 27),
    ("Rome", "LOC", 31, 35),
    ("Smith", "PER", 50, 55),
]


def test_ner_model_opens_the_ner_page(at):
    assert not at.exception and not at.error
    assert [t.label for t in at.tabs] == ["Classify", "Embeddings", "NER", "Question answering"]
    assert opened_tab(at) == "NER"  # from the model's metadata: token_classification
    assert f"Model '{MODEL}' finds entities of the types LOC, PER." in [c.value for c in at.caption]
    assert at.text_area(key="ner_text").value.startswith("Mr. Smith flew from London")  # the prefilled example
    assert at.button(key="ner_run").label == "Find entities"
    others = [i.value for i in at.info]  # Classify, Embeddings and Question answering say which model they need
    assert [m.split(". ")[1].split(" in the sidebar")[0] for m in others] == [
        "Pick a classification or regression model",
        "Pick an embedding model",
        "Pick a question-answering model",
    ]
    assert not at.get("html") and not at.dataframe  # nothing before the click


def test_entities_in_the_table_and_highlighted(at):
    find_entities(at, TEXT)
    [table, tokens] = at.dataframe
    rows = table.value
    assert list(rows.columns) == ["entity", "type", "start", "end", "score"]
    assert list(zip(rows["entity"], rows["type"], rows["start"], rows["end"])) == EXPECTED
    assert all(TEXT[start:end] == entity for entity, _, start, end in EXPECTED)
    assert (rows["score"] > 0.5).all() and (rows["score"] <= 1).all()

    legend, highlighted = html_blocks(at)
    assert re.findall(r'class="kb-legend-item" data-label="(\w+)"', legend) == ["LOC", "PER"]
    assert "Entity types:" in legend
    colours = dict(re.findall(r'data-label="(\w+)" style="background:(#[0-9a-f]{6})', legend))
    assert len(set(colours.values())) == 2  # one colour per type
    marks = re.findall(r'<mark class="kb-entity" data-label="(\w+)" title="[^"]*" style="background:(#\w+)[^"]*">'
                       r'([^<]*)<span class="kb-label"[^>]*>(\w+)</span></mark>', highlighted)  # fmt: skip
    assert marks == [(label, colours[label], entity, label) for entity, label, _, _ in EXPECTED]
    assert visible_text(highlighted) == TEXT  # every character, in order, spaces and emoji included
    assert "&lt;b&gt;Mr. " in highlighted and "&amp; friends" in highlighted  # escaped, not markup
    assert "<b>" not in highlighted
    assert "white-space:pre-wrap" in highlighted  # the double space stays visible


def test_tokens_expander_shows_wordpieces_and_tags(at):
    find_entities(at, "Mr. Jones left Paris.")
    [expander] = [e for e in at.expander if e.label.startswith("Tokens")]
    tokens = at.dataframe[1].value
    assert list(tokens.columns) == ["token", "tag", "probability", "start", "end"]
    assert list(zip(tokens["token"], tokens["tag"])) == [
        ("mr", "O"), (".", "O"), ("jones", "B-PER"), ("left", "O"), ("paris", "B-LOC"), (".", "O"),
    ]  # fmt: skip
    assert tokens["start"].tolist()[:3] == [0, 2, 4] and expander


def test_no_entities_found(at):
    find_entities(at, "we met friends today.")
    assert [i.value for i in at.info if "entities" in i.value] == ["No entities found."]
    assert at.dataframe[0].value["token"].tolist()[:2] == ["[UNK]", "met"]  # only the tokens table
    [highlighted] = [h for h in html_blocks(at) if "kb-ner-text" in h]
    assert "<mark" not in highlighted and visible_text(highlighted) == "we met friends today."


def test_new_text_hides_the_old_result_and_empty_text_warns(at):
    find_entities(at, "Mr. Evans")
    assert at.dataframe[0].value["entity"].tolist() == ["Evans"]
    at.text_area(key="ner_text").input("Mr. Evans in Rome").run()
    assert not at.dataframe and not at.get("html")
    at.text_area(key="ner_text").input("   ").run()
    at.button(key="ner_run").click().run()
    assert [w.value for w in at.warning] == ["Type a text first."] and not at.dataframe


def test_classifier_on_the_ner_page_says_pick_a_token_classification_model(at):
    check_classifier_is_sent_elsewhere(at, CLASSIFIER, "a token-classification model", "--task token_classification")
    assert not [a for a in at.text_area if a.key == "ner_text"] and not [b for b in at.button if b.key == "ner_run"]


# --- one real browser: click "Find entities" and take the screenshot --------------------------------


ENTITY_MARKS = "document.querySelectorAll('mark.kb-entity').length"


@needs_chromium
def test_ner_page_in_a_real_browser(server, tmp_path):
    profile = tmp_path / "chromium-profile"  # fresh: no state from other runs
    with running_streamlit(server.address, MODEL) as url, chromium_page(url, profile) as page:
        button = page.wait_for_button("Find entities", "the NER page did not open")
        page.evaluate(f"{button}.click()")  # on the prefilled example sentence
        page.wait_for(f"{ENTITY_MARKS} >= 4", "no entities were highlighted")
        page.wait_for(TABLE_DRAWN, "no table")
        time.sleep(1.5)  # let the table's canvas and the fonts paint
        visible = page.evaluate("document.body.innerText")
        for entity, label in [("Smith", "PER"), ("London", "LOC"), ("Berlin", "LOC"), ("Jones", "PER")]:
            assert re.search(rf"{entity}\s*{label}", visible), f"{entity} {label} not visible:\n{visible}"
        assert "Entity types:" in visible and "Traceback" not in visible
        assert page.evaluate(ENTITY_MARKS) == 4  # "on Monday to meet" are no entities
        png = page.screenshot()

        # Another model in the sidebar: the page moves to the tab of its task (Classify).
        assert page.evaluate(SELECTED_TAB) == "NER"
        page.type_into_input(MODEL, CLASSIFIER)
        page.wait_for(f"{SELECTED_TAB} === 'Classify'", "the Classify tab did not open for the classifier")
        page.wait_for(f"{ENTITY_MARKS} === 0", "the NER result stayed on the page")  # removed once the run ends
    # The screenshot goes to the test's tmp folder; KERASBERT_UPDATE_SCREENSHOTS=1 refreshes the
    # README's copy (tests do not write into the checkout otherwise).
    (tmp_path / SCREENSHOT.name).write_bytes(png)
    if os.environ.get("KERASBERT_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(png)
