"""kerasbert's Streamlit app: one page per task, plus the Server page, for models served over gRPC.

Talks to stock TensorFlow Serving or ``python -m kerasbert.serve`` through
:class:`kerasbert.client.Client` (standard TF Serving protocol; TensorFlow is not imported, so the
app starts quickly).

Run:

```sh
KERASBERT_SERVER=localhost:8500 KERASBERT_MODEL=sst2 streamlit run ui/app.py
```

Pages (``st.navigation``; the page scripts are ``ui/views/*.py``, their code is in ``ui/kbui/``):
Classify (classification and regression exports: label, probabilities on a 0-1 axis, or a score),
NER (token classification: entities highlighted by type), Question answering (the answer highlighted
in the paragraph, the n-best), Embeddings (a cosine-similarity heatmap and a nearest-neighbour
search), each showing the WordPiece tokens of the input on request; and Server (the served models
with their versions and states, a model picker, each signature's input and output dtypes and shapes,
and request counts and latencies from the Prometheus endpoint).

The sidebar holds the server address and model name (``$KERASBERT_SERVER`` or ``localhost:8500``,
``$KERASBERT_MODEL`` or ``kerasbert``) and, under Advanced, the signature, the timeout, the REST
address for the metrics (``$KERASBERT_REST``, default the gRPC port + 1) and the server's model
config file (``$KERASBERT_MODEL_CONFIG``), whose models the Server page lists.

The app asks the served model what it does (its ``metadata`` signature) and opens the page of that
task, also when another model is picked; the other task pages say which kind of model they need and
offer the served models that fit. Nothing is inferred from output names.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

UI = Path(__file__).resolve().parent
sys.path.insert(0, str(UI))  # kbui, for the page scripts too
try:
    from kerasbert import client as kb
except ImportError:  # a plain checkout, without `pip install -e .`
    sys.path.insert(0, str(UI.parent))
    from kerasbert import client as kb

from kbui import core  # noqa: E402

TITLE = "kerasbert"
FOLLOWED_KEY = "_kb_followed"  # (server, model, task) the pages last followed


def navigation(ctx: core.PageContext) -> tuple[st.Page, dict[str, st.Page]]:
    """The pages, the one of the model's task first shown; returns the page to run and all pages by URL path."""
    home = core.page_for_task(ctx.info.task) or core.PAGES[0]
    pages = {
        spec.url_path: st.Page(
            str(UI / spec.script), title=spec.title, icon=spec.icon, url_path=spec.url_path, default=spec is home
        )
        for spec in core.PAGES
    }
    return st.navigation(list(pages.values())), pages


def follow_model(ctx: core.PageContext, current: st.Page, pages: dict[str, st.Page]) -> None:
    """When the model (or its task) changed since the last run, opens the page of its task.

    Only from a task page (the Server page stays where it is), and not on a session's first run, where
    the page of the model's task is the default and a page asked for by URL is kept.
    """
    key = (ctx.settings.server, ctx.settings.model, ctx.info.task)
    previous = st.session_state.get(FOLLOWED_KEY)
    st.session_state[FOLLOWED_KEY] = key
    target = core.page_for_task(ctx.info.task)
    current_spec = core.spec(current.url_path or next(p for p, page in pages.items() if page is current))
    if previous is None or previous == key or target is None or not current_spec.tasks:
        return
    if ctx.info.task not in current_spec.tasks:
        st.switch_page(pages[target.url_path])


def main() -> None:
    st.set_page_config(page_title=TITLE, layout="centered")
    settings = core.sidebar()
    if not settings.server or not settings.model:
        st.error("Enter the server address (host:port) and the model name in the sidebar.")
        return
    # A fresh channel per run: cheap, and a server started after the page reconnects at once.
    with kb.Client(
        target=settings.server, model_name=settings.model, signature_name=settings.signature, timeout=settings.timeout
    ) as client:
        ctx = core.connect(settings, client)
        current, pages = navigation(ctx)
        follow_model(ctx, current, pages)
        core.show_status(ctx)
        current.run()


main()
