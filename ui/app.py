"""kerasbert's Streamlit front end: classify or embed text with a model served over gRPC.

Talks to stock TensorFlow Serving or ``python -m kerasbert.serve`` through
:class:`kerasbert.client.Client` (standard TF Serving protocol; TensorFlow is not imported,
so the page starts quickly).

Run:

```sh
KERASBERT_SERVER=localhost:8500 KERASBERT_MODEL=sst2 streamlit run ui/app.py
```

The sidebar holds the server address and model name (defaults: ``$KERASBERT_SERVER`` or
``localhost:8500``, ``$KERASBERT_MODEL`` or ``kerasbert``) and a status line. Each page
feature is a tab rendered by one function listed in ``TABS``: "Classify" (classification and
regression exports) and "Embeddings" (embedding exports: a cosine-similarity heatmap of
sentences and a nearest-neighbour search among them).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

try:
    from kerasbert import client as kb
except ImportError:  # a plain checkout, without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from kerasbert import client as kb

TITLE = "kerasbert"
SUBTITLE = "BERT text classification and sentence embeddings, served over gRPC (TF Serving protocol)"


@dataclass
class Settings:
    """What the sidebar asks for."""

    server: str
    model: str
    signature: str = "serving_default"
    timeout: float = 10.0


@dataclass
class ModelInfo:
    """What the server says about the model: versions, signature metadata, or why it can't say."""

    versions: list[tuple[int, str]] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    error: kb.KerasBertClientError | None = None  # server down / model missing: nothing works
    notes: list[str] = field(default_factory=list)  # partial failures (e.g. no ModelService)

    @property
    def inputs(self) -> dict[str, Any]:
        return (self.metadata or {}).get("inputs", {})

    @property
    def outputs(self) -> dict[str, Any]:
        return (self.metadata or {}).get("outputs", {})


def sidebar() -> Settings:
    """Server address, model name and (in "Advanced") signature and timeout."""
    st.sidebar.header("Server")
    server = st.sidebar.text_input("Server (host:port)", value=kb.default_server(), key="server").strip()
    model = st.sidebar.text_input("Model name", value=kb.default_model(), key="model").strip()
    with st.sidebar.expander("Advanced"):
        signature = st.text_input("Signature", value="serving_default", key="signature").strip()
        timeout = st.number_input("Timeout (s)", min_value=0.5, max_value=600.0, value=10.0, step=0.5, key="timeout")
    return Settings(server=server, model=model, signature=signature or "serving_default", timeout=float(timeout))


def inspect_model(client: kb.Client) -> ModelInfo:
    """Asks the server for the model's versions and signature metadata, never raising."""
    info = ModelInfo()
    try:
        info.versions = client.status()
    except (kb.ServerUnavailable, kb.ModelNotFound, kb.RequestTimeout) as err:
        info.error = err
        return info
    except kb.KerasBertClientError as err:  # e.g. a server without ModelService
        info.notes.append(f"Model status unavailable: {err}")
    try:
        info.metadata = client.metadata()
    except (kb.ServerUnavailable, kb.ModelNotFound, kb.RequestTimeout) as err:
        info.error = err
    except kb.KerasBertClientError as err:
        info.notes.append(f"Model metadata unavailable: {err}")
    if info.metadata is not None and not info.inputs:
        info.notes.append(f"The model has no signature '{client.signature_name}'.")
    return info


def show_status(settings: Settings, info: ModelInfo) -> None:
    """The sidebar status line."""
    if info.error is not None:
        if isinstance(info.error, kb.ModelNotFound):
            st.sidebar.error(f"Model '{settings.model}' not found at {settings.server}")
        elif isinstance(info.error, kb.RequestTimeout):
            st.sidebar.error(f"{settings.server} does not answer")
        else:
            st.sidebar.error(f"No server at {settings.server}")
        return
    if info.versions:
        versions = ", ".join(f"v{v} {state}" for v, state in info.versions)
        st.sidebar.success(f"Model '{settings.model}' at {settings.server}: {versions}")
    else:
        st.sidebar.info(f"Connected to {settings.server}")
    for note in info.notes:
        st.sidebar.warning(note)


def show_connection_error(settings: Settings, error: kb.KerasBertClientError) -> None:
    """A clear message saying what to start or fix, instead of a traceback."""
    st.error(str(error))
    if isinstance(error, kb.ModelNotFound):
        hint = f"python -m kerasbert.serve --model_base_path <export dir> --model_name {settings.model}"
        st.caption("Start a server for this model, or fix the model name in the sidebar:")
        st.code(hint, language="sh")


def classify_tab(client: kb.Client, settings: Settings, info: ModelInfo) -> None:
    """Text (and text pair, when the signature takes one) -> label, probability and chart, or score."""
    outputs = info.outputs
    if "embeddings" in outputs and "probabilities" not in outputs:
        st.info("This model returns embeddings, not classes: use an export of a classification or regression task.")
        return
    regression = "score" in outputs and "probabilities" not in outputs
    has_pair = "text_pair" in info.inputs
    text = st.text_area("Text", key="text", placeholder="Type a sentence, e.g. a film review")
    pair = st.text_area("Text pair", key="text_pair", placeholder="The second sentence") if has_pair else None
    request = (settings.server, settings.model, settings.signature, text, pair)
    if st.button("Score" if regression else "Classify", type="primary", key="run"):
        if not text.strip() or (has_pair and not pair.strip()):
            st.warning("Type the text" + (" and the text pair" if has_pair else "") + " first.")
            return
        try:
            pairs = [pair] if has_pair else None
            result = float(client.regress([text], pairs)[0]) if regression else client.classify([text], pairs)[0]
        except (kb.KerasBertClientError, ValueError) as err:
            st.error(str(err))
            return
        st.session_state["classify_result"] = (request, result)
    stored = st.session_state.get("classify_result")
    if stored is not None and stored[0] == request:  # still the shown inputs
        show_result(stored[1])


def show_result(result: float | dict[str, Any]) -> None:
    """A regression score, or the label, its probability and a bar chart of all classes."""
    if isinstance(result, float):
        st.metric("Score", f"{result:.4f}")
        return
    label, probabilities = result["label"], result["probabilities"]
    left, right = st.columns(2)
    left.metric("Predicted label", label)
    right.metric("Probability", f"{probabilities.get(label, max(probabilities.values())):.1%}")
    chart = pd.DataFrame({"class": list(probabilities), "probability": list(probabilities.values())})
    st.bar_chart(chart, x="class", y="probability", horizontal=True, sort=False, x_label="", y_label="probability")


EXPORT_HINT = (
    "python -m kerasbert.export --init_checkpoint <checkpoint folder> --mode embedding "
    "--pooling mean --l2_normalize --export_dir exports --model_name <name>"
)


def sentence_lines(text: str) -> list[str]:
    """The non-blank lines of ``text``, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def embeddings_tab(client: kb.Client, settings: Settings, info: ModelInfo) -> None:
    """Sentences (one per line) -> cosine-similarity heatmap; a query -> its top-k nearest sentences."""
    if "embeddings" not in info.outputs:
        outputs = ", ".join(f"`{name}`" for name in sorted(info.outputs)) or "none"
        st.info(
            f"Model '{settings.model}' (signature '{settings.signature}') returns no `embeddings` "
            f"(its outputs: {outputs}), so it cannot embed sentences. Serve an embedding export:"
        )
        st.code(EXPORT_HINT, language="sh")
        return
    dim = (info.outputs["embeddings"].get("shape") or [None])[-1]
    st.caption(f"Each sentence becomes a {dim or '?'}-dimensional vector; similarity is the cosine.")
    text = st.text_area(
        "Sentences (one per line)", key="emb_sentences", height=160,
        placeholder="A man is playing a guitar.\nSomeone plays an instrument.\nA cat sleeps on the sofa.",
    )
    sentences = sentence_lines(text)
    request = (settings.server, settings.model, settings.signature, tuple(sentences))
    if st.button("Compare", type="primary", key="emb_run"):
        if not sentences:
            st.warning("Type at least one sentence (one per line) first.")
        else:
            call(lambda: st.session_state.update(emb_matrix=(request, client.similarity(sentences))))
    stored = st.session_state.get("emb_matrix")
    if stored is not None and stored[0] == request:  # still the shown sentences
        show_similarity(sentences, stored[1])

    st.subheader("Nearest neighbours")
    left, right = st.columns([4, 1])
    query = left.text_input("Query", key="emb_query", placeholder="Search the sentences above").strip()
    k = int(right.number_input("Top k", min_value=1, max_value=100, value=3, step=1, key="emb_k"))
    search_request = (request, query, k)
    if st.button("Search", key="emb_search"):
        if not query or not sentences:
            st.warning("Type the sentences above and a query first.")
        else:
            call(lambda: st.session_state.update(emb_hits=(search_request, client.search(query, sentences, k=k))))
    stored = st.session_state.get("emb_hits")
    if stored is not None and stored[0] == search_request:
        hits = pd.DataFrame(
            {
                "rank": range(1, len(stored[1]) + 1),
                "sentence": [hit["text"] for hit in stored[1]],
                "cosine": [round(hit["score"], 4) for hit in stored[1]],
            }
        )
        st.dataframe(hits, hide_index=True, width="stretch")


def call(action: Any) -> None:
    """Runs a server call, showing a failure as an error message instead of a traceback."""
    try:
        action()
    except (kb.KerasBertClientError, ValueError) as err:
        st.error(str(err))


NUMBER_ONLY = "split(datum.label, '.')[0]"  # Vega expression: "2. Some sentence" -> "2"


def show_similarity(sentences: list[str], matrix: Any) -> None:
    """The cosine-similarity matrix as an annotated heatmap (rows and columns in input order)."""
    labels = [f"{i}. {s if len(s) <= 40 else s[:39] + '…'}" for i, s in enumerate(sentences, 1)]
    table = pd.DataFrame(
        [(labels[i], labels[j], float(matrix[i][j])) for i in range(len(labels)) for j in range(len(labels))],
        columns=["sentence", "other", "cosine"],
    )
    base = alt.Chart(table).encode(  # columns show just the sentence numbers
        x=alt.X("other:N", sort=labels, title=None, axis=alt.Axis(labelAngle=0, labelExpr=NUMBER_ONLY, orient="top")),
        y=alt.Y("sentence:N", sort=labels, title=None, axis=alt.Axis(labelLimit=260)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("cosine:Q", scale=alt.Scale(domain=[-1, 1], scheme="redblue", reverse=True)),
        tooltip=["sentence", "other", alt.Tooltip("cosine:Q", format=".4f")],
    )
    values = base.mark_text(fontSize=12).encode(
        text=alt.Text("cosine:Q", format=".2f"),
        color=alt.condition("abs(datum.cosine) > 0.6", alt.value("white"), alt.value("black")),  # readable on dark cells
    )
    st.altair_chart(cells + values, width="stretch", height=max(120, 40 * len(labels)))


# Tab title -> page function.
TABS = {"Classify": classify_tab, "Embeddings": embeddings_tab}


def first_tab(info: ModelInfo) -> str:
    """The tab that fits the model: "Embeddings" for an embedding export, else "Classify"."""
    outputs = info.outputs
    return "Embeddings" if "embeddings" in outputs and not {"probabilities", "score"} & set(outputs) else "Classify"


def main() -> None:
    st.set_page_config(page_title=TITLE, layout="centered")
    st.title(TITLE)
    st.caption(SUBTITLE)
    settings = sidebar()
    if not settings.server or not settings.model:
        st.error("Enter the server address (host:port) and the model name in the sidebar.")
        return
    # A fresh channel per run: cheap, and a server started after the page reconnects at once.
    with kb.Client(
        target=settings.server,
        model_name=settings.model,
        signature_name=settings.signature,
        timeout=settings.timeout,
    ) as client:
        info = inspect_model(client)
        show_status(settings, info)
        if info.error is not None:  # server down / model missing: say what to fix, once
            show_connection_error(settings, info.error)
            return
        for tab, render in zip(st.tabs(list(TABS), default=first_tab(info)), TABS.values()):
            with tab:
                render(client, settings, info)


if __name__ == "__main__":
    main()
