"""kerasbert's Streamlit front end: classify, embed, tag or question text with a model served over gRPC.

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
regression exports), "Embeddings" (embedding exports: a cosine-similarity heatmap of
sentences and a nearest-neighbour search among them), "NER" (token-classification exports:
the text with its entities highlighted by type, and a table of spans and scores) and "Question
answering" (question-answering exports: a question and a paragraph, the answer highlighted in
the paragraph, its score and the n-best candidates).

The page asks the served model what it does (its ``metadata`` signature, read with
:meth:`kerasbert.client.Client.export_metadata`) and opens the tab of that task; the other tabs
say which kind of model they need. A model that does not say (an export from an older kerasbert,
or not a kerasbert export) gets one message saying how to re-export it. Nothing is inferred from
output names.
"""

from __future__ import annotations

import html
import sys
from collections.abc import Callable
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
from kerasbert import contract  # TF-free: task, signature and output names

TITLE = "kerasbert"
SUBTITLE = (
    "BERT text classification, sentence embeddings, named entities and question answering, served over gRPC "
    "(TF Serving protocol)"
)


@dataclass
class Settings:
    """What the sidebar asks for."""

    server: str
    model: str
    signature: str = contract.SERVING_DEFAULT
    timeout: float = 10.0


@dataclass
class ModelInfo:
    """What the server says about the model: versions, signature metadata, or why it can't say."""

    versions: list[tuple[int, str]] = field(default_factory=list)
    metadata: dict[str, Any] | None = None  # GetModelMetadata of the chosen signature
    export: contract.ExportMetadata | None = None  # what the model says it does (its task)
    no_export: kb.KerasBertClientError | None = None  # why the model does not say (no metadata)
    error: kb.KerasBertClientError | None = None  # server down / model missing: nothing works
    notes: list[str] = field(default_factory=list)  # partial failures (e.g. no ModelService)

    @property
    def task(self) -> str | None:
        """The model's task (a name in ``contract.TASKS``), or ``None`` when it does not say."""
        return self.export.task if self.export is not None else None

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
        signature = st.text_input("Signature", value=contract.SERVING_DEFAULT, key="signature").strip()
        timeout = st.number_input("Timeout (s)", min_value=0.5, max_value=600.0, value=10.0, step=0.5, key="timeout")
    return Settings(server=server, model=model, signature=signature or contract.SERVING_DEFAULT, timeout=float(timeout))


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
        info.export = client.export_metadata()
    except (kb.ServerUnavailable, kb.ModelNotFound, kb.RequestTimeout) as err:
        info.error = err
        return info
    except kb.KerasBertClientError as err:  # NoExportMetadata, or a failing metadata signature
        info.no_export = err
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
    regression = info.task == contract.REGRESSION
    has_pair = contract.TEXT_PAIR in info.inputs
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
    if contract.EMBEDDINGS not in info.outputs:  # an embedding model, but another signature picked
        outputs = ", ".join(f"`{name}`" for name in sorted(info.outputs)) or "none"
        st.info(
            f"Signature '{settings.signature}' of model '{settings.model}' returns no `{contract.EMBEDDINGS}` "
            f"(its outputs: {outputs}). Set the signature (sidebar, Advanced) to `{contract.SERVING_DEFAULT}`."
        )
        return
    dim = (info.outputs[contract.EMBEDDINGS].get("shape") or [None])[-1]
    st.caption(f"Each sentence becomes a {dim or '?'}-dimensional vector; similarity is the cosine.")
    text = st.text_area(
        "Sentences (one per line)",
        key="emb_sentences",
        height=160,
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
        # white numbers on dark cells, black on light ones
        color=alt.condition("abs(datum.cosine) > 0.6", alt.value("white"), alt.value("black")),
    )
    st.altair_chart(cells + values, width="stretch", height=max(120, 40 * len(labels)))


# --- NER -------------------------------------------------------------------------------------------

NER_EXAMPLE = "Mr. Smith flew from London to Berlin on Monday to meet Mr. Jones."

# Light backgrounds (dark text stays readable in both themes), one per entity type, in the order of
# the model's `entity_types`; more types than colours reuse them.
ENTITY_COLOURS = (
    "#fde68a",  # amber
    "#bfdbfe",  # blue
    "#bbf7d0",  # green
    "#fecaca",  # red
    "#ddd6fe",  # violet
    "#fed7aa",  # orange
    "#a5f3fc",  # cyan
    "#fbcfe8",  # pink
    "#d9f99d",  # lime
    "#e5e7eb",  # grey
)
ENTITY_TEXT_COLOUR = "#1f2937"
_MARK_STYLE = (
    "background:{colour};color:" + ENTITY_TEXT_COLOUR + ";padding:0.15em 0.4em;margin:0 0.1em;"
    "border-radius:0.4em;box-decoration-break:clone;-webkit-box-decoration-break:clone"
)
_LABEL_STYLE = "font-size:0.7em;font-weight:700;letter-spacing:0.04em;margin-left:0.45em;vertical-align:0.1em"


def entity_colours(entity_types: list[str], entities: list[dict[str, Any]] = ()) -> dict[str, str]:
    """A colour per entity type: the model's types in their order, then labels found but not listed."""
    types = list(dict.fromkeys([*entity_types, *sorted({e["label"] for e in entities} - set(entity_types))]))
    return {t: ENTITY_COLOURS[i % len(ENTITY_COLOURS)] for i, t in enumerate(types)}


def entity_mark(text: str, label: str, colour: str, score: float | None = None) -> str:
    """One highlight: the (escaped) text on the type's colour, followed by its label."""
    title = html.escape(label if score is None else f"{label} {score:.3f}")
    return (
        f'<mark class="kb-entity" data-label="{html.escape(label)}" title="{title}" '
        f'style="{_MARK_STYLE.format(colour=colour)}">{html.escape(text)}'
        f'<span class="kb-label" style="{_LABEL_STYLE}">{html.escape(label)}</span></mark>'
    )


def highlight_html(text: str, entities: list[dict[str, Any]], colours: dict[str, str]) -> str:
    """``text`` as HTML with each entity highlighted; everything is escaped, spaces and newlines kept.

    Spans are Python string offsets (``text[start:end]``); a span overlapping an earlier one or
    outside the text is left out of the highlights (the table still lists it).
    """
    parts, cursor = [], 0
    for entity in sorted(entities, key=lambda e: (e["start"], e["end"])):
        start, end = int(entity["start"]), int(entity["end"])
        if start < cursor or end <= start or end > len(text):
            continue
        parts.append(html.escape(text[cursor:start]))
        parts.append(entity_mark(text[start:end], entity["label"], colours[entity["label"]], entity.get("score")))
        cursor = end
    parts.append(html.escape(text[cursor:]))
    style = "white-space:pre-wrap;line-height:2.3;font-size:1.05rem"
    return f'<div class="kb-ner-text" style="{style}">{"".join(parts)}</div>'


def legend_html(colours: dict[str, str]) -> str:
    """The entity types, each in its colour."""
    marks = "".join(
        f'<mark class="kb-legend-item" data-label="{html.escape(t)}" style="{_MARK_STYLE.format(colour=c)};'
        f'font-size:0.85em;font-weight:700">{html.escape(t)}</mark>'
        for t, c in colours.items()
    )
    caption = '<span style="margin-right:0.4em">Entity types:</span>'
    return f'<div class="kb-legend" style="line-height:2">{caption}{marks}</div>'


def ner_tab(client: kb.Client, settings: Settings, info: ModelInfo) -> None:
    """Text -> the text with its entities highlighted by type, a legend, a table of spans; tokens."""
    entity_types = list(info.export.task_config.get("entity_types") or [])
    if entity_types:
        st.caption(f"Model '{settings.model}' finds entities of the types {', '.join(entity_types)}.")
    text = st.text_area("Text", value=NER_EXAMPLE, key="ner_text", height=120)
    request = (settings.server, settings.model, settings.signature, text)
    if st.button("Find entities", type="primary", key="ner_run"):
        if not text.strip():
            st.warning("Type a text first.")
            return
        try:
            entities = client.entities(text)
        except (kb.KerasBertClientError, ValueError) as err:
            st.error(str(err))
            return
        try:
            tokens: list[dict[str, Any]] | str = client.tokens(text)
        except (kb.KerasBertClientError, ValueError) as err:  # e.g. an export without `tokens`
            tokens = str(err)
        st.session_state["ner_result"] = (request, entities, tokens)
    stored = st.session_state.get("ner_result")
    if stored is not None and stored[0] == request:  # still the shown text
        show_entities(text, stored[1], stored[2], entity_types)


def show_entities(text: str, entities: list[dict[str, Any]], tokens: Any, entity_types: list[str]) -> None:
    """The legend, the highlighted text, the table of entities and (folded) the tokens."""
    colours = entity_colours(entity_types, entities)
    if colours:
        st.html(legend_html(colours))
    st.html(highlight_html(text, entities, colours))
    if entities:
        table = pd.DataFrame(
            {
                "entity": [e["text"] for e in entities],
                "type": [e["label"] for e in entities],
                "start": [e["start"] for e in entities],
                "end": [e["end"] for e in entities],
                "score": [e["score"] for e in entities],
            }
        )
        score = st.column_config.NumberColumn("score", format="%.3f")
        st.dataframe(table, hide_index=True, width="stretch", column_config={"score": score}, key="ner_table")
    else:
        st.info("No entities found.")
    with st.expander("Tokens: each WordPiece and its tag"):
        if isinstance(tokens, str):
            st.caption(f"The model's `{contract.TOKENS_SIGNATURE}` signature did not answer: {tokens}")
        else:
            st.dataframe(
                pd.DataFrame(
                    {
                        "token": [t["token"] for t in tokens],
                        "tag": [t["label"] for t in tokens],
                        "probability": [t["probability"] for t in tokens],
                        "start": [t["start"] for t in tokens],
                        "end": [t["end"] for t in tokens],
                    }
                ),
                hide_index=True,
                width="stretch",
                column_config={"probability": st.column_config.NumberColumn("probability", format="%.3f")},
                key="ner_tokens",
            )


# --- question answering ---------------------------------------------------------------------------

QA_EXAMPLE_QUESTION = "Where did John Smith go?"
QA_EXAMPLE_CONTEXT = "Yesterday John Smith went to New York 🗽 with friends; today he flew to Paris."
ANSWER_COLOUR = ENTITY_COLOURS[2]  # green


def answer_html(context: str, start: int, end: int, score: float) -> str:
    """``context`` as HTML with ``context[start:end]`` (code point offsets) highlighted; all of it escaped,
    spaces and newlines kept. An empty or out-of-range span highlights nothing."""
    if 0 <= start < end <= len(context):
        before, answer, after = context[:start], context[start:end], context[end:]
        mark = (
            f'<mark class="kb-answer" data-start="{start}" data-end="{end}" title="score {score:.3f}" '
            f'style="{_MARK_STYLE.format(colour=ANSWER_COLOUR)};font-weight:600">{html.escape(answer)}</mark>'
        )
        body = html.escape(before) + mark + html.escape(after)
    else:
        body = html.escape(context)
    style = "white-space:pre-wrap;line-height:2.1;font-size:1.05rem"
    return f'<div class="kb-qa-context" style="{style}">{body}</div>'


def qa_tab(client: kb.Client, settings: Settings, info: ModelInfo) -> None:
    """A question and a paragraph -> the answer highlighted in the paragraph, its score and the n-best."""
    config = info.export.task_config
    if config.get("n_best"):
        st.caption(
            f"Model '{settings.model}' answers with a span of the paragraph (at most "
            f"{config.get('max_answer_length', '?')} WordPieces) and its {config['n_best']} best candidates."
        )
    question = st.text_input("Question", value=QA_EXAMPLE_QUESTION, key="qa_question")
    context = st.text_area("Paragraph", value=QA_EXAMPLE_CONTEXT, key="qa_context", height=160)
    request = (settings.server, settings.model, settings.signature, question, context)
    if st.button("Answer", type="primary", key="qa_run"):
        missing = [name for name, value in (("question", question), ("paragraph", context)) if not value.strip()]
        if missing:
            st.warning(f"Type a {' and a '.join(missing)} first.")
            return
        try:
            result = client.answer(question, context)
        except (kb.KerasBertClientError, ValueError) as err:
            st.error(str(err))
            return
        st.session_state["qa_result"] = (request, result)
    stored = st.session_state.get("qa_result")
    if stored is not None and stored[0] == request:  # still the shown question and paragraph
        show_answer(context, stored[1])


def show_answer(context: str, result: dict[str, Any]) -> None:
    """The answer and its score, the paragraph with the answer highlighted, and the n-best table."""
    if result["start"] < 0:
        st.info("The model found no answer in this paragraph.")
        return
    left, right = st.columns([3, 1])
    left.metric("Answer", result["answer"])
    right.metric("Score", f"{result['score']:.1%}")
    st.html(answer_html(context, result["start"], result["end"], result["score"]))
    candidates = result["n_best"]
    table = pd.DataFrame(
        {
            "rank": range(1, len(candidates) + 1),
            "answer": [c["answer"] for c in candidates],
            "start": [c["start"] for c in candidates],
            "end": [c["end"] for c in candidates],
            "score": [c["score"] for c in candidates],
        }
    )
    st.caption("The best candidate spans (score: probability among them):")
    score = st.column_config.NumberColumn("score", format="%.3f")
    st.dataframe(table, hide_index=True, width="stretch", column_config={"score": score}, key="qa_nbest")


# --- tabs ------------------------------------------------------------------------------------------

TRAIN_HINT = (
    "python -m kerasbert.train --train_file <train.tsv> --dev_file <dev.tsv> --text_column <column> "
    "--label_column <column> --model_name <name>"
)
NER_TRAIN_HINT = (
    "python -m kerasbert.train --task token_classification --train_file <eng.train> --dev_file <eng.testa> "
    "--model_name <name>"
)
QA_TRAIN_HINT = (
    "python -m kerasbert.train --task question_answering --train_file <squad.json> --dev_file <squad.json> "
    "--train_articles 0-29 --dev_articles 30-37 --model_name <name>"
)
REEXPORT_HINT = "python -m kerasbert.export --run_dir runs/{model}"

# What each task is called in messages ("Model 'x' is a classification model").
TASK_KINDS = {
    contract.CLASSIFICATION: "a classification",
    contract.REGRESSION: "a regression",
    contract.EMBEDDING: "an embedding",
    contract.TOKEN_CLASSIFICATION: "a token-classification (NER)",
    contract.QUESTION_ANSWERING: "a question-answering",
}


@dataclass(frozen=True)
class Page:
    """A tab: its page function, the tasks it serves, which model to pick otherwise and how to make one."""

    render: Callable[[kb.Client, Settings, ModelInfo], None]
    tasks: tuple[str, ...]
    needs: str
    how: str


# Tab title -> page.
TABS = {
    "Classify": Page(
        classify_tab, (contract.CLASSIFICATION, contract.REGRESSION), "a classification or regression model", TRAIN_HINT
    ),
    "Embeddings": Page(embeddings_tab, (contract.EMBEDDING,), "an embedding model", EXPORT_HINT),
    "NER": Page(ner_tab, (contract.TOKEN_CLASSIFICATION,), "a token-classification model", NER_TRAIN_HINT),
    "Question answering": Page(qa_tab, (contract.QUESTION_ANSWERING,), "a question-answering model", QA_TRAIN_HINT),
}


def first_tab(info: ModelInfo) -> str:
    """The tab of the model's own task (from its export metadata)."""
    return next((title for title, page in TABS.items() if info.task in page.tasks), next(iter(TABS)))


def show_wrong_model(settings: Settings, info: ModelInfo, page: Page) -> None:
    """What a tab says for a model of another task: which kind of model to pick, and how to make one."""
    kind = TASK_KINDS.get(info.task, f"a '{info.task}'")
    st.info(f"Model '{settings.model}' is {kind} model. Pick {page.needs} in the sidebar to use this tab, or make one:")
    st.code(page.how, language="sh")


def show_no_export_metadata(settings: Settings, info: ModelInfo) -> None:
    """One message for a model that does not say its task: what is missing and how to re-export."""
    error = info.no_export
    if isinstance(error, kb.NoExportMetadata):
        missing = f"it has no kerasbert `{contract.METADATA_SIGNATURE}` signature"
    else:
        missing = f"its `{contract.METADATA_SIGNATURE}` signature failed"
    st.warning(
        f"Model '{settings.model}' does not say which task it performs ({missing}: an export from an older "
        "kerasbert, or not a kerasbert export), so this page cannot tell whether to classify, embed, find "
        "entities or answer questions with it. Re-export it with this kerasbert, whose exports name their "
        "task; a fine-tuned run needs no retraining:"
    )
    st.code(REEXPORT_HINT.format(model=settings.model), language="sh")
    st.caption(
        f"`runs/{settings.model}` is the training's `--output_dir` (default `runs/<model name>`). "
        f"The server said: {error}"
    )


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
        if info.export is None:  # the model does not say what it does: no guessing
            show_no_export_metadata(settings, info)
            return
        # Keyed by the task, so the page opens on the right tab also when the model changes in the sidebar.
        tabs = st.tabs(list(TABS), default=first_tab(info), key=f"tabs_{info.task}")
        for tab, page in zip(tabs, TABS.values()):
            with tab:
                if info.task in page.tasks:
                    page.render(client, settings, info)
                else:
                    show_wrong_model(settings, info, page)


if __name__ == "__main__":
    main()
