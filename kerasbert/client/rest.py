"""TF Serving's REST API as a client wire (``Client("http://host:8501", ...)``), standard library only.

``http.client`` with one keep-alive connection per thread (no new dependency: ``requests`` would add
nothing the client needs, and the client stays importable with numpy + grpcio + protobuf only). The
paths and bodies are TF Serving's:

* ``POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict`` with ``signature_name`` and the
  columnar ``inputs`` (so zero-input and differently batched signatures work); the answer's
  ``outputs`` are decoded with the dtypes of the signature, read once from ``.../metadata``;
* ``GET /v1/models/<name>[...]/metadata`` -> the ``SignatureDefMap`` (parsed into the same proto the
  gRPC wire gets, so :meth:`Client.metadata` has one code path);
* ``GET /v1/models/<name>[...]`` -> the ``GetModelStatusResponse``.

Errors (``{"error": "..."}`` with an HTTP status) become :class:`~kerasbert.client.transport.WireError`
with the gRPC code the status stands for, so both wires raise the same typed errors. REST has no
``output_filter``: the server computes every output and the client keeps the ones asked for.
"""

from __future__ import annotations

import base64
import concurrent.futures
import http.client
import json
import os
import ssl
import threading
import urllib.parse
from collections.abc import Sequence
from typing import Any

import numpy as np
from google.protobuf import json_format

from kerasbert.client.protos import get_model_metadata_pb2, get_model_status_pb2, types_pb2
from kerasbert.client.tensors import _DT_STRING, _DTYPE_TO_NUMPY, check_strings
from kerasbert.client.transport import WireError

# The gRPC code each HTTP status of TF Serving's REST API stands for (its own mapping, reversed).
_CODE_OF_STATUS = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ALREADY_EXISTS",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",  # a proxy in front of a server that is down
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _json_value(array: np.ndarray) -> Any:
    """An input array as JSON: text as UTF-8 strings (``{"b64": ...}`` for bytes that are not UTF-8)."""
    if array.dtype.kind in "USO":
        check_strings(array)

        def text(value: Any) -> Any:
            if isinstance(value, str):
                return value
            try:
                return bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(bytes(value)).decode("ascii")}

        flat = [text(v) for v in array.reshape(-1).tolist()]
        return np.array(flat, dtype=object).reshape(array.shape).tolist() if array.ndim else flat[0]
    return array.tolist()


def _strings(value: Any) -> Any:
    """JSON output strings as ``str`` (``{"b64": ...}`` decoded as UTF-8, invalid bytes replaced)."""
    if isinstance(value, list):
        return [_strings(v) for v in value]
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"]).decode("utf-8", errors="replace")
    return value


def _array(value: Any, dtype_enum: int) -> np.ndarray:
    """One JSON output as the numpy array the gRPC wire would give (same dtype, ``str`` for text)."""
    if dtype_enum == _DT_STRING:
        strings = _strings(value)
        if not isinstance(strings, list):
            array = np.empty((), dtype=object)
            array[()] = strings
            return array
        return np.array(strings, dtype=object)
    return np.asarray(value, dtype=_DTYPE_TO_NUMPY.get(dtype_enum, np.float32))


class RestWire:
    """Predict / metadata / status over HTTP(S) with keep-alive connections (one per thread)."""

    kind = "REST"

    def __init__(
        self,
        url: str,
        ca_cert: Any = None,
        client_cert: Any = None,
        client_key: Any = None,
        max_workers: int = 4,
    ):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s)://host:port URL: {url!r}")
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._ssl = self._ssl_context(ca_cert, client_cert, client_key) if self._https else None
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._max_workers = max_workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        # (model, version) -> {signature: {output name: dtype enum}}, from .../metadata
        self._outputs: dict[tuple[str, Any], dict[str, dict[str, int]]] = {}

    @staticmethod
    def _ssl_context(ca_cert: Any, client_cert: Any, client_key: Any) -> ssl.SSLContext:
        if (client_cert is None) != (client_key is None):
            raise ValueError("client_cert and client_key go together (mutual TLS needs both)")
        if isinstance(ca_cert, bytes) or (isinstance(ca_cert, str) and "-----BEGIN" in ca_cert):
            context = ssl.create_default_context(
                cadata=ca_cert.decode("ascii") if isinstance(ca_cert, bytes) else ca_cert
            )
        else:
            context = ssl.create_default_context(cafile=os.fspath(ca_cert) if ca_cert is not None else None)
        if client_cert is not None:  # files only here (ssl loads certificate chains from paths)
            context.load_cert_chain(os.fspath(client_cert), os.fspath(client_key))
        return context

    # -- HTTP ------------------------------------------------------------------------------

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._ssl)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
            conn.kerasbert_used = False
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _http(self, method: str, path: str, body: dict | None, timeout: float) -> Any:
        """One request on this thread's connection; the JSON answer, or WireError."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (1, 2):
            conn = self._connection(timeout)
            reused = conn.kerasbert_used
            try:
                conn.request(method, self._prefix + path, body=data, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                conn.kerasbert_used = True
                if response.will_close:
                    self._drop()
                break
            except TimeoutError:
                self._drop()
                raise WireError("DEADLINE_EXCEEDED", f"no answer within {timeout:g} s") from None
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as err:
                self._drop()  # a keep-alive connection the server closed meanwhile: once more on a new one
                if reused and attempt == 1:
                    continue
                raise WireError("UNAVAILABLE", f"{type(err).__name__}: {err}") from None
            except (OSError, http.client.HTTPException) as err:
                self._drop()
                raise WireError("UNAVAILABLE", f"{type(err).__name__}: {err}") from None
        try:
            answer = json.loads(payload or b"null")
        except ValueError:
            answer = None
        if response.status != 200:
            message = answer.get("error") if isinstance(answer, dict) else None
            message = str(message or f"HTTP {response.status} {response.reason}: {payload[:200]!r}")
            code = _CODE_OF_STATUS.get(response.status, "UNKNOWN")
            if code == "INVALID_ARGUMENT" and "signature" in message.lower() and "not found" in message.lower():
                code = "FAILED_PRECONDITION"  # stock TF Serving's 400 for an unknown signature name
            raise WireError(code, message)
        if answer is None:
            raise WireError("INTERNAL", f"the answer is not JSON: {payload[:200]!r}")
        return answer

    @staticmethod
    def _model_path(model: tuple[str, Any]) -> str:
        name, version = model
        path = f"/v1/models/{urllib.parse.quote(name, safe='')}"
        if isinstance(version, str):
            return f"{path}/labels/{urllib.parse.quote(version, safe='')}"
        return path if version is None else f"{path}/versions/{int(version)}"

    # -- the wire ----------------------------------------------------------------------------

    def model_metadata(self, model: tuple[str, Any], timeout: float) -> tuple[Any, int | None, str]:
        answer = self._http("GET", self._model_path(model) + "/metadata", None, timeout)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        try:
            json_format.ParseDict(
                answer.get("metadata", {}).get("signature_def", {}), signature_map, ignore_unknown_fields=True
            )
        except (json_format.ParseError, AttributeError) as err:
            raise WireError("INTERNAL", f"unexpected metadata answer: {err}") from None
        spec = answer.get("model_spec", {})
        self._outputs[model] = {
            name: {key: info.dtype for key, info in sig.outputs.items()}
            for name, sig in signature_map.signature_def.items()
        }
        version = spec.get("version")
        return signature_map, int(version) if version not in (None, "") else None, spec.get("name", "")

    def model_status(self, model: tuple[str, Any], timeout: float) -> Any:
        answer = self._http("GET", self._model_path(model), None, timeout)
        response = get_model_status_pb2.GetModelStatusResponse()
        json_format.ParseDict(answer, response, ignore_unknown_fields=True)
        return response

    def _signature_outputs(self, model: tuple[str, Any], signature_name: str, timeout: float) -> dict[str, int]:
        if signature_name not in self._outputs.get(model, {}):
            self.model_metadata(model, timeout)  # first use, or a new version with other signatures
        outputs = self._outputs[model].get(signature_name)
        if outputs is None:
            raise WireError("NOT_FOUND", f'Serving signature name: "{signature_name}" not found in signature def')
        return outputs

    def predict(
        self,
        model: tuple[str, Any],
        arrays: dict[str, np.ndarray],
        output_filter: Sequence[str] | None,
        signature_name: str,
        timeout: float,
    ) -> dict[str, np.ndarray]:
        """One ``:predict`` (columnar ``inputs``), its outputs as numpy arrays."""
        body: dict[str, Any] = {"signature_name": signature_name}
        if arrays:
            body["inputs"] = {name: _json_value(array) for name, array in arrays.items()}
        answer = self._http("POST", self._model_path(model) + ":predict", body, timeout)
        dtypes = self._signature_outputs(model, signature_name, timeout)
        if not isinstance(answer, dict) or "outputs" not in answer:
            raise WireError("INTERNAL", f"the :predict answer has no 'outputs': {str(answer)[:200]}")
        values = answer["outputs"]
        if len(dtypes) == 1:  # TF Serving names no output when there is only one
            values = {next(iter(dtypes)): values}
        elif not isinstance(values, dict):
            raise WireError("INTERNAL", f"the :predict answer's 'outputs' is not an object: {str(values)[:200]}")
        wanted = set(output_filter) if output_filter else None
        return {
            name: _array(value, dtypes.get(name, types_pb2.DT_FLOAT))
            for name, value in values.items()
            if wanted is None or name in wanted
        }

    def start(self, *request: Any) -> concurrent.futures.Future:
        """:meth:`predict` (same arguments) on a worker thread, each with its own keep-alive connection."""
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self._max_workers, thread_name_prefix="kerasbert-rest"
                )
        return self._pool.submit(self.predict, *request)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            connections, self._connections = self._connections, []
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        for conn in connections:
            conn.close()
