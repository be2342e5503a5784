"""A real headless Chromium (Debian's ``chromium``) driven over the DevTools protocol, for the UI tests.

Reuse from any test module in `tests/`:

    from browser_utils import chromium_page, needs_chromium

    @needs_chromium
    def test_page(tmp_path):
        with running_streamlit(address, model) as url, chromium_page(url, tmp_path / "profile") as page:
            page.wait_for("!!document.querySelector('mark')", "nothing was highlighted")
            png = page.screenshot()
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's headless chromium: apt-get install -y chromium"
)

BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
    "--window-size=1280,1200",
]
# The label of the selected Streamlit tab (JavaScript).
SELECTED_TAB = "[...document.querySelectorAll('[role=tab][aria-selected=true]')].map(t => t.innerText.trim()).join()"

# A Streamlit dataframe has drawn its canvas (JavaScript).
TABLE_DRAWN = "!!document.querySelector('[data-testid=\"stDataFrame\"] canvas')"


class DevTools:
    """A minimal Chrome DevTools protocol session with one page (over websockets, a Streamlit dependency)."""

    def __init__(self, ws_url: str):
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=None, open_timeout=30)
        self.next_id = 0

    def call(self, method: str, timeout: float = 60, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        deadline = time.time() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(deadline - time.time(), 0.1)))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 60):
        deadline = time.time() + timeout
        while not self.evaluate(expression):
            if time.time() > deadline:
                body = self.evaluate("document.body ? document.body.innerText : ''")
                pytest.fail(f"{what} within {timeout} s; the page shows:\n{body[-2000:]}")
            time.sleep(0.25)

    def wait_for_button(self, label: str, what: str) -> str:
        """Waits until a visible button labelled ``label`` is on the page; returns a JavaScript expression for it."""
        button = f"[...document.querySelectorAll('button')].find(b => b.innerText.trim() === {json.dumps(label)})"
        self.wait_for(f"!!({button}) && {button}.offsetParent !== null", what)
        return button

    def type_into_input(self, current_value: str, text: str) -> None:
        """Replaces the text of the ``<input>`` whose value is ``current_value`` and presses Enter."""
        self.evaluate(
            f"[...document.querySelectorAll('input')].find(i => i.value === {json.dumps(current_value)}).select()"
        )
        self.call("Input.insertText", text=text)
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13)

    def screenshot(self) -> bytes:
        """The page as PNG bytes."""
        png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        return png


def page_websocket(profile: Path, process: subprocess.Popen, timeout: float = 60) -> str:
    """The DevTools websocket URL of Chromium's first page (its port is in DevToolsActivePort)."""
    deadline = time.time() + timeout
    port_file = profile / "DevToolsActivePort"
    while not port_file.exists() or not port_file.read_text().strip():
        assert process.poll() is None, f"chromium exited: {process.stderr.read().decode()[-2000:]}"
        assert time.time() < deadline, "chromium's DevTools did not start"
        time.sleep(0.2)
    port = port_file.read_text().split()[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
        pages = [t for t in json.load(answer) if t["type"] == "page"]
    return pages[0]["webSocketDebuggerUrl"]


@contextlib.contextmanager
def chromium_page(url: str, profile: Path) -> Iterator[DevTools]:
    """A headless Chromium with a fresh profile folder, its page navigated to ``url``; stopped at exit."""
    browser = subprocess.Popen(
        [str(CHROMIUM), *BROWSER_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        page = DevTools(page_websocket(profile, browser))
        page.call("Page.enable")
        page.call("Page.navigate", url=url)
        yield page
    finally:
        browser.terminate()
        browser.wait(timeout=30)
