"""ui/app.py against a real gRPC server process (``python -m kerasbert.serve``), with Streamlit's
AppTest for the page logic and one real-browser check (Debian's headless ``chromium``, apt
package ``chromium``).

The served toys are those of tests/test_client.py (P(positive) = vowel fraction of the text) and
tests/test_client_embeddings.py (embedding = letter counts), re-saved with a kerasbert
``metadata`` signature naming their task, since the page asks the model what it does:

* "toy": classification (signatures ``serving_default``, ``pair``, ``regress``);
* "toy_score": regression (the toy's ``regress`` as ``serving_default``);
* "toy_embedder": embedding;
* "toy_old": the toy classifier as it was, without ``metadata`` (an older or foreign export).

The helpers (``with_export_metadata``, ``write_toy_classifier``, ``shared_ui_server``, the
``--dump-dom`` Chromium flags and ``running_streamlit``) are shared with tests/test_ui_embeddings.py,
tests/test_ui_ner.py and tests/test_ui_qa.py; the DevTools-driven Chromium is in tests/browser_utils.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from browser_utils import CHROMIUM, needs_chromium
from kerasbert import contract
from serving_utils import free_port, running_server
from test_client import CLASS_NAMES, MODEL_NAME, build_toy_model, expected_positive

APP = Path(__file__).resolve().parents[1] / "ui" / "app.py"
REGRESSION_MODEL = "toy_score"
EMBEDDING_MODEL = "toy_embedder"
OLD_MODEL = "toy_old"


# --- toy exports that say their task ----------------------------------------------------------------


def with_export_metadata(src: Path, dst: Path, task: str, signatures: dict[str, str] | None = None, **task_config):
    """Re-saves the SavedModel version folder ``src`` as ``dst`` plus a kerasbert ``metadata`` signature.

    ``signatures`` maps the new signature names to ``src``'s (default: all of them, as they are);
    ``task_config`` goes into the metadata (e.g. ``class_names``).
    """
    import tensorflow as tf

    loaded = tf.saved_model.load(str(src))
    chosen = {name: loaded.signatures[old] for name, old in (signatures or {n: n for n in loaded.signatures}).items()}
    meta = contract.ExportMetadata(
        task=task,
        signatures={name: sig.as_dict() for name, sig in contract.signatures_for(task).items()},
        task_config=task_config,
    ).to_json()
    module = tf.Module()
    module.inner = loaded
    module.metadata = tf.function(lambda: {contract.METADATA: tf.constant(meta)}, input_signature=[])
    tf.saved_model.save(module, str(dst), signatures={**chosen, contract.METADATA_SIGNATURE: module.metadata})
    return dst


def write_toy_classifier(root: Path, name: str = MODEL_NAME, raw: Path | None = None) -> Path:
    """The toy classifier with its ``metadata`` (task classification) as ``root/name/1``; returns ``root/name``.

    ``raw``: the toy's version folder if already built (else it is built under ``root``).
    """
    raw = raw or build_toy_model(root / f"{name}_raw")
    with_export_metadata(raw, root / name / "1", contract.CLASSIFICATION, class_names=CLASS_NAMES)
    return root / name


def model_config(path: Path, models: dict[str, Path]) -> Path:
    """A TF Serving ``--model_config_file`` serving ``{name: base path}``."""
    entries = [f'  config {{ name: "{n}" base_path: "{b}" model_platform: "tensorflow" }}' for n, b in models.items()]
    path.write_text("model_config_list {\n" + "\n".join(entries) + "\n}\n")
    return path


_SHARED_SERVER: list = []


def shared_ui_server(request, tmp_path_factory):
    """One server for the session (this file and test_ui_embeddings.py) serving the four toys above."""
    if not _SHARED_SERVER:
        from test_client_embeddings import build_toy_embedder

        root = tmp_path_factory.mktemp("ui_models")
        raw = build_toy_model(root / "raw_toy")
        raw_embedder = build_toy_embedder(root / "raw_embedder")
        models = {
            MODEL_NAME: write_toy_classifier(root, raw=raw),
            REGRESSION_MODEL: root / REGRESSION_MODEL,
            EMBEDDING_MODEL: root / EMBEDDING_MODEL,
            OLD_MODEL: raw.parent,
        }
        with_export_metadata(raw, root / REGRESSION_MODEL / "1", contract.REGRESSION, {"serving_default": "regress"})
        with_export_metadata(raw_embedder, root / EMBEDDING_MODEL / "1", contract.EMBEDDING, pooling="letters")
        stack = contextlib.ExitStack()
        server = stack.enter_context(running_server(model_config_file=model_config(root / "models.config", models)))
        _SHARED_SERVER.append(server)
        request.config.add_cleanup(stack.close)
    return _SHARED_SERVER[0]


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    return shared_ui_server(request, tmp_path_factory)


@pytest.fixture()
def dead_port():
    return free_port()  # nothing listens there


@pytest.fixture()
def app(monkeypatch, dead_port):
    """The page, first run against a dead port (so env defaults never reach a real server)."""
    monkeypatch.setenv("KERASBERT_SERVER", f"127.0.0.1:{dead_port}")
    monkeypatch.setenv("KERASBERT_MODEL", MODEL_NAME)
    return AppTest.from_file(str(APP), default_timeout=60).run()


def connect(at: AppTest, port: int, model: str = MODEL_NAME, signature: str | None = None) -> AppTest:
    at.sidebar.text_input(key="server").set_value(f"127.0.0.1:{port}")
    at.sidebar.text_input(key="model").set_value(model)
    if signature is not None:
        at.text_input(key="signature").set_value(signature)
    return at.run()


def opened_tab(at: AppTest) -> str:
    """The label of the tab the page opens on (st.tabs' ``default``)."""
    [tabs] = [b for b in at.main.children.values() if b.type == "tab_container"]
    return at.tabs[tabs.proto.tab_container.default_tab_index].label


def check_classifier_is_sent_elsewhere(at: AppTest, classifier: str, needs: str, command: str) -> None:
    """Picks the classifier ``classifier`` in the sidebar: the page opens Classify, and the tab that needs
    ``needs`` (e.g. "a question-answering model") says so and shows a command containing ``command``."""
    at.sidebar.text_input(key="model").set_value(classifier).run()
    assert not at.exception and not at.error
    assert opened_tab(at) == "Classify"
    [message] = [i.value for i in at.info if f"Pick {needs} " in i.value]
    assert message == (
        f"Model '{classifier}' is a classification model. Pick {needs} in the sidebar to use this tab, or make one:"
    )
    assert any(command in c.value for c in at.code)


def chart_table(at: AppTest):
    """The data of the page's (single) bar chart, as a pandas DataFrame."""
    [chart] = at.get("vega_lite_chart")
    assert '"type": "bar"' in chart.proto.spec
    [dataset] = chart.proto.datasets
    return pa.ipc.open_stream(dataset.data.data).read_pandas()


def test_classify_shows_label_probability_and_chart(app, server):
    at = connect(app, server.port)
    assert not at.exception and not at.error
    assert [t.value for t in at.title] == ["kerasbert"]
    assert [t.label for t in at.tabs] == ["Classify", "Embeddings", "NER", "Question answering"]
    assert opened_tab(at) == "Classify"  # the model's metadata says classification
    assert "v1 AVAILABLE" in at.sidebar.success[0].value
    assert len(at.text_area) == 1  # serving_default has no text_pair

    text = "a quiet evening out"
    p = expected_positive(text)  # 8 vowels / 19 chars -> negative
    at.text_area(key="text").input(text).run()
    at.button(key="run").click().run()
    assert not at.exception and not at.error
    assert [(m.label, m.value) for m in at.metric] == [
        ("Predicted label", "negative"),
        ("Probability", f"{1 - p:.1%}"),
    ]
    table = chart_table(at)
    assert table["class"].tolist() == ["negative", "positive"]
    assert table["probability"].tolist() == pytest.approx([1 - p, p], abs=1e-6)

    at.text_area(key="text").input("aeiou").run()  # new text: the old result disappears
    assert not at.metric
    at.button(key="run").click().run()
    assert [m.value for m in at.metric] == ["positive", "100.0%"]


def test_text_pair_field_follows_the_signature(app, server):
    at = connect(app, server.port, signature="pair")
    assert [a.label for a in at.text_area] == ["Text", "Text pair"]
    at.text_area(key="text").input("xyz").run()
    at.button(key="run").click().run()
    assert "text pair" in at.warning[0].value and not at.metric  # both texts needed
    at.text_area(key="text_pair").input("aaaaaaa").run()
    at.button(key="run").click().run()
    assert at.metric[0].value == "positive"
    assert chart_table(at)["probability"][1] == pytest.approx(expected_positive("xyzaaaaaaa"), abs=1e-6)


def test_regression_model_shows_score(app, server):
    at = connect(app, server.port, model=REGRESSION_MODEL)
    assert opened_tab(at) == "Classify"
    assert at.button(key="run").label == "Score"
    at.text_area(key="text").input("banana").run()
    at.button(key="run").click().run()
    assert [(m.label, m.value) for m in at.metric] == [("Score", f"{5 * expected_positive('banana'):.4f}")]
    assert not at.get("vega_lite_chart")


def test_other_tabs_say_which_model_to_pick(app, server):
    at = connect(app, server.port)
    assert not at.exception and not at.error
    messages = [i.value for i in at.info]
    assert messages == [
        f"Model '{MODEL_NAME}' is a classification model. Pick an embedding model in the sidebar to use this tab, "
        "or make one:",
        f"Model '{MODEL_NAME}' is a classification model. Pick a token-classification model in the sidebar to use "
        "this tab, or make one:",
        f"Model '{MODEL_NAME}' is a classification model. Pick a question-answering model in the sidebar to use "
        "this tab, or make one:",
    ]
    assert "--mode embedding" in at.code[0].value
    assert "--task token_classification" in at.code[1].value
    assert "--task question_answering" in at.code[2].value
    assert [a.key for a in at.text_area] == ["text"]  # only the Classify tab has inputs


def test_model_without_metadata_says_how_to_reexport(app, server):
    at = connect(app, server.port, model=OLD_MODEL)  # the same toy, saved without `metadata`
    assert not at.exception and not at.error
    [message] = at.main.warning
    assert message.value.startswith(f"Model '{OLD_MODEL}' does not say which task it performs")
    assert f"no kerasbert `{contract.METADATA_SIGNATURE}` signature" in message.value
    assert [c.value for c in at.code] == [f"python -m kerasbert.export --run_dir runs/{OLD_MODEL}"]
    assert not at.tabs and not at.text_area and not at.button  # no guessing which tab fits
    assert "v1 AVAILABLE" in at.sidebar.success[0].value  # the server and model themselves are fine


def test_empty_text_warns_without_calling(app, server):
    at = connect(app, server.port)
    at.button(key="run").click().run()
    assert not at.exception and not at.metric
    assert at.warning[0].value == "Type the text first."


def test_dead_server_shows_what_to_start(app, dead_port):
    at = app  # first run went to the dead port
    assert not at.exception
    [message] = at.main.error
    assert f"no TF Serving server at 127.0.0.1:{dead_port}" in message.value
    assert "python -m kerasbert.serve --model_base_path" in message.value
    assert at.sidebar.error[0].value == f"No server at 127.0.0.1:{dead_port}"
    assert not at.text_area and not at.button  # nothing to click that could fail


def test_missing_model_shows_error(app, server):
    at = connect(app, server.port, model="nope")
    assert not at.exception
    assert "model 'nope' is not served" in at.main.error[0].value
    assert "--model_name nope" in at.code[0].value
    assert at.sidebar.error[0].value == f"Model 'nope' not found at 127.0.0.1:{server.port}"


def test_recovers_when_the_address_is_fixed(app, server):
    assert app.error  # dead port first
    at = connect(app, server.port)
    assert not at.error and at.text_area(key="text")


# --- one real browser ------------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
    "--virtual-time-budget=15000",
    "--run-all-compositor-stages-before-draw",
]


@contextlib.contextmanager
def running_streamlit(server_address: str, model: str):
    """``streamlit run ui/app.py`` on a free loopback port, pointed at ``model`` on ``server_address``.

    Yields the page's URL once Streamlit's health check answers; the process is stopped at exit.
    """
    port = free_port()
    env = dict(os.environ, KERASBERT_SERVER=server_address, KERASBERT_MODEL=model)
    command = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true"]
    process = subprocess.Popen(
        [*command, "--server.port", str(port), "--server.address", "127.0.0.1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + 60
        while True:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            try:
                urllib.request.urlopen(url + "_stcore/health", timeout=2)
                break
            except OSError:
                assert time.time() < deadline, "streamlit did not start within 60 s"
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _dump_dom(url: str, profile: Path) -> str:
    done = subprocess.run(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout


@needs_chromium
def test_page_renders_in_a_real_browser(server, tmp_path):
    with running_streamlit(server.address, MODEL_NAME) as url:
        # Chromium's virtual time does not wait for Streamlit's websocket: the very first session
        # (which imports the app's modules) often dumps only the loading skeleton, so retry.
        for attempt in range(5):
            dom = _dump_dom(url, tmp_path / f"profile{attempt}")
            if re.search(r"<h1[^>]*>(?:(?!</h1>).)*kerasbert", dom, flags=re.S):
                break
        else:
            pytest.fail(f"the app title never rendered; last DOM:\n{dom[-3000:]}")
        assert "Classify" in dom  # the tab
        assert "v1 AVAILABLE" in dom  # the status line came from the live server
        assert "Traceback" not in dom
