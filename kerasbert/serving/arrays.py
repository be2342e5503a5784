"""Joining and splitting the batch-major outputs of several signature calls (chunks or merged requests).

Some kerasbert outputs are padded to the widest row of *their* call (`entity_*` to the most entities, `token_*`
to the most WordPieces), so outputs of two calls can differ beyond axis 0. `concat_rows` pads them to a common
shape with the output's own padding value before concatenating; `trim_padding` undoes that for one request's
slice, so a request answered in a bigger batch gets the same arrays as when it ran alone.

Padding values come from kerasbert's output contract (`kerasbert.contract`: -1 for offsets, "" for strings,
0 otherwise). TF Serving's large-batch splitting only concatenates and fails on such outputs; we pad instead.

Example:

>>> a = np.array([[3, 7]]); b = np.array([[1], [2]])
>>> concat_rows([a, b], "entity_starts").tolist()
[[3, 7], [1, -1], [2, -1]]
>>> trim_padding(concat_rows([a, b], "entity_starts")[1:], "entity_starts").tolist()
[[1], [2]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kerasbert import contract

# Outputs padded with -1 (offsets); strings pad with b"", everything else with 0.
_MINUS_ONE = {contract.ENTITY_STARTS, contract.ENTITY_ENDS, contract.TOKEN_STARTS, contract.TOKEN_ENDS}
# Outputs whose axis-1 width depends on the call's widest row (the only ones `trim_padding` trims).
VARIABLE_WIDTH = _MINUS_ONE | {
    contract.ENTITY_LABELS,
    contract.ENTITY_TEXTS,
    contract.ENTITY_SCORES,
    contract.TOKEN_LABELS,
    contract.TOKEN_PROBABILITIES,
}


def pad_value(name: str, dtype: np.dtype):
    """The value `name`'s padding positions hold."""
    if np.dtype(dtype).kind in "OSU":
        return b""
    return -1 if name in _MINUS_ONE else 0


def concat_rows(arrays: Sequence[np.ndarray], name: str) -> np.ndarray:
    """Concatenates along axis 0, first padding every other axis to the largest size among `arrays`."""
    arrays = [np.asarray(a) for a in arrays]
    if len(arrays) == 1:
        return arrays[0]
    if any(a.ndim == 0 for a in arrays) or len({a.ndim for a in arrays}) > 1:
        raise ValueError(f"output '{name}' is not batch-major (ranks {[a.ndim for a in arrays]})")
    target = [max(a.shape[axis] for a in arrays) for axis in range(1, arrays[0].ndim)]
    padded = []
    for a in arrays:
        widths = [(0, 0)] + [(0, t - s) for t, s in zip(target, a.shape[1:])]
        if any(w for _, w in widths):
            a = np.pad(a, widths, constant_values=pad_value(name, a.dtype))
        padded.append(a)
    return np.concatenate(padded, axis=0)


def trim_padding(array: np.ndarray, name: str) -> np.ndarray:
    """Drops trailing axis-1 columns that are padding in every row (only for `VARIABLE_WIDTH` outputs)."""
    if name not in VARIABLE_WIDTH or array.ndim < 2 or array.shape[1] == 0:
        return array
    pad = pad_value(name, array.dtype)
    is_pad = array == pad
    if is_pad.ndim > 2:
        is_pad = is_pad.reshape(is_pad.shape[0], is_pad.shape[1], -1).all(axis=2)
    used = np.flatnonzero(~is_pad.all(axis=0))
    width = int(used[-1]) + 1 if used.size else 0
    return array[:, :width]


__all__ = ["VARIABLE_WIDTH", "concat_rows", "pad_value", "trim_padding"]
