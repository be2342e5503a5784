"""Per-task decoding of a signature's outputs (numpy arrays by name) into Python results.

Every output name comes from :mod:`kerasbert.contract`. A decoder gets the outputs of one
request, so outputs padded per request (tokens, entities) never need joining.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kerasbert import contract
from kerasbert.client.errors import KerasBertClientError


class MissingOutputs(KerasBertClientError):
    """The outputs lack names a decoder needs (the client turns this into a clearer error).

    Attributes:
        missing: the names not there; available: the names that are.
    """

    def __init__(self, missing: list[str], available: list[str]):
        super().__init__(f"no {', '.join(repr(m) for m in missing)} output (outputs: {', '.join(available) or 'none'})")
        self.missing = missing
        self.available = available


def require(outputs: dict[str, np.ndarray], *names: str) -> list[np.ndarray]:
    """The named outputs, or MissingOutputs listing the absent ones."""
    missing = [n for n in names if n not in outputs]
    if missing:
        raise MissingOutputs(missing, sorted(outputs))
    return [outputs[n] for n in names]


def classification(outputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """``[{"label", "label_id", "probabilities": {class name: p}}]``, one per row."""
    (probabilities,) = require(outputs, contract.PROBABILITIES)
    probabilities = np.asarray(probabilities, np.float64)
    probabilities = probabilities.reshape(probabilities.shape[0], -1)
    label_ids = outputs.get(contract.LABEL_IDS)
    if label_ids is None:
        label_ids = probabilities.argmax(axis=-1)
    class_names = outputs.get(contract.CLASS_NAMES)
    labels = outputs.get(contract.LABELS)
    results = []
    for i, row in enumerate(probabilities):
        names = [str(c) for c in class_names[i]] if class_names is not None else [str(j) for j in range(len(row))]
        label_id = int(label_ids[i])
        label = str(labels[i]) if labels is not None else names[label_id]
        results.append({"label": label, "label_id": label_id, "probabilities": dict(zip(names, map(float, row)))})
    return results


def regression(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """float32 ``[rows]``: the ``score`` output."""
    (score,) = require(outputs, contract.SCORE)
    return np.asarray(score, dtype=np.float32).reshape(-1)


def embeddings(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """float32 ``[rows, dim]``: the ``embeddings`` output."""
    (vectors,) = require(outputs, contract.EMBEDDINGS)
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors.reshape(vectors.shape[0], -1)


def token_embeddings(outputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """``[{"tokens": [...], "embeddings": float32 [tokens, dim]}]`` per row, padding removed."""
    vectors, tokens = require(outputs, contract.TOKEN_EMBEDDINGS, contract.TOKENS)
    vectors = np.asarray(vectors, dtype=np.float32)
    mask = outputs[contract.MASK].astype(bool) if contract.MASK in outputs else tokens != ""
    return [
        {"tokens": [str(t) for t in tokens[i][mask[i]]], "embeddings": vectors[i][mask[i]]} for i in range(len(tokens))
    ]


def _offset(value: Any) -> int | None:
    """A code point offset as a Python int; ``None`` for the -1 of padding or special tokens."""
    value = int(value)
    return value if value >= 0 else None


def entities(outputs: dict[str, np.ndarray], texts: list[str]) -> list[list[dict[str, Any]]]:
    """Per text, its entities ``{"label", "start", "end", "text", "score"}``, padding removed.

    ``start``/``end`` are Unicode code point offsets into the text (``text[start:end]`` is the
    entity); ``text`` is the export's ``entity_texts`` (the same span, as the server cut it).
    """
    labels, starts, ends = require(outputs, contract.ENTITY_LABELS, contract.ENTITY_STARTS, contract.ENTITY_ENDS)
    spans = outputs.get(contract.ENTITY_TEXTS)
    scores = outputs.get(contract.ENTITY_SCORES)
    counts = outputs.get(contract.NUM_ENTITIES)
    results = []
    for i, text in enumerate(texts):
        width = labels.shape[1] if labels.ndim > 1 else 0
        count = min(int(counts[i]), width) if counts is not None else width
        row = []
        for j in range(count):
            start, end = _offset(starts[i, j]), _offset(ends[i, j])
            if not labels[i, j] or start is None or end is None:
                continue  # padding
            row.append(
                {
                    "label": str(labels[i, j]),
                    "start": start,
                    "end": end,
                    "text": str(spans[i, j]) if spans is not None else text[start:end],
                    "score": float(scores[i, j]) if scores is not None else None,
                }
            )
        results.append(row)
    return results


def tokens(outputs: dict[str, np.ndarray]) -> list[list[dict[str, Any]]]:
    """Per text, its WordPieces ``{"token", "start", "end"}`` (+ ``"label"``, ``"probability"`` when the
    export tags them), padding (``""``, or ``mask`` 0) removed.

    ``start``/``end`` are code point offsets into the text, ``None`` where the export gives -1 (special
    tokens such as ``[CLS]``) or gives no offsets at all (embedding exports).
    """
    (strings,) = require(outputs, contract.TOKENS)
    mask = outputs[contract.MASK].astype(bool) if contract.MASK in outputs else strings != ""
    labels = outputs.get(contract.TOKEN_LABELS)
    probabilities = outputs.get(contract.TOKEN_PROBABILITIES)
    starts = outputs.get(contract.TOKEN_STARTS)
    ends = outputs.get(contract.TOKEN_ENDS)
    results = []
    for i in range(len(strings)):
        row = []
        for j, token in enumerate(strings[i]):
            if not mask[i, j]:
                continue  # padding
            item = {"token": str(token)}
            if labels is not None:
                item["label"] = str(labels[i, j])
            if probabilities is not None:
                item["probability"] = float(probabilities[i, j])
            item["start"] = _offset(starts[i, j]) if starts is not None else None
            item["end"] = _offset(ends[i, j]) if ends is not None else None
            row.append(item)
        results.append(row)
    return results


tagged_tokens = tokens  # the former name (token-classification exports only)


def answers(outputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per row, ``{"answer", "start", "end", "score", "n_best": [{"answer", "start", "end", "score"}, ...]}``.

    Offsets are Unicode code points into the context (``context[start:end] == answer``); a context
    without any candidate span gives ``answer`` ``""``, ``start``/``end`` -1, ``score`` 0 and no
    n-best (so the equality still holds). n-best padding rows (start -1 or no text) are dropped.
    """
    answer, start, end, score = require(outputs, contract.ANSWER, contract.START, contract.END, contract.SCORE)
    texts, starts, ends, scores = require(
        outputs, contract.ANSWERS, contract.ANSWER_STARTS, contract.ANSWER_ENDS, contract.ANSWER_SCORES
    )
    results = []
    for i in range(len(answer)):
        n_best = [
            {"answer": str(t), "start": int(s), "end": int(e), "score": float(p)}
            for t, s, e, p in zip(texts[i], starts[i], ends[i], scores[i])
            if int(s) >= 0 and int(e) > int(s)
        ]
        results.append(
            {
                "answer": str(answer[i]),
                "start": int(start[i]),
                "end": int(end[i]),
                "score": float(score[i]),
                "n_best": n_best,
            }
        )
    return results
