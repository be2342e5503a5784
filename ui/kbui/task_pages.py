"""The task pages: Classify, NER, Question answering and Embeddings.

Each page keeps its last result in the session with the inputs it was computed for, and shows it only
while those inputs are still on the page (editing the text hides the old result). Every page can show
the WordPiece tokens of its input (:mod:`kbui.tokens`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from kbui import core, render, tokens
from kerasbert import contract


def _request(ctx: core.PageContext, *inputs: Any) -> tuple:
    """What a result was computed for: the server, model, signature and the page's inputs."""
    return (ctx.settings.server, ctx.settings.model, ctx.settings.signature, *inputs)


def _stored(key: str, request: tuple) -> Any:
    """The stored result of ``key`` if it was computed for ``request``, else None."""
    stored = st.session_state.get(key)
    return stored[1] if stored is not None and stored[0] == request else None


# --- Classify ---------------------------------------------------------------------------------------


def classify_page() -> None:
    """Text (and text pair, when the signature takes one) -> label, probabilities on a 0-1 chart, or a score."""
    ctx = core.task_page_ready("classify")
    if ctx is None:
        return
    regression = ctx.info.task == contract.REGRESSION
    has_pair = contract.TEXT_PAIR in ctx.info.inputs
    classes = ctx.info.export.task_config.get("class_names") or []
    if regression:
        st.caption(f"Model '{ctx.settings.model}' gives each text{' pair' if has_pair else ''} a score.")
    elif classes:
        st.caption(f"Model '{ctx.settings.model}' sorts text into the classes {', '.join(map(str, classes))}.")
    text = st.text_area("Text", key="text", placeholder="Type a sentence, e.g. a film review")
    pair = st.text_area("Text pair", key="text_pair", placeholder="The second sentence") if has_pair else None
    request = _request(ctx, text, pair)
    if st.button("Score" if regression else "Classify", type="primary", key="run"):
        if not text.strip() or (has_pair and not pair.strip()):
            st.warning("Type the text" + (" and the text pair" if has_pair else "") + " first.")
            return
        pairs = [pair] if has_pair else None
        client = ctx.client
        result = core.call(
            (lambda: float(client.regress([text], pairs)[0]))
            if regression
            else (lambda: client.classify([text], pairs)[0])
        )
        if result is None:
            return
        inputs = {contract.TEXT: [text], **({contract.TEXT_PAIR: [pair]} if has_pair else {})}
        st.session_state["classify_result"] = (request, (result, tokens.fetch(ctx, inputs)))
    stored = _stored("classify_result", request)
    if stored is not None:
        result, token_rows = stored
        show_classification(result)
        tokens.show(token_rows, "classify")


def show_classification(result: float | dict[str, Any]) -> None:
    """A regression score, or the label, its probability and the bar chart of all classes."""
    if isinstance(result, float):
        st.metric("Score", f"{result:.4f}")
        return
    label, probabilities = result["label"], result["probabilities"]
    left, right = st.columns(2)
    left.metric("Predicted label", label)
    right.metric("Probability", f"{probabilities.get(label, max(probabilities.values())):.1%}")
    chart = render.probability_chart(probabilities, label)
    st.altair_chart(chart, width="stretch", height=chart.height)


# --- NER --------------------------------------------------------------------------------------------

NER_EXAMPLE = "Mr. Smith flew from London to Berlin on Monday to meet Mr. Jones."


def ner_page() -> None:
    """Text -> the text with its entities highlighted by type, a legend, a table of spans; tokens."""
    ctx = core.task_page_ready("ner")
    if ctx is None:
        return
    entity_types = list(ctx.info.export.task_config.get("entity_types") or [])
    if entity_types:
        st.caption(f"Model '{ctx.settings.model}' finds entities of the types {', '.join(entity_types)}.")
    text = st.text_area("Text", value=NER_EXAMPLE, key="ner_text", height=120)
    request = _request(ctx, text)
    if st.button("Find entities", type="primary", key="ner_run"):
        if not text.strip():
            st.warning("Type a text first.")
            return
        entities = core.call(lambda: ctx.client.entities(text))
        if entities is None:
            return
        st.session_state["ner_result"] = (request, (entities, tokens.fetch(ctx, {contract.TEXT: [text]})))
    stored = _stored("ner_result", request)
    if stored is not None:
        entities, token_rows = stored
        show_entities(text, entities, entity_types)
        tokens.show(token_rows, "ner")


def show_entities(text: str, entities: list[dict[str, Any]], entity_types: list[str]) -> None:
    """The legend, the highlighted text and the table of entities."""
    colours = render.entity_colours(entity_types, entities)
    if colours:
        st.html(render.legend_html(colours))
    st.html(render.highlight_html(text, entities, colours))
    if not entities:
        st.info("No entities found.")
        return
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


# --- Question answering -----------------------------------------------------------------------------

QA_EXAMPLE_QUESTION = "Where did John Smith go?"
QA_EXAMPLE_CONTEXT = "Yesterday John Smith went to New York 🗽 with friends; today he flew to Paris."


def qa_page() -> None:
    """A question and a paragraph -> the answer highlighted in the paragraph, its score and the n-best."""
    ctx = core.task_page_ready("qa")
    if ctx is None:
        return
    config = ctx.info.export.task_config
    if config.get("n_best"):
        st.caption(
            f"Model '{ctx.settings.model}' answers with a span of the paragraph (at most "
            f"{config.get('max_answer_length', '?')} WordPieces) and its {config['n_best']} best candidates."
        )
    question = st.text_input("Question", value=QA_EXAMPLE_QUESTION, key="qa_question")
    context = st.text_area("Paragraph", value=QA_EXAMPLE_CONTEXT, key="qa_context", height=140)
    request = _request(ctx, question, context)
    if st.button("Answer", type="primary", key="qa_run"):
        missing = [name for name, value in (("question", question), ("paragraph", context)) if not value.strip()]
        if missing:
            st.warning(f"Type a {' and a '.join(missing)} first.")
            return
        result = core.call(lambda: ctx.client.answer(question, context))
        if result is None:
            return
        # The QA export's `tokens` signature takes `text`: the question's and the paragraph's WordPieces.
        inputs = {contract.QUESTION: [question], contract.CONTEXT: [context], contract.TEXT: [question, context]}
        st.session_state["qa_result"] = (request, (result, tokens.fetch(ctx, inputs)))
    stored = _stored("qa_result", request)
    if stored is not None:
        result, token_rows = stored
        show_answer(context, result)
        tokens.show(token_rows, "qa", names=["Question", "Paragraph"])


def show_answer(context: str, result: dict[str, Any]) -> None:
    """The answer and its score, the paragraph with the answer highlighted, and the n-best table."""
    if result["start"] < 0:
        st.info("The model found no answer in this paragraph.")
        return
    left, right = st.columns([3, 1])
    left.metric("Answer", result["answer"])
    right.metric("Score", f"{result['score']:.1%}")
    st.html(render.answer_html(context, result["start"], result["end"], result["score"]))
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


# --- Embeddings -------------------------------------------------------------------------------------


def sentence_lines(text: str) -> list[str]:
    """The non-blank lines of ``text``, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def embeddings_page() -> None:
    """Sentences (one per line) -> cosine-similarity heatmap and their tokens; a query -> its top-k neighbours."""
    ctx = core.task_page_ready("embeddings")
    if ctx is None:
        return
    settings, info = ctx.settings, ctx.info
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
        height=140,
        placeholder="A man is playing a guitar.\nSomeone plays an instrument.\nA cat sleeps on the sofa.",
    )
    sentences = sentence_lines(text)
    request = _request(ctx, tuple(sentences))
    if st.button("Compare", type="primary", key="emb_run"):
        if not sentences:
            st.warning("Type at least one sentence (one per line) first.")
        else:
            matrix = core.call(lambda: ctx.client.similarity(sentences))
            if matrix is not None:
                token_rows = tokens.fetch(ctx, {contract.TEXT: sentences})
                st.session_state["emb_matrix"] = (request, (matrix, token_rows))
    stored = _stored("emb_matrix", request)
    if stored is not None:
        matrix, token_rows = stored
        chart = render.similarity_heatmap(sentences, matrix)
        st.altair_chart(chart, width="stretch", height=chart.height)
        tokens.show(token_rows, "emb", names=sentences)

    st.subheader("Nearest neighbours")
    left, right = st.columns([4, 1])
    query = left.text_input("Query", key="emb_query", placeholder="Search the sentences above").strip()
    k = int(right.number_input("Top k", min_value=1, max_value=100, value=3, step=1, key="emb_k"))
    search_request = (request, query, k)
    if st.button("Search", key="emb_search"):
        if not query or not sentences:
            st.warning("Type the sentences above and a query first.")
        else:
            hits = core.call(lambda: ctx.client.search(query, sentences, k=k))
            if hits is not None:
                st.session_state["emb_hits"] = (search_request, hits)
    hits = _stored("emb_hits", search_request)
    if hits is not None:
        table = pd.DataFrame(
            {
                "rank": range(1, len(hits) + 1),
                "sentence": [hit["text"] for hit in hits],
                "cosine": [round(hit["score"], 4) for hit in hits],
            }
        )
        st.dataframe(table, hide_index=True, width="stretch")
