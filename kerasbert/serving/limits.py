"""Request size limits and the checks that run before a request's tensors are built.

A `TensorProto` declares its shape separately from its values, and `tf.make_ndarray` repeats the last value to
fill the declared shape (as TensorFlow's C++ `Tensor::FromProto` does). So a 30-byte request declaring
`[100000]` becomes 100,000 rows, and a float tensor declaring 2.5e8 elements is allocated before anything looks
at it. `check_tensor_proto` validates dtype, dims and the declared size against `Limits` first, using only the
proto's header and value counts, and only then builds the array.

TF Serving has no such caps (it relies on the gRPC message size); these flags are ours:
`--max_request_rows`, `--max_request_bytes`, `--predict_chunk_rows`, `--rest_api_max_body_bytes`,
`--rest_api_read_timeout_in_ms`.

Example:

>>> from tensorflow.core.framework import tensor_pb2, types_pb2
>>> proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"x"])
>>> proto.tensor_shape.dim.add().size = 100000
>>> check_tensor_proto("text", proto, types_pb2.DT_STRING, Limits(max_request_rows=1000))
Traceback (most recent call last):
...
kerasbert.serving.errors.ServingError: INVALID_ARGUMENT: input 'text' has 100000 rows; this server accepts at most
1000 rows per request (--max_request_rows)
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kerasbert.serving.errors import invalid_argument

_log = logging.getLogger("kerasbert.serve")

DEFAULT_MAX_REQUEST_ROWS = 10_000
DEFAULT_MAX_REQUEST_BYTES = 256 << 20  # 256 MiB of decoded tensor data per request
DEFAULT_PREDICT_CHUNK_ROWS = 64  # the batch size kerasbert's benchmarks call SavedModels with
DEFAULT_REST_MAX_BODY_BYTES = 64 << 20  # JSON is ~3x the binary size; Python objects ~10x more
DEFAULT_REST_READ_TIMEOUT_MS = 5000
# bytes a string element costs beyond its characters (TF's tstring is 24 bytes, plus a numpy pointer)
_STRING_OVERHEAD = 32

# Set by the gRPC front end to `context.is_active` for the duration of one Predict; `Servable.predict` checks it
# between chunks, so a cancelled call stops early. (A context variable, so `ModelManager.predict` keeps the
# shared `(servable, signature_name, inputs, output_filter, deadline)` signature.)
request_active: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar(
    "kerasbert_request_active", default=None
)


@dataclass(frozen=True)
class Limits:
    """Per-request caps; 0 disables a cap.

    Attributes:
        max_request_rows: largest batch (axis 0) of any input.
        max_request_bytes: largest decoded size of all inputs of one request (and the gRPC message limit).
        predict_chunk_rows: `Servable.predict` runs bigger batches in chunks of this many rows.
        rest_max_body_bytes: largest REST body; bigger ones get 413 without being read.
        rest_read_timeout_ms: the time a REST client gets to send its headers and body.

    Example:

    >>> Limits().max_request_rows
    10000
    """

    max_request_rows: int = DEFAULT_MAX_REQUEST_ROWS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    predict_chunk_rows: int = DEFAULT_PREDICT_CHUNK_ROWS
    rest_max_body_bytes: int = DEFAULT_REST_MAX_BODY_BYTES
    rest_read_timeout_ms: int = DEFAULT_REST_READ_TIMEOUT_MS

    def check_rows(self, name: str, rows: int) -> None:
        """INVALID_ARGUMENT if `rows` exceeds `max_request_rows`."""
        if self.max_request_rows and rows > self.max_request_rows:
            raise invalid_argument(
                f"input '{name}' has {rows} rows; this server accepts at most {self.max_request_rows} rows "
                "per request (--max_request_rows)"
            )

    def check_bytes(self, total: int) -> None:
        """INVALID_ARGUMENT if a request's decoded inputs (`total` bytes) exceed `max_request_bytes`."""
        if self.max_request_bytes and total > self.max_request_bytes:
            raise invalid_argument(
                f"the request's inputs need {total} bytes; this server accepts at most {self.max_request_bytes} "
                "(--max_request_bytes)"
            )


def declared_size(proto, dtype_enum: int) -> tuple[list[int], int]:
    """`(dims, bytes)` a TensorProto declares, computed from its header and value counts only.

    Raises INVALID_ARGUMENT for negative dims. Strings count their characters (the last value repeated to fill
    the shape, as `tf.make_ndarray` does) plus a fixed per-element overhead.

    Example:

    >>> from tensorflow.core.framework import tensor_pb2, types_pb2
    >>> proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    >>> proto.tensor_shape.dim.add().size = 250_000_000
    >>> declared_size(proto, types_pb2.DT_FLOAT)
    ([250000000], 1000000000)
    """
    import tensorflow as tf

    dims = [d.size for d in proto.tensor_shape.dim]
    negative = [d for d in dims if d < 0]
    if negative:
        raise invalid_argument(f"tensor shape {dims} has a negative dimension")
    count = 1
    for d in dims:
        count *= d  # Python ints: no int64 overflow for absurd shapes
    if dtype_enum == tf.string.as_datatype_enum:
        values = proto.string_val
        chars = sum(len(v) for v in values)
        if count > len(values):
            chars += (count - len(values)) * (len(values[-1]) if values else 0)
        return dims, chars + _STRING_OVERHEAD * count
    return dims, count * tf.dtypes.as_dtype(dtype_enum).size


def check_tensor_proto(name: str, proto, expected_dtype: int | None, limits: Limits) -> tuple[np.ndarray, int]:
    """Validates one Predict input before building it; returns `(array, declared_bytes)`.

    Args:
        name: the input's name (for messages).
        proto: its `TensorProto`.
        expected_dtype: the signature's `DataType` enum for this input, or None for a name the signature lacks
            (checked later together with the other names; the value is then not built at all).
        limits: the caps (rows are checked here, the request's total bytes by the caller).

    Raises:
        ServingError: INVALID_ARGUMENT for a wrong dtype, a negative dim, too many rows or an unparsable proto.

    Example:

    >>> import tensorflow as tf
    >>> array, size = check_tensor_proto("x", tf.make_tensor_proto([1.0, 2.0]), tf.float32.as_datatype_enum,
    ...                                  Limits())
    >>> array.tolist(), size
    ([1.0, 2.0], 8)
    """
    import tensorflow as tf

    if expected_dtype is None:
        return np.zeros((0,), np.float32), 0
    want = tf.dtypes.as_dtype(expected_dtype)
    try:
        got = tf.dtypes.as_dtype(proto.dtype)
    except (TypeError, ValueError):
        raise invalid_argument(f"input '{name}' has an invalid dtype enum {proto.dtype}") from None
    if got != want:
        raise invalid_argument(f"input '{name}' expects dtype {want.name} but got {got.name}")
    dims, size = declared_size(proto, proto.dtype)
    if dims:
        limits.check_rows(name, dims[0])
    # one input alone past the byte cap is refused here, before it is built
    limits.check_bytes(size)
    try:
        return tf.make_ndarray(proto), size
    except Exception as exc:  # malformed content (wrong byte count, too many values): the client's mistake
        _log.info("input '%s': TensorProto not convertible: %r", name, exc)
        raise invalid_argument(f"input '{name}' is not a valid TensorProto for shape {dims}") from None


__all__ = ["Limits", "check_tensor_proto", "declared_size", "request_active"]
