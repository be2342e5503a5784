"""numpy <-> ``TensorProto`` without TensorFlow (what ``tf.make_tensor_proto`` / ``tf.make_ndarray`` do)."""

from __future__ import annotations

from typing import Any

import numpy as np

from kerasbert.client.errors import KerasBertClientError
from kerasbert.client.protos import tensor_pb2, types_pb2

_DT = types_pb2.DataType
_NUMPY_TO_DTYPE = {
    np.dtype(np.float32): _DT.Value("DT_FLOAT"),
    np.dtype(np.float64): _DT.Value("DT_DOUBLE"),
    np.dtype(np.float16): _DT.Value("DT_HALF"),
    np.dtype(np.int8): _DT.Value("DT_INT8"),
    np.dtype(np.int16): _DT.Value("DT_INT16"),
    np.dtype(np.int32): _DT.Value("DT_INT32"),
    np.dtype(np.int64): _DT.Value("DT_INT64"),
    np.dtype(np.uint8): _DT.Value("DT_UINT8"),
    np.dtype(np.uint16): _DT.Value("DT_UINT16"),
    np.dtype(np.uint32): _DT.Value("DT_UINT32"),
    np.dtype(np.uint64): _DT.Value("DT_UINT64"),
    np.dtype(np.bool_): _DT.Value("DT_BOOL"),
}
_DTYPE_TO_NUMPY = {v: k for k, v in _NUMPY_TO_DTYPE.items()}
_DT_STRING = _DT.Value("DT_STRING")
# Which repeated field of TensorProto holds the values of each dtype when tensor_content is empty.
_VALUE_FIELD = {
    "DT_FLOAT": "float_val",
    "DT_DOUBLE": "double_val",
    "DT_HALF": "half_val",
    "DT_INT8": "int_val",
    "DT_INT16": "int_val",
    "DT_INT32": "int_val",
    "DT_UINT8": "int_val",
    "DT_UINT16": "int_val",
    "DT_INT64": "int64_val",
    "DT_UINT32": "uint32_val",
    "DT_UINT64": "uint64_val",
    "DT_BOOL": "bool_val",
}


def dtype_name(dtype_enum: int) -> str:
    """``DT_FLOAT`` -> ``"float32"``, ``DT_STRING`` -> ``"string"`` (numpy names otherwise)."""
    if dtype_enum == _DT_STRING:
        return "string"
    if dtype_enum in _DTYPE_TO_NUMPY:
        return _DTYPE_TO_NUMPY[dtype_enum].name
    return _DT.Name(dtype_enum).removeprefix("DT_").lower()


def as_array(values: Any) -> np.ndarray:
    """Converts inputs like ``tf.make_tensor_proto`` would: python floats -> float32,
    python ints -> int32 (int64 if too large), text -> strings; numpy arrays keep their dtype."""
    if isinstance(values, np.ndarray):
        return values
    if isinstance(values, (str, bytes)):
        values = [values]
    array = np.asarray(values)
    if array.dtype == np.float64:
        return array.astype(np.float32)
    if array.dtype == np.int64 and array.size and np.abs(array).max() < 2**31:
        return array.astype(np.int32)
    return array


def check_strings(array: np.ndarray) -> None:
    """Raises TypeError naming the first element of a text array that is not ``str``/``bytes``.

    Example:

    ```python
    check_strings(np.array(["a", None], dtype=object))
    # TypeError: element [1] is None (NoneType): a string tensor takes str or bytes only
    ```
    """
    if array.dtype.kind != "O":
        return  # numpy U/S arrays hold strings only
    for flat, value in enumerate(array.reshape(-1).tolist()):
        if not isinstance(value, (str, bytes, bytearray)):
            where = "".join(f"[{int(i)}]" for i in np.unravel_index(flat, array.shape)) if array.ndim else ""
            raise TypeError(
                f"element {where} is {value!r} ({type(value).__name__}): a string tensor takes str or bytes only"
            )


def to_tensor_proto(values: Any) -> Any:
    """Builds a ``tensorflow.TensorProto`` from a numpy array or (nested) list, without TensorFlow.

    Text (``str``/``bytes``, numpy ``U``/``S``/object arrays) becomes ``DT_STRING`` (UTF-8);
    numbers are packed into ``tensor_content`` like ``tf.make_tensor_proto`` does.

    Args:
        values: a numpy array, a (nested) list, or a single string.

    Returns:
        A ``TensorProto``.

    Raises:
        TypeError: a text list holds something that is not a string (e.g. ``None``); the
            message names its position.
        ValueError: a dtype TensorFlow has no tensor type for.

    Example:

    ```python
    proto = to_tensor_proto(["great movie", "dull"])  # dtype DT_STRING, shape [2]
    ```
    """
    array = as_array(values)
    proto = tensor_pb2.TensorProto()
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if array.dtype.kind in "USO":
        proto.dtype = _DT_STRING
        check_strings(array)
        proto.string_val.extend(
            v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.reshape(-1).tolist()
        )
        return proto
    if array.dtype not in _NUMPY_TO_DTYPE:
        raise ValueError(f"unsupported input dtype {array.dtype}")
    proto.dtype = _NUMPY_TO_DTYPE[array.dtype]
    proto.tensor_content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return proto


def from_tensor_proto(proto: Any) -> np.ndarray:
    """Converts a ``TensorProto`` to a numpy array, like ``tf.make_ndarray`` but without TensorFlow.

    Strings are decoded to Python ``str`` (UTF-8, invalid bytes replaced) in an object array.

    Args:
        proto: a ``tensorflow.TensorProto``.

    Returns:
        A numpy array with the proto's shape.

    Example:

    ```python
    from_tensor_proto(to_tensor_proto([[0.25, 0.75]]))  # array([[0.25, 0.75]], dtype=float32)
    ```
    """
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    size = int(np.prod(shape, dtype=np.int64))
    if proto.dtype == _DT_STRING:
        flat = np.empty(len(proto.string_val), dtype=object)
        flat[:] = [v.decode("utf-8", errors="replace") for v in proto.string_val]
        empty = np.full(size, "", dtype=object)
    elif proto.dtype in _DTYPE_TO_NUMPY:
        dtype = _DTYPE_TO_NUMPY[proto.dtype]
        if proto.tensor_content:
            flat = np.frombuffer(proto.tensor_content, dtype=dtype.newbyteorder("<")).astype(dtype)
        else:
            raw = np.asarray(getattr(proto, _VALUE_FIELD[_DT.Name(proto.dtype)]))
            flat = raw.astype(np.uint16).view(np.float16) if dtype == np.float16 else raw.astype(dtype)
        empty = np.zeros(size, dtype=dtype)
    else:
        raise KerasBertClientError(f"unsupported output dtype {_DT.Name(proto.dtype)}")
    if flat.size == 0:
        flat = empty
    elif flat.size < size:  # like tf.make_ndarray: the last value fills the rest
        flat = np.pad(flat, (0, size - flat.size), mode="edge")
    return flat.reshape(shape)
