"""The question-answering page of ui/app.py against a real `python -m kerasbert.serve` on a free loopback port.

The served "qa" model is the session's tiny QA model (conftest's `tiny_qa`: a tiny BERT fine-tuned on
synthetic SQuAD questions; "room and <person>" asks for the place the person went to). Next to it the
server serves the toy classifier of tests/test_ui.py, to check what the page says for a model of
another task. Every shown answer is compared with what `Client.answer` gets from the same server.

Streamlit's AppTest checks the highlighted HTML, the metrics and the n-best table; one real headless
Chromium (tests/browser_utils.py) clicks "Answer" and takes a screenshot (KERASBERT_UPDATE_SCREENSHOTS=1
refreshes docs/images/ui_qa.png, as tests/test_ui_ner.py does for the NER page).
"""

from __future__ import annotations

import html
import json
import os
import re
import time

import pytest
from streamlit.testing.v1 import AppTest

from browser_utils import SELECTED_TAB, TABLE_DRAWN, chromium_page, needs_chromium
from conftest import REPO
from kerasbert.client import Client
from serving_utils import running_server
from test_ui import (
    APP,
    check_classifier_is_sent_elsewhere,
    model_config,
    opened_tab,
    running_streamlit,
    write_toy_classifier,
)
from test_ui import MODEL_NAME as CLASSIFIER

MODEL = "qa"
SCREENSHOT = REPO / "docs" / "images" / "ui_qa.png"
# HTML that must show as text, an emoji and accents before and around the answer.
QUESTION = "room and John Smith"
CONTEXT = "Yesterday John Smith went to New York 🗽 with <b>friends</b> & then to Café Müller."


@pytest.fixture(scope="module")
def server(tiny_qa, tmp_path_factory):
    """`kerasbert.serve` serving the tiny QA export and the toy classifier."""
    root = tmp_path_factory.mktemp("ui_qa")
    models = {MODEL: tiny_qa.base, CLASSIFIER: write_toy_classifier(root)}
    with running_server(model_config_file=model_config(root / "models.config", models)) as srv:
        yield srv


@pytest.fixture()
def at(server, monkeypatch):
    """The page connected to the "qa" model."""
    monkeypatch.setenv("KERASBERT_SERVER", server.address)
    monkeypatch.setenv("KERASBERT_MODEL", MODEL)
    return AppTest.from_file(str(APP), default_timeout=60).run()


def served_answer(server, question: str, context: str) -> dict:
    with Client(target=server.address, model_name=MODEL) as client:
        return client.answer(question, context)


def ask(at: AppTest, question: str, context: str) -> AppTest:
    at.text_input(key="qa_question").input(question)
    at.text_area(key="qa_context").input(context).run()
    at.button(key="qa_run").click().run()
    assert not at.exception and not at.error
    return at


def highlighted(at: AppTest) -> str:
    [block] = [e.proto.body for e in at.get("html") if "kb-qa-context" in e.proto.body]
    return block


def test_qa_model_opens_the_qa_page(at):
    assert not at.exception and not at.error
    assert [t.label for t in at.tabs] == ["Classify", "Embeddings", "NER", "Question answering"]
    assert opened_tab(at) == "Question answering"  # from the model's metadata: question_answering
    assert (
        f"Model '{MODEL}' answers with a span of the paragraph (at most 4 WordPieces) and its 5 best candidates."
        in [c.value for c in at.caption]
    )
    assert at.text_input(key="qa_question").value == "Where did John Smith go?"  # the prefilled example
    assert at.text_area(key="qa_context").value.startswith("Yesterday John Smith went to New York")
    assert at.button(key="qa_run").label == "Answer"
    others = [i.value for i in at.info]  # the other tabs say which model they need
    assert [m.split(". ")[1].split(" in the sidebar")[0] for m in others] == [
        "Pick a classification or regression model",
        "Pick an embedding model",
        "Pick a token-classification model",
    ]
    assert not at.get("html") and not at.dataframe and not at.metric  # nothing before the click


def test_the_answer_is_highlighted_at_its_raw_offsets(at, server):
    expected = served_answer(server, QUESTION, CONTEXT)
    assert expected["answer"] == "New York" and expected["start"] == CONTEXT.index("New York")
    ask(at, QUESTION, CONTEXT)
    answer, score = at.metric
    assert (answer.label, answer.value) == ("Answer", "New York")
    assert (score.label, score.value) == ("Score", f"{expected['score']:.1%}")

    block = highlighted(at)
    [(start, end, marked)] = re.findall(
        r'<mark class="kb-answer" data-start="(\d+)" data-end="(\d+)"[^>]*>([^<]*)</mark>', block
    )
    start, end = int(start), int(end)
    assert (start, end) == (expected["start"], expected["end"])
    assert html.unescape(marked) == CONTEXT[start:end] == "New York"
    before, after = block.split("<mark", 1)[0], block.split("</mark>", 1)[1]
    assert html.unescape(re.sub(r"<[^>]+>", "", before)) == CONTEXT[:start]  # the emoji-free prefix, exactly
    assert html.unescape(re.sub(r"<[^>]+>", "", after)) == CONTEXT[end:]  # 🗽, the HTML and the accents
    assert "&lt;b&gt;friends&lt;/b&gt; &amp; then to Café Müller." in block and "<b>" not in block  # escaped
    assert "white-space:pre-wrap" in block and "score " + f"{expected['score']:.3f}" in block

    [table] = at.dataframe
    rows = table.value
    assert list(rows.columns) == ["rank", "answer", "start", "end", "score"]
    assert rows["rank"].tolist() == list(range(1, len(expected["n_best"]) + 1)) and len(rows) == 5
    assert list(zip(rows["answer"], rows["start"], rows["end"])) == [
        (c["answer"], c["start"], c["end"]) for c in expected["n_best"]
    ]
    assert rows["score"].tolist() == pytest.approx([c["score"] for c in expected["n_best"]], abs=1e-5)
    assert all(CONTEXT[s:e] == a for a, s, e in zip(rows["answer"], rows["start"], rows["end"]))
    assert rows["answer"][0] == "New York" and any("🗽" in a for a in rows["answer"])  # an n-best with the emoji


def test_empty_question_or_paragraph_warns_without_calling(at):
    for question, context, warning in [
        ("  ", CONTEXT, "Type a question first."),
        (QUESTION, " \n ", "Type a paragraph first."),
        ("", "", "Type a question and a paragraph first."),
    ]:
        at.text_input(key="qa_question").input(question)
        at.text_area(key="qa_context").input(context).run()
        at.button(key="qa_run").click().run()
        assert [w.value for w in at.warning] == [warning]
        assert not at.dataframe and not at.metric and not at.get("html")


def test_new_input_hides_the_old_answer_and_no_candidate_says_so(at, server):
    ask(at, QUESTION, CONTEXT)
    assert at.metric[0].value == "New York"
    at.text_input(key="qa_question").input("staff and New York").run()  # not asked yet: the old answer goes
    assert not at.metric and not at.dataframe and not at.get("html")
    at.button(key="qa_run").click().run()
    assert at.metric[0].value == served_answer(server, "staff and New York", CONTEXT)["answer"] == "John Smith"
    # A zero-width space is not blank text, but it makes no WordPiece: no candidate span at all.
    assert served_answer(server, QUESTION, "\u200b")["start"] == -1
    ask(at, QUESTION, "\u200b")
    own = [i.value for i in at.info if not i.value.startswith(f"Model '{MODEL}' is")]  # not the other tabs'
    assert own == ["The model found no answer in this paragraph."]
    assert not at.metric and not at.dataframe


def test_classifier_on_the_qa_page_says_pick_a_question_answering_model(at):
    check_classifier_is_sent_elsewhere(at, CLASSIFIER, "a question-answering model", "--task question_answering")
    assert not [i for i in at.text_input if i.key == "qa_question"] and not [b for b in at.button if b.key == "qa_run"]


# --- one real browser: ask, check the highlight in the DOM, take the screenshot ----------------------

ANSWER_MARK = "document.querySelector('mark.kb-answer')"


@needs_chromium
def test_qa_page_in_a_real_browser(server, tmp_path):
    expected = served_answer(server, QUESTION, CONTEXT)
    with running_streamlit(server.address, MODEL) as url, chromium_page(url, tmp_path / "profile") as page:
        button = page.wait_for_button("Answer", "the QA page did not open")
        assert page.evaluate(SELECTED_TAB) == "Question answering"
        page.type_into_input("Where did John Smith go?", QUESTION)  # Enter: the page reruns with it
        time.sleep(1.0)
        paragraph = "document.querySelector('textarea')"
        page.evaluate(f"{paragraph}.focus(); {paragraph}.select()")
        page.call("Input.insertText", text=CONTEXT)
        page.evaluate(f"{paragraph}.blur()")  # a text area sends its value when it loses the focus
        page.wait_for(f"{paragraph}.value === {json.dumps(CONTEXT)}", "the paragraph was not typed")
        time.sleep(1.0)  # the rerun with the new paragraph
        page.evaluate(f"{button}.click()")
        page.wait_for(f"!!{ANSWER_MARK}", "no answer was highlighted")
        page.wait_for(TABLE_DRAWN, "no n-best table")
        time.sleep(1.5)  # let the table's canvas and the fonts paint
        mark = page.evaluate(
            f"(() => {{ const m = {ANSWER_MARK}; const box = m.getBoundingClientRect();"
            " return {text: m.innerText, start: +m.dataset.start, end: +m.dataset.end,"
            " paragraph: m.parentElement.innerText, colour: getComputedStyle(m).backgroundColor,"
            " x: box.x, y: box.y, width: box.width, height: box.height}; })()"
        )
        visible = page.evaluate("document.body.innerText")
        png = page.screenshot()
        scale = page.evaluate("window.devicePixelRatio")
    assert (mark["text"], mark["start"], mark["end"]) == ("New York", expected["start"], expected["end"])
    assert mark["paragraph"] == CONTEXT  # the whole paragraph as text: the HTML shows as typed
    assert CONTEXT[mark["start"] : mark["end"]] == mark["text"]  # code point offsets (the emoji comes after)
    assert mark["colour"] == "rgb(187, 247, 208)"  # the answer colour, #bbf7d0
    assert f"{expected['score']:.1%}" in visible and "Traceback" not in visible
    assert mark["width"] > 20 and mark["height"] > 10

    # The pixels: inside the highlight's box the screenshot has the answer colour.
    (tmp_path / SCREENSHOT.name).write_bytes(png)
    pixels = png_pixels(png)
    x0, y0 = int(mark["x"] * scale), int(mark["y"] * scale)
    x1, y1 = int((mark["x"] + mark["width"]) * scale), int((mark["y"] + mark["height"]) * scale)
    box = [pixels[y][x] for y in range(y0 + 1, y1 - 1) for x in range(x0 + 1, x1 - 1)]
    green = sum(1 for p in box if p[:3] == (187, 247, 208))
    assert green > 0.3 * len(box), f"{green} of {len(box)} pixels of the highlight are its colour"
    if os.environ.get("KERASBERT_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(png)


def png_pixels(png: bytes) -> list[list[tuple[int, ...]]]:
    """RGB(A) rows of a PNG screenshot (Pillow, a Streamlit dependency)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    width, height = image.size
    data = list(image.getdata())
    return [data[y * width : (y + 1) * width] for y in range(height)]
