"""ui/app.py against a real gRPC server process serving the toy model of tests/test_client.py
(P(positive) = vowel fraction of the text): Streamlit's AppTest for the page logic, and one
real-browser check (Debian's headless ``chromium``, apt package ``chromium``)."""

from __future__ import annotations

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

from serving_utils import free_port
from test_client import MODEL_NAME, expected_positive, shared_toy_server

APP = Path(__file__).resolve().parents[1] / "ui" / "app.py"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    return shared_toy_server(request, tmp_path_factory)  # the one test_client.py uses, if it ran


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
    assert [t.label for t in at.tabs] == ["Classify", "Embeddings"]
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


def test_regression_signature_shows_score(app, server):
    at = connect(app, server.port, signature="regress")
    assert at.button(key="run").label == "Score"
    at.text_area(key="text").input("banana").run()
    at.button(key="run").click().run()
    assert [(m.label, m.value) for m in at.metric] == [("Score", f"{5 * expected_positive('banana'):.4f}")]
    assert not at.get("vega_lite_chart")


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


def _dump_dom(url: str, profile: Path) -> str:
    done = subprocess.run(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's headless chromium: apt-get install -y chromium")
def test_page_renders_in_a_real_browser(server, tmp_path):
    port = free_port()
    env = dict(os.environ, KERASBERT_SERVER=f"127.0.0.1:{server.port}", KERASBERT_MODEL=MODEL_NAME)
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
    finally:
        process.terminate()
        process.wait(timeout=30)
