"""The WordPiece tokens of a page's input, from the served export's ``tokens`` signature.

Embedding and token-classification exports have a ``tokens`` signature (``kerasbert/export/embedding.py``:
``tokens`` and ``mask``; ``kerasbert/export/tagging.py``: ``tokens`` with ``token_labels``,
``token_probabilities``, ``token_starts``, ``token_ends``). It is called through the client's plain
``predict()`` on a second client whose ``signature_name`` is ``tokens``, with the page's inputs that the
signature takes (as ``GetModelMetadata`` lists them), and decoded by name: ``tokens`` (``""`` is
padding, or ``mask`` says which are real) plus any other per-token output. So an export of any task
that gains such a signature shows its tokens with no change here; one without says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from kbui import render
from kbui.core import PageContext
from kerasbert import client as kb
from kerasbert import contract

# Per-token outputs -> table columns.
COLUMNS = {
    contract.TOKEN_LABELS: "tag",
    contract.TOKEN_PROBABILITIES: "probability",
    contract.TOKEN_STARTS: "start",
    contract.TOKEN_ENDS: "end",
}


@dataclass
class Tokens:
    """The tokens of each input row (``rows``: one list of dicts per row), or why there are none (``note``)."""

    rows: list[list[dict[str, Any]]] = field(default_factory=list)
    note: str | None = None


def decode(outputs: dict[str, np.ndarray]) -> list[list[dict[str, Any]]]:
    """Rows of ``{"token", <per-token outputs>...}`` from a ``tokens`` signature's outputs, padding removed.

    >>> out = {"tokens": np.array([["[CLS]", "hi", "[SEP]", ""]], dtype=object), "mask": np.array([[1, 1, 1, 0]]),
    ...        "token_embeddings": np.zeros((1, 4, 8))}
    >>> decode(out)
    [[{'token': '[CLS]'}, {'token': 'hi'}, {'token': '[SEP]'}]]
    """
    tokens = np.asarray(outputs[contract.TOKENS])
    tokens = tokens.reshape(1, -1) if tokens.ndim == 1 else tokens
    if contract.MASK in outputs:
        real = np.asarray(outputs[contract.MASK]).reshape(tokens.shape).astype(bool)
    else:
        real = tokens != ""
    order = [*COLUMNS, *sorted(outputs)]  # tag, probability, start, end first, then any other per-token output
    per_token = {
        COLUMNS.get(name, name): np.asarray(outputs[name]).reshape(tokens.shape)
        for name in dict.fromkeys(order)
        if name in outputs
        and name not in (contract.TOKENS, contract.MASK)
        and np.asarray(outputs[name]).size == tokens.size
    }
    rows = []
    for i in range(tokens.shape[0]):
        row = []
        for j in np.flatnonzero(real[i]):
            item = {"token": str(tokens[i, j])}
            for column, values in per_token.items():
                value = values[i, j]
                if column in ("start", "end"):
                    value = int(value) if int(value) >= 0 else None
                elif isinstance(value, np.generic):
                    value = value.item()
                item[column] = value
            row.append(item)
        rows.append(row)
    return rows


def fetch(ctx: PageContext, inputs: dict[str, list[str]]) -> Tokens:
    """The tokens of ``inputs`` (input name -> one string per row), or a note saying why there are none."""
    signature = ctx.info.signatures.get(contract.TOKENS_SIGNATURE)
    model = ctx.settings.model
    if signature is None:
        return Tokens(
            note=f"Model '{model}' has no `{contract.TOKENS_SIGNATURE}` signature, so the server cannot show "
            "its WordPieces (its signatures: "
            + ", ".join(f"`{name}`" for name in sorted(ctx.info.signatures) if not name.startswith("__"))
            + ")."
        )
    wanted = {name: values for name, values in inputs.items() if name in signature["inputs"]}
    missing = sorted(set(signature["inputs"]) - set(wanted))
    if missing:
        return Tokens(note=f"The `{contract.TOKENS_SIGNATURE}` signature also wants {', '.join(missing)}.")
    settings = ctx.settings
    with kb.Client(
        target=settings.server, model_name=model, signature_name=contract.TOKENS_SIGNATURE, timeout=settings.timeout
    ) as tokens_client:
        try:
            return Tokens(rows=decode(tokens_client.predict(wanted)))
        except (kb.KerasBertClientError, ValueError, TypeError, KeyError) as err:
            return Tokens(note=f"The `{contract.TOKENS_SIGNATURE}` signature did not answer: {err}")


def show(tokens: Tokens, key: str, names: list[str] | None = None) -> None:
    """An expander with each row's WordPieces as chips (and a table when the tokens carry more than the text).

    ``names``: a caption per row (e.g. the sentences), when there are several.
    """
    count = sum(len(row) for row in tokens.rows)
    title = "Tokens" + (f": {count} WordPieces" if tokens.rows else "")
    with st.expander(title):
        if tokens.note is not None:
            st.caption(tokens.note)
            return
        for i, row in enumerate(tokens.rows):
            if names is not None and len(tokens.rows) > 1:
                st.caption(names[i])
            tags = [t["tag"] for t in row] if row and "tag" in row[0] else None
            st.html(render.tokens_html([t["token"] for t in row], tags))
            if row and len(row[0]) > 1:
                table = pd.DataFrame(row)
                config = {}
                if "probability" in table:
                    config["probability"] = st.column_config.NumberColumn("probability", format="%.3f")
                st.dataframe(table, hide_index=True, width="stretch", column_config=config, key=f"{key}_tokens_{i}")
