"""A gRPC client for raw-string kerasbert SavedModels.

Talks the standard TensorFlow Serving protocol only (``PredictionService.Predict``,
``PredictionService.GetModelMetadata`` and ``ModelService.GetModelStatus``), so it works
unchanged against stock ``tensorflow_model_server`` and against ``python -m kerasbert.serve``.

Importing this module does NOT import TensorFlow: the TF Serving protobuf modules are
loaded without running ``tensorflow/__init__.py`` (0.3 s instead of 5-9 s), and tensors
are converted to/from ``TensorProto`` with numpy. That keeps the Streamlit UI and the
command line quick to start.

Example:

```python
from kerasbert.client import Client

with Client("localhost:8500", model_name="sst2") as client:
    client.classify("a gripping, funny film")
    # [{'label': 'positive', 'label_id': 1,
    #   'probabilities': {'negative': 0.03, 'positive': 0.97}}]

with Client("localhost:8500", model_name="minilm") as client:   # an embedding export
    vectors = client.encode(["A man plays guitar.", "A cat sleeps."])   # float32 [2, 384]
    client.similarity("A man plays guitar.", "Someone plays an instrument.")   # cosine, 0.687
    client.search("a sleeping pet", ["A man plays guitar.", "A cat sleeps."], k=1)
    # [{'corpus_id': 1, 'score': 0.659, 'text': 'A cat sleeps.'}]
```

Command line: ``python -m kerasbert.client --server localhost:8500 --model sst2 "a fine film"``
(``--encode`` prints embeddings instead).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import json
import os
import sys
import threading
import types
from collections.abc import Iterable, Sequence
from typing import Any

import grpc
import numpy as np

__all__ = [
    "Client",
    "KerasBertClientError",
    "ServerUnavailable",
    "ModelNotFound",
    "InvalidInput",
    "SignatureNotFound",
    "RequestTimeout",
    "default_server",
    "default_model",
    "to_tensor_proto",
    "from_tensor_proto",
    "cosine_similarity",
]

DEFAULT_SERVER = "localhost:8500"
DEFAULT_MODEL = "kerasbert"
SERVER_ENV = "KERASBERT_SERVER"
MODEL_ENV = "KERASBERT_MODEL"
# gRPC's default receive limit is 4 MiB; allow larger replies (e.g. big embedding batches).
_MAX_MESSAGE_BYTES = 256 * 1024 * 1024

_PROTO_MODULES = (
    "tensorflow.core.framework.tensor_pb2",
    "tensorflow.core.framework.types_pb2",
    "tensorflow_serving.apis.predict_pb2",
    "tensorflow_serving.apis.get_model_metadata_pb2",
    "tensorflow_serving.apis.get_model_status_pb2",
    "tensorflow_serving.apis.prediction_service_pb2_grpc",
    "tensorflow_serving.apis.model_service_pb2_grpc",
)
_proto_lock = threading.Lock()


def _import_protos() -> dict[str, types.ModuleType]:
    """Imports the TF Serving protobuf modules, skipping ``tensorflow/__init__.py`` if possible.

    The generated ``*_pb2`` modules live inside the ``tensorflow`` package, so a plain import
    first runs TensorFlow's ``__init__`` (5-9 s). When TensorFlow is not imported yet, a bare
    placeholder package with TensorFlow's ``__path__`` stands in for it just while the
    ``*_pb2`` files load, and is removed afterwards. The real, unchanged modules stay cached
    in ``sys.modules``, so a later ``import tensorflow`` reuses them. Any problem falls back to
    the plain import.
    """
    with _proto_lock:
        if "tensorflow" not in sys.modules:
            spec = importlib.util.find_spec("tensorflow")
            if spec is not None and spec.submodule_search_locations:
                before = set(sys.modules)
                placeholder = types.ModuleType("tensorflow")
                placeholder.__path__ = list(spec.submodule_search_locations)
                sys.modules["tensorflow"] = placeholder
                try:
                    return {name: importlib.import_module(name) for name in _PROTO_MODULES}
                except Exception:  # pragma: no cover - unusual installs: use the plain import
                    for name in set(sys.modules) - before:
                        if name.startswith(("tensorflow.", "tensorflow_serving")):
                            del sys.modules[name]
                finally:
                    if sys.modules.get("tensorflow") is placeholder:
                        del sys.modules["tensorflow"]
        return {name: importlib.import_module(name) for name in _PROTO_MODULES}


_protos = _import_protos()
tensor_pb2 = _protos["tensorflow.core.framework.tensor_pb2"]
types_pb2 = _protos["tensorflow.core.framework.types_pb2"]
predict_pb2 = _protos["tensorflow_serving.apis.predict_pb2"]
get_model_metadata_pb2 = _protos["tensorflow_serving.apis.get_model_metadata_pb2"]
get_model_status_pb2 = _protos["tensorflow_serving.apis.get_model_status_pb2"]
prediction_service_pb2_grpc = _protos["tensorflow_serving.apis.prediction_service_pb2_grpc"]
model_service_pb2_grpc = _protos["tensorflow_serving.apis.model_service_pb2_grpc"]

# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


class KerasBertClientError(Exception):
    """Base class of all errors raised by :class:`Client` for failed server calls.

    Attributes:
        code: the gRPC status code name (e.g. ``"UNAVAILABLE"``), or ``None``.
        details: the server's own error message, or ``None``.

    Example:

    ```python
    try:
        Client("localhost:8500").classify("hello")
    except KerasBertClientError as err:
        print(err)
    ```
    """

    def __init__(self, message: str, code: str | None = None, details: str | None = None):
        super().__init__(message)
        self.code = code
        self.details = details


class ServerUnavailable(KerasBertClientError, ConnectionError):
    """No server answers at the client's address (gRPC ``UNAVAILABLE``)."""


class ModelNotFound(KerasBertClientError, LookupError):
    """The server runs but does not serve the requested model/version (gRPC ``NOT_FOUND``)."""


class InvalidInput(KerasBertClientError, ValueError):
    """The server rejected the request (gRPC ``INVALID_ARGUMENT``): wrong input names,
    dtypes, shapes or signature name. The message carries the server's explanation."""


class SignatureNotFound(InvalidInput):
    """The model has no signature named like the client's ``signature_name`` (TF Serving answers
    ``FAILED_PRECONDITION``, ``kerasbert.serve`` ``NOT_FOUND``)."""


class RequestTimeout(KerasBertClientError, TimeoutError):
    """The server did not answer within the client's ``timeout`` (gRPC ``DEADLINE_EXCEEDED``)."""


# --------------------------------------------------------------------------------------
# numpy <-> TensorProto without TensorFlow
# --------------------------------------------------------------------------------------

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


def _dtype_name(dtype_enum: int) -> str:
    """``DT_FLOAT`` -> ``"float32"``, ``DT_STRING`` -> ``"string"`` (numpy names otherwise)."""
    if dtype_enum == _DT_STRING:
        return "string"
    if dtype_enum in _DTYPE_TO_NUMPY:
        return _DTYPE_TO_NUMPY[dtype_enum].name
    return _DT.Name(dtype_enum).removeprefix("DT_").lower()


def _as_array(values: Any) -> np.ndarray:
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


def to_tensor_proto(values: Any) -> Any:
    """Builds a ``tensorflow.TensorProto`` from a numpy array or (nested) list, without TensorFlow.

    Text (``str``/``bytes``, numpy ``U``/``S``/object arrays) becomes ``DT_STRING`` (UTF-8);
    numbers are packed into ``tensor_content`` like ``tf.make_tensor_proto`` does.

    Args:
        values: a numpy array, a (nested) list, or a single string.

    Returns:
        A ``TensorProto``.

    Example:

    ```python
    proto = to_tensor_proto(["great movie", "dull"])  # dtype DT_STRING, shape [2]
    ```
    """
    array = _as_array(values)
    proto = tensor_pb2.TensorProto()
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if array.dtype.kind in "USO":
        proto.dtype = _DT_STRING
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


# --------------------------------------------------------------------------------------
# Embedding maths (numpy only)
# --------------------------------------------------------------------------------------


def cosine_similarity(a: Any, b: Any = None) -> np.ndarray:
    """Cosine similarity between the rows of two embedding matrices.

    A zero vector (e.g. a text of padding only) has similarity 0 to everything, never NaN.

    Args:
        a: ``[n, dim]`` array (or one ``[dim]`` vector).
        b: ``[m, dim]`` array (or one vector); default: ``a`` itself.

    Returns:
        float64 array ``[n, m]``.

    Raises:
        ValueError: the two sides have different dimensions.

    Example:

    ```python
    cosine_similarity([[1.0, 0.0], [1.0, 1.0]], [[2.0, 0.0]])
    # array([[1.        ], [0.70710678]])
    ```
    """
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = a if b is None else np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"cannot compare embeddings of shapes {a.shape} and {b.shape}: dimensions differ")

    def unit(m: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)

    return np.clip(unit(a) @ unit(b).T, -1.0, 1.0)


# --------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------


def default_server() -> str:
    """The server address from ``$KERASBERT_SERVER``, else ``"localhost:8500"``."""
    return os.environ.get(SERVER_ENV) or DEFAULT_SERVER


def default_model() -> str:
    """The model name from ``$KERASBERT_MODEL``, else ``"kerasbert"``."""
    return os.environ.get(MODEL_ENV) or DEFAULT_MODEL


def _split_target(target: str) -> tuple[str, str | None]:
    """``"host:port"`` / ``"[::1]:port"`` / ``"host"`` -> ``(host, port or None)``."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, rest.lstrip(":") or None
    if target.count(":") == 1:
        host, port = target.split(":")
        return host, port or None
    return target, None


def _text_list(texts: str | bytes | Iterable[str], what: str) -> list[Any]:
    if isinstance(texts, (str, bytes)):
        texts = [texts]
    elif isinstance(texts, np.ndarray):
        texts = texts.reshape(-1).tolist()
    texts = list(texts)
    if not texts:
        raise ValueError(f"{what} is empty: pass at least one string")
    return texts


def _texts_or_vectors(values: Any, what: str) -> tuple[list[Any] | None, np.ndarray | None, bool]:
    """Sorts an argument of similarity()/search() into ``(texts, None, single)`` or
    ``(None, vectors [n, dim], single)``; ``single`` = one string or one 1-D vector was given."""
    if isinstance(values, (str, bytes)):
        return [values], None, True
    if not isinstance(values, np.ndarray):
        values = list(values)
        if not values:
            raise ValueError(f"{what} is empty: pass at least one string or embedding")
        if all(isinstance(v, (str, bytes)) for v in values):
            return values, None, False
        values = np.asarray(values)
    if values.size == 0:
        raise ValueError(f"{what} is empty: pass at least one string or embedding")
    if values.dtype.kind in "USO":
        return values.reshape(-1).tolist(), None, False
    if values.dtype.kind not in "fiub" or values.ndim not in (1, 2):
        raise ValueError(f"{what} must be text(s) or embeddings of shape [dim] or [n, dim], got {values.shape}")
    return None, np.atleast_2d(values.astype(np.float32)), values.ndim == 1


class Client:
    """A client for a TF Serving-compatible gRPC server serving a kerasbert SavedModel.

    Args:
        host: server host name, or a full ``"host:port"`` target. Defaults to
            ``$KERASBERT_SERVER``, else ``localhost``.
        port: server gRPC port. Defaults to the one in ``$KERASBERT_SERVER``, else 8500.
        model_name: served model name (``--model_name`` of the server). Defaults to
            ``$KERASBERT_MODEL``, else ``"kerasbert"``.
        timeout: seconds to wait for each call.
        signature_name: the SavedModel signature to call.
        version: a model version number (or version label string); ``None`` = latest.
        target: ``"host:port"``; overrides ``host``/``port``.
        batch_size: long input lists are sent in requests of at most this many rows, so
            huge lists stay below gRPC message size limits.

    Example:

    ```python
    client = Client(target="localhost:8500", model_name="sst2")
    client.status()                     # [(1, 'AVAILABLE')]
    client.classify(["great", "awful"])[1]["label"]   # 'negative'
    client.close()
    ```
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        model_name: str | None = None,
        timeout: float = 10.0,
        signature_name: str = "serving_default",
        version: int | str | None = None,
        *,
        target: str | None = None,
        batch_size: int = 64,
    ):
        if target is None:
            if host is not None and port is None and _split_target(host)[1] is not None:
                target = host  # Client("localhost:8500")
            else:
                env_host, env_port = _split_target(default_server())
                host = host or env_host or "localhost"
                target = f"{f'[{host}]' if ':' in host else host}:{port or env_port or 8500}"
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.target = target
        self.model_name = model_name or default_model()
        self.timeout = timeout
        self.signature_name = signature_name
        self.version = version
        self.batch_size = batch_size
        options = [
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            # Retry a server that was down within seconds, not gRPC's default 2 minutes.
            ("grpc.max_reconnect_backoff_ms", 5000),
        ]
        self._channel = grpc.insecure_channel(target, options=options)
        self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def __repr__(self) -> str:
        return f"Client(target={self.target!r}, model_name={self.model_name!r}, signature_name={self.signature_name!r})"

    # -- plumbing ------------------------------------------------------------------------

    def _fill_model_spec(self, spec: Any, with_signature: bool = True) -> None:
        spec.name = self.model_name
        if with_signature:
            spec.signature_name = self.signature_name
        if isinstance(self.version, str):
            spec.version_label = self.version
        elif self.version is not None:
            spec.version.value = int(self.version)

    def _describe_model(self) -> str:
        version = "" if self.version is None else f" version {self.version}"
        return f"model '{self.model_name}'{version}"

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise self._translate(err) from None

    def _translate(self, err: grpc.RpcError) -> KerasBertClientError:
        code = err.code() if hasattr(err, "code") else None
        details = (err.details() if hasattr(err, "details") else None) or str(err)
        name = code.name if code is not None else None
        if code == grpc.StatusCode.UNAVAILABLE:
            return ServerUnavailable(
                f"no TF Serving server at {self.target} – start one with "
                f"`python -m kerasbert.serve --model_base_path <export dir> --model_name {self.model_name}` "
                f"(gRPC: {details})",
                name,
                details,
            )
        if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION) and "signature" in details.lower():
            return SignatureNotFound(
                f"{self._describe_model()} at {self.target} has no signature '{self.signature_name}': {details} "
                f"– see Client.metadata()['signatures'] for the ones it has",
                name,
                details,
            )
        if code == grpc.StatusCode.NOT_FOUND:
            return ModelNotFound(
                f"{self._describe_model()} is not served at {self.target}: {details} – check the model "
                f"name (the server's --model_name, or ${MODEL_ENV}) and that the model finished loading",
                name,
                details,
            )
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
            return InvalidInput(f"the server rejected the request: {details}", name, details)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return RequestTimeout(
                f"{self.target} did not answer within {self.timeout:g} s "
                f"(raise Client(timeout=...) or send smaller batches)",
                name,
                details,
            )
        return KerasBertClientError(f"request to {self.target} failed with {name}: {details}", name, details)

    # -- API -----------------------------------------------------------------------------

    def predict(
        self,
        inputs: dict[str, Any],
        output_filter: Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Calls the signature with named inputs and returns its named outputs.

        Inputs with a leading batch dimension are split into requests of at most
        ``batch_size`` rows; the outputs are concatenated back in order.

        Args:
            inputs: input name -> list, numpy array, or single string. All must have the
                same number of rows.
            output_filter: names of the outputs to compute (default: all).
            batch_size: rows per request (default: the client's ``batch_size``).

        Returns:
            Output name -> numpy array (strings decoded to Python ``str``).

        Raises:
            ValueError: no inputs, an empty input, or inputs with different row counts.
            KerasBertClientError: the call failed (see the subclasses).

        Example:

        ```python
        out = client.predict({"text": ["nice", "bad"]}, output_filter=["labels"])
        out["labels"]   # array(['positive', 'negative'], dtype=object)
        ```
        """
        if not inputs:
            raise ValueError("predict() needs at least one named input")
        arrays = {name: _as_array(value) for name, value in inputs.items()}
        rows = {name: (a.shape[0] if a.ndim else None) for name, a in arrays.items()}
        for name, n in rows.items():
            if n == 0:
                raise ValueError(f"input '{name}' is empty: pass at least one value")
        if len(set(rows.values())) > 1:
            raise ValueError(f"inputs have different numbers of rows: {rows}")
        total = next(iter(rows.values()))
        step = batch_size or self.batch_size
        if total is None:  # scalar inputs: nothing to split
            return self._predict_once(arrays, output_filter)
        parts = [
            self._predict_once({k: a[start : start + step] for k, a in arrays.items()}, output_filter)
            for start in range(0, total, step)
        ]
        if len(parts) == 1:
            return parts[0]
        return {
            key: np.concatenate([p[key] for p in parts]) if parts[0][key].ndim else parts[0][key]
            for key in parts[0]
        }

    def _predict_once(self, arrays: dict[str, np.ndarray], output_filter: Sequence[str] | None) -> dict[str, np.ndarray]:
        request = predict_pb2.PredictRequest()
        self._fill_model_spec(request.model_spec)
        for name, array in arrays.items():
            request.inputs[name].CopyFrom(to_tensor_proto(array))
        if output_filter:
            request.output_filter.extend(output_filter)
        response = self._call(self._prediction.Predict, request)
        return {name: from_tensor_proto(proto) for name, proto in response.outputs.items()}

    def _text_inputs(self, texts: Any, text_pairs: Any) -> dict[str, list[Any]]:
        inputs = {"text": _text_list(texts, "texts")}
        if text_pairs is not None:
            inputs["text_pair"] = _text_list(text_pairs, "text_pairs")
            if len(inputs["text_pair"]) != len(inputs["text"]):
                raise ValueError(
                    f"got {len(inputs['text'])} texts but {len(inputs['text_pair'])} text_pairs; they must match"
                )
        return inputs

    def _require(self, outputs: dict[str, np.ndarray], name: str, hint: str) -> np.ndarray:
        if name not in outputs:
            raise KerasBertClientError(
                f"signature '{self.signature_name}' of {self._describe_model()} has no '{name}' output "
                f"(outputs: {', '.join(sorted(outputs)) or 'none'}); {hint}"
            )
        return outputs[name]

    def classify(
        self, texts: str | Iterable[str], text_pairs: str | Iterable[str] | None = None, batch_size: int | None = None
    ) -> list[dict[str, Any]]:
        """Classifies texts (or text pairs) with a classification export.

        Args:
            texts: one string or a list of strings.
            text_pairs: for pair tasks (e.g. MRPC), the second strings, one per text.
            batch_size: rows per request (default: the client's ``batch_size``).

        Returns:
            One dict per text (also for a single string): ``label`` (str), ``label_id`` (int)
            and ``probabilities`` (class name -> float).

        Example:

        ```python
        client.classify("what a great film")
        # [{'label': 'positive', 'label_id': 1, 'probabilities': {'negative': 0.1, 'positive': 0.9}}]
        ```
        """
        outputs = self.predict(self._text_inputs(texts, text_pairs), batch_size=batch_size)
        probabilities = np.asarray(self._require(outputs, "probabilities", "use regress() or predict()"), np.float64)
        probabilities = probabilities.reshape(probabilities.shape[0], -1)
        label_ids = outputs.get("label_ids")
        if label_ids is None:
            label_ids = probabilities.argmax(axis=-1)
        class_names = outputs.get("class_names")
        labels = outputs.get("labels")
        results = []
        for i, row in enumerate(probabilities):
            names = [str(c) for c in class_names[i]] if class_names is not None else [str(j) for j in range(len(row))]
            label_id = int(label_ids[i])
            label = str(labels[i]) if labels is not None else names[label_id]
            results.append(
                {"label": label, "label_id": label_id, "probabilities": dict(zip(names, map(float, row)))}
            )
        return results

    def regress(
        self, texts: str | Iterable[str], text_pairs: str | Iterable[str] | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        """Scores texts (or text pairs) with a regression export (e.g. STS-B).

        Args:
            texts: one string or a list of strings.
            text_pairs: the second strings for pair tasks, one per text.
            batch_size: rows per request (default: the client's ``batch_size``).

        Returns:
            float32 array of shape ``[len(texts)]`` with the ``score`` output.

        Example:

        ```python
        client.regress("A man plays guitar.", "Someone plays an instrument.")  # array([3.9], dtype=float32)
        ```
        """
        outputs = self.predict(self._text_inputs(texts, text_pairs), batch_size=batch_size)
        score = self._require(outputs, "score", "use classify() or predict()")
        return np.asarray(score, dtype=np.float32).reshape(-1)

    def encode(
        self, texts: str | Iterable[str], batch_size: int | None = None, *, sort_by_length: bool = True
    ) -> np.ndarray:
        """Embeds texts with an embedding export (``python -m kerasbert.export --mode embedding``).

        Like bert-as-service's ``BertClient.encode``: long lists are sent in requests of at most
        ``batch_size`` texts, and each request waits at most the client's ``timeout``.

        Args:
            texts: one string or a list of strings.
            batch_size: texts per request (default: the client's ``batch_size``).
            sort_by_length: send texts of similar length together (the answer keeps your order).
                Exports pad each request only to its longest text, so this saves work.

        Returns:
            float32 array ``[len(texts), dim]`` (one row also for a single string).

        Raises:
            ValueError: no texts.
            ServerUnavailable, RequestTimeout, ModelNotFound: see :class:`KerasBertClientError`.
            KerasBertClientError: the signature has no ``embeddings`` output (e.g. a classifier).

        Example:

        ```python
        vectors = client.encode(["First do it", "then do it right"])   # shape (2, 384)
        ```
        """
        texts = _text_list(texts, "texts")
        order = np.arange(len(texts))
        if sort_by_length:
            order = np.argsort([len(t) for t in texts], kind="stable")
        outputs = self.predict({"text": [texts[i] for i in order]}, batch_size=batch_size)
        hint = "export the model with `python -m kerasbert.export --mode embedding`"
        embeddings = np.asarray(self._require(outputs, "embeddings", hint), dtype=np.float32)
        result = np.empty_like(embeddings.reshape(len(texts), -1))
        result[order] = embeddings.reshape(len(texts), -1)
        return result

    def encode_tokens(
        self, texts: str | Iterable[str], signature_name: str = "tokens", batch_size: int | None = None
    ) -> list[dict[str, Any]]:
        """Per-token vectors from an embedding export's token signature, padding removed.

        Args:
            texts: one string or a list of strings.
            signature_name: the signature returning ``token_embeddings``, ``tokens`` and ``mask``.
            batch_size: texts per request (default: the client's ``batch_size``).

        Returns:
            One dict per text: ``tokens`` (list of WordPiece strings, with ``[CLS]``/``[SEP]``)
            and ``embeddings`` (float32 ``[len(tokens), dim]``).

        Example:

        ```python
        [row] = client.encode_tokens("unaffable")
        row["tokens"]            # ['[CLS]', 'una', '##ffa', '##ble', '[SEP]']
        row["embeddings"].shape  # (5, 384)
        ```
        """
        sibling = copy.copy(self)  # shares the channel, calls another signature
        sibling.signature_name = signature_name
        outputs = sibling.predict({"text": _text_list(texts, "texts")}, batch_size=batch_size)
        hint = "call the embedding export's token signature"
        vectors = np.asarray(sibling._require(outputs, "token_embeddings", hint), dtype=np.float32)
        tokens = sibling._require(outputs, "tokens", hint)
        mask = outputs["mask"].astype(bool) if "mask" in outputs else tokens != ""
        return [
            {"tokens": [str(t) for t in tokens[i][mask[i]]], "embeddings": vectors[i][mask[i]]}
            for i in range(len(tokens))
        ]

    def _embed(self, *items: Any, names: Sequence[str], batch_size: int | None) -> list[tuple[np.ndarray, bool]]:
        """Each item (texts or embeddings) as ``(matrix, single)``; all texts go in one encode()."""
        parsed = [_texts_or_vectors(item, name) for item, name in zip(items, names)]
        texts = [t for item_texts, _, _ in parsed for t in (item_texts or [])]
        encoded = self.encode(texts, batch_size=batch_size) if texts else None
        results, start = [], 0
        for item_texts, vectors, single in parsed:
            if item_texts is not None:
                vectors, start = encoded[start : start + len(item_texts)], start + len(item_texts)
            results.append((vectors, single))
        return results

    def similarity(self, a: Any, b: Any = None, batch_size: int | None = None) -> float | np.ndarray:
        """Cosine similarity of texts (embedded by the server) or of embeddings you already have.

        Args:
            a: a string, a list of strings, or embeddings (``[dim]`` or ``[n, dim]``).
            b: the same kinds; default ``a`` (the similarity matrix of ``a`` with itself).
            batch_size: texts per request (default: the client's ``batch_size``).

        Returns:
            A float when ``a`` and ``b`` are single (a string or one vector), else a float64
            matrix ``[len(a), len(b)]``.

        Example:

        ```python
        client.similarity("A man plays guitar.", "Someone plays an instrument.")   # 0.687 (all-MiniLM-L6-v2)
        client.similarity(["cat", "dog", "car"])   # 3x3 matrix, ones on the diagonal
        ```
        """
        items = [a] if b is None else [a, b]
        embedded = self._embed(*items, names=["a", "b"][: len(items)], batch_size=batch_size)
        (ma, single_a), (mb, single_b) = embedded[0], embedded[-1]
        scores = cosine_similarity(ma, mb)
        return float(scores[0, 0]) if single_a and single_b else scores

    def search(self, query: Any, corpus: Any, k: int = 5, batch_size: int | None = None) -> list[Any]:
        """Top-k nearest neighbours by cosine similarity, like sentence-transformers' ``semantic_search``.

        Args:
            query: a string, a list of strings, or query embeddings.
            corpus: a list of strings (embedded here) or corpus embeddings ``[n, dim]``
                (embed a large corpus once with :meth:`encode` and pass the array).
            k: how many hits per query (at most the corpus size).
            batch_size: texts per request (default: the client's ``batch_size``).

        Returns:
            For one query, a list of ``{"corpus_id", "score", "text"}`` dicts, best first
            (``text`` only when the corpus was given as strings; ties keep corpus order);
            for several queries, one such list per query.

        Raises:
            ValueError: ``k`` < 1, or an empty query/corpus.

        Example:

        ```python
        client.search("a feline", ["a dog", "a cat", "a car"], k=2)
        # [{'corpus_id': 1, 'score': 0.673, 'text': 'a cat'}, {'corpus_id': 0, 'score': 0.480, 'text': 'a dog'}]
        ```
        """
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not isinstance(corpus, (str, bytes, np.ndarray)):
            corpus = list(corpus)  # read twice below
        corpus_texts = _texts_or_vectors(corpus, "corpus")[0]
        (queries, single), (documents, _) = self._embed(query, corpus, names=["query", "corpus"], batch_size=batch_size)
        scores = cosine_similarity(queries, documents)
        k = min(int(k), scores.shape[1])
        hits = []
        for row in scores:
            best = np.argsort(-row, kind="stable")[:k]
            found = [{"corpus_id": int(i), "score": float(row[i])} for i in best]
            if corpus_texts is not None:
                for hit in found:
                    hit["text"] = corpus_texts[hit["corpus_id"]]
            hits.append(found)
        return hits[0] if single else hits

    def metadata(self) -> dict[str, Any]:
        """The model's signatures, from ``PredictionService.GetModelMetadata``.

        Returns:
            ``{"model_name", "version", "signature_name", "inputs", "outputs", "signatures"}``
            where ``inputs``/``outputs`` describe the client's signature as
            ``{name: {"dtype": "string", "shape": [None]}}`` (``None`` = any size;
            shape ``None`` = unknown rank) and ``signatures`` holds every signature that way.

        Example:

        ```python
        meta = client.metadata()
        "text_pair" in meta["inputs"]      # True for pair tasks
        meta["outputs"]["probabilities"]   # {'dtype': 'float32', 'shape': [None, 2]}
        ```
        """
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._fill_model_spec(request.model_spec, with_signature=False)
        request.metadata_field.append("signature_def")
        response = self._call(self._prediction.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        if "signature_def" in response.metadata:
            response.metadata["signature_def"].Unpack(signature_map)

        def describe(tensors: Any) -> dict[str, dict[str, Any]]:
            return {
                name: {
                    "dtype": _dtype_name(info.dtype),
                    "shape": None
                    if info.tensor_shape.unknown_rank
                    else [d.size if d.size >= 0 else None for d in info.tensor_shape.dim],
                }
                for name, info in sorted(tensors.items())
            }

        signatures = {
            name: {"inputs": describe(sig.inputs), "outputs": describe(sig.outputs), "method_name": sig.method_name}
            for name, sig in sorted(signature_map.signature_def.items())
        }
        chosen = signatures.get(self.signature_name, {"inputs": {}, "outputs": {}})
        version = response.model_spec.version.value if response.model_spec.HasField("version") else None
        return {
            "model_name": response.model_spec.name or self.model_name,
            "version": version,
            "signature_name": self.signature_name,
            "inputs": chosen["inputs"],
            "outputs": chosen["outputs"],
            "signatures": signatures,
        }

    def status(self) -> list[tuple[int, str]]:
        """The served versions and their states, from ``ModelService.GetModelStatus``.

        Returns:
            ``[(version, state), ...]`` sorted by version, e.g. ``[(1, "AVAILABLE")]``.
            States: ``START``, ``LOADING``, ``AVAILABLE``, ``UNLOADING``, ``END``.

        Example:

        ```python
        client.status()   # [(1, 'AVAILABLE'), (2, 'LOADING')]
        ```
        """
        request = get_model_status_pb2.GetModelStatusRequest()
        self._fill_model_spec(request.model_spec, with_signature=False)
        response = self._call(self._models.GetModelStatus, request)
        state_name = get_model_status_pb2.ModelVersionStatus.State.Name
        return sorted((int(v.version), state_name(v.state)) for v in response.model_version_status)

    def close(self) -> None:
        """Closes the gRPC channel."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kerasbert.client``: classify/score/embed texts, or show status/metadata, as JSON."""
    parser = argparse.ArgumentParser(prog="python -m kerasbert.client", description=main.__doc__)
    parser.add_argument("texts", nargs="*", help="texts to classify (one result per text)")
    parser.add_argument("--server", default=default_server(), help=f"host:port (default ${SERVER_ENV} or {DEFAULT_SERVER})")
    parser.add_argument("--model", default=default_model(), help=f"model name (default ${MODEL_ENV} or {DEFAULT_MODEL})")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--pair", action="append", help="second text of a pair task (repeat once per text)")
    parser.add_argument("--regress", action="store_true", help="print the 'score' output (regression exports)")
    parser.add_argument("--encode", action="store_true", help="print the texts' embeddings (embedding exports)")
    parser.add_argument("--status", action="store_true", help="print the served versions and their states")
    parser.add_argument("--metadata", action="store_true", help="print the signature's inputs and outputs")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    if not (args.texts or args.status or args.metadata):
        parser.error("give texts to classify, or --status / --metadata")
    with Client(target=args.server, model_name=args.model, signature_name=args.signature, timeout=args.timeout) as client:
        try:
            if args.status:
                print(json.dumps({"model": client.model_name, "versions": client.status()}))
            if args.metadata:
                print(json.dumps(client.metadata(), indent=2))
            if args.texts and args.encode:
                print(json.dumps(client.encode(args.texts).tolist()))
            elif args.texts and args.regress:
                print(json.dumps(client.regress(args.texts, args.pair).tolist()))
            elif args.texts:
                print(json.dumps(client.classify(args.texts, args.pair), indent=2))
        except (KerasBertClientError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
