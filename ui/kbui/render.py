"""HTML highlights (entities, answers, WordPieces) and Altair charts (probabilities, cosine heatmap).

Everything a user typed is HTML-escaped; spaces and newlines are kept (``white-space:pre-wrap``).
Colours are light backgrounds with dark text, readable in both Streamlit themes.
"""

from __future__ import annotations

import html
from typing import Any

import altair as alt
import pandas as pd

# One light background per entity type, in the order of the model's `entity_types`; more types than
# colours reuse them.
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
TEXT_COLOUR = "#1f2937"
ANSWER_COLOUR = ENTITY_COLOURS[2]  # green
PREDICTED_COLOUR = "#2563eb"  # the predicted class's bar (blue 600: white text on it is readable)
OTHER_COLOUR = "#94a3b8"  # the other classes (slate 400)
_MARK_STYLE = (
    "background:{colour};color:" + TEXT_COLOUR + ";padding:0.15em 0.4em;margin:0 0.1em;"
    "border-radius:0.4em;box-decoration-break:clone;-webkit-box-decoration-break:clone"
)
_LABEL_STYLE = "font-size:0.7em;font-weight:700;letter-spacing:0.04em;margin-left:0.45em;vertical-align:0.1em"


# --- entities --------------------------------------------------------------------------------------


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


# --- answers ---------------------------------------------------------------------------------------


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


# --- WordPieces ------------------------------------------------------------------------------------

SPECIAL_TOKENS = frozenset({"[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"})
_TOKEN_STYLE = (
    "display:inline-block;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:0.85rem;"
    "padding:0.05em 0.45em;margin:0.15em 0.12em;border-radius:0.3em;border:1px solid #cbd5e1;"
    "color:" + TEXT_COLOUR + ";background:{background}"
)

_TAG_STYLE = "font-size:0.7em;margin-left:0.3em;font-weight:700"


def tokens_html(tokens: list[str], tags: list[str] | None = None) -> str:
    """The WordPieces as chips, in order: special tokens grey, ``##`` continuations tinted, a tag under each."""
    chips = []
    for i, token in enumerate(tokens):
        background = "#e5e7eb" if token in SPECIAL_TOKENS else ("#e0f2fe" if token.startswith("##") else "#f8fafc")
        tag = ""
        if tags is not None and tags[i] not in ("", "O"):
            tag = f'<sub class="kb-tag" style="{_TAG_STYLE}">{html.escape(tags[i])}</sub>'
        style = _TOKEN_STYLE.format(background=background)
        chips.append(f'<span class="kb-token" style="{style}">{html.escape(token)}{tag}</span>')
    return f'<div class="kb-tokens" style="line-height:1.9">{"".join(chips)}</div>'


# --- charts ----------------------------------------------------------------------------------------


def probability_chart(probabilities: dict[str, float], predicted: str) -> alt.LayerChart:
    """Horizontal bars of the class probabilities on a fixed 0-1 axis, each with its value written on it.

    The predicted class is blue, the others grey; a value is written inside its bar (white) when the bar
    is long, else just after it (dark), so no label runs past the axis.
    """
    table = pd.DataFrame(
        {
            "class": list(probabilities),
            "probability": [float(p) for p in probabilities.values()],
            "predicted": [name == predicted for name in probabilities],
        }
    )
    table["inside"] = table["probability"] > 0.8
    base = alt.Chart(table).encode(
        y=alt.Y(
            "class:N",
            sort=list(probabilities),
            title=None,
            axis=alt.Axis(labelLimit=320, labelFontSize=13, labelColor=TEXT_COLOUR),
        ),
        x=alt.X(
            "probability:Q",
            scale=alt.Scale(domain=[0, 1], nice=False, clamp=True),
            axis=alt.Axis(format="%", values=[0, 0.25, 0.5, 0.75, 1.0], title="probability"),
        ),
    )
    bars = base.mark_bar(cornerRadiusEnd=3).encode(
        color=alt.condition("datum.predicted", alt.value(PREDICTED_COLOUR), alt.value(OTHER_COLOUR)),
        tooltip=["class", alt.Tooltip("probability:Q", format=".4f")],
    )
    text = alt.Text("probability:Q", format=".1%")
    outside = (
        base.transform_filter("!datum.inside")
        .mark_text(align="left", dx=5, fontSize=13)
        .encode(text=text, color=alt.value(TEXT_COLOUR))
    )
    inside = base.transform_filter("datum.inside").mark_text(align="right", dx=-6, fontSize=13, fontWeight="bold")
    inside = inside.encode(text=text, color=alt.value("white"))
    return (bars + outside + inside).properties(height=70 + 40 * len(table))  # the height includes the axis


NUMBER_ONLY = "split(datum.label, '.')[0]"  # Vega expression: "2. Some sentence" -> "2"


def similarity_heatmap(sentences: list[str], matrix: Any) -> alt.LayerChart:
    """The cosine-similarity matrix as an annotated heatmap (rows and columns in input order).

    The colour legend sits below the map, horizontal, with room for its "-1" and "1" labels.
    """
    labels = [f"{i}. {s if len(s) <= 40 else s[:39] + '…'}" for i, s in enumerate(sentences, 1)]
    table = pd.DataFrame(
        [(labels[i], labels[j], float(matrix[i][j])) for i in range(len(labels)) for j in range(len(labels))],
        columns=["sentence", "other", "cosine"],
    )
    base = alt.Chart(table).encode(  # columns show just the sentence numbers
        x=alt.X("other:N", sort=labels, title=None, axis=alt.Axis(labelAngle=0, labelExpr=NUMBER_ONLY, orient="top")),
        y=alt.Y("sentence:N", sort=labels, title=None, axis=alt.Axis(labelLimit=300)),  # (the long labels)
    )
    legend = alt.Legend(
        orient="bottom", direction="horizontal", gradientLength=240, title="cosine", values=[-1, -0.5, 0, 0.5, 1],
        labelPadding=4, offset=12, padding=6,
    )  # fmt: skip
    cells = base.mark_rect().encode(
        color=alt.Color("cosine:Q", scale=alt.Scale(domain=[-1, 1], scheme="redblue", reverse=True), legend=legend),
        tooltip=["sentence", "other", alt.Tooltip("cosine:Q", format=".4f")],
    )
    values = base.mark_text(fontSize=13).encode(
        text=alt.Text("cosine:Q", format=".2f"),
        # white numbers on dark cells, black on light ones
        color=alt.condition("abs(datum.cosine) > 0.6", alt.value("white"), alt.value("black")),
    )
    # The height includes the top axis (~30 px) and the legend below (~70 px).
    chart = (cells + values).properties(
        height=44 * len(labels) + 110, padding={"left": 5, "right": 20, "top": 5, "bottom": 10}
    )
    return chart.configure_axis(labelColor=TEXT_COLOUR, labelFontSize=12).configure_legend(labelColor=TEXT_COLOUR)
