"""TF Serving's REST API (`/v1/models/...`) on the standard library's threading HTTP server.

Routes (like `tensorflow_model_server --rest_api_port`):

* `GET  /v1/models/<name>[/versions/<v>|/labels/<l>]`            -> model status
* `GET  /v1/models/<name>[/versions/<v>|/labels/<l>]/metadata`   -> signature_def metadata
* `POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict`    -> `instances` (row) or `inputs` (columnar)

Errors are `{"error": "..."}` with the HTTP status of the gRPC code (404 NOT_FOUND, 400 INVALID_ARGUMENT, ...).
Strings travel as UTF-8 JSON strings; binary ones as `{"b64": "..."}` both ways.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import model_pb2

from kerasbert.serving.errors import ServingError, invalid_argument, not_found
from kerasbert.serving.grpc_service import fill_status_response
from kerasbert.serving.model_manager import ModelManager
from kerasbert.serving.monitoring import counted_rest_route  # --- ops: request metrics
from kerasbert.serving.servable import DEFAULT_SIGNATURE

_log = logging.getLogger("kerasbert.serve")
_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<verb>/metadata|:predict|:classify|:regress)?/?$"
)


def _to_json_value(value: Any) -> Any:
    """numpy output -> JSON-able value; bytes become UTF-8 strings, or {"b64": ...} if not UTF-8."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OSa":
            return [_to_json_value(v) for v in value] if value.ndim else _to_json_value(value.item())
        return value.tolist()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode_strings(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode_strings(v) for v in value]
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"expected a string, got {type(value).__name__} {value!r}")


def json_to_tensor(name: str, value: Any, dtype: tf.DType) -> tf.Tensor:
    """Converts one JSON input to a tensor of the signature's dtype; INVALID_ARGUMENT if impossible."""
    try:
        if dtype == tf.string:
            array = np.array(_decode_strings(value), dtype=object)
            if array.dtype != object or any(not isinstance(x, bytes) for x in array.reshape(-1)):
                raise ValueError("ragged or nested string lists")
        else:
            array = np.asarray(value, dtype=dtype.as_numpy_dtype)
        return tf.constant(array, dtype=dtype)
    except Exception as exc:
        raise invalid_argument(f"input '{name}' cannot be converted to a {dtype.name} tensor: {exc}") from exc


def request_to_inputs(body: dict, signature_def) -> tuple[dict[str, tf.Tensor], bool]:
    """Parses a `:predict` body into named tensors; returns `(inputs, row_format)`."""
    expected = {k: tf.dtypes.as_dtype(v.dtype) for k, v in signature_def.inputs.items()}
    if not expected and not body.get("instances") and not body.get("inputs"):
        return {}, False  # a signature without inputs (e.g. kerasbert's `metadata`): nothing to parse
    if ("instances" in body) == ("inputs" in body):
        raise invalid_argument("the request must have exactly one of 'instances' (row) or 'inputs' (columnar)")
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list):
            raise invalid_argument("'instances' must be a list")
        if instances and all(isinstance(i, dict) and set(i) != {"b64"} for i in instances):
            columns = {}
            for index, instance in enumerate(instances):
                if set(instance) != set(expected):
                    raise invalid_argument(
                        f"instance {index} has keys {sorted(instance)}; the signature expects {sorted(expected)}"
                    )
                for key, value in instance.items():
                    columns.setdefault(key, []).append(value)
        elif len(expected) == 1:
            columns = {next(iter(expected)): instances}
        else:
            raise invalid_argument(
                f"the signature has inputs {sorted(expected)}: each instance must be an object with these keys"
            )
        row = True
    else:
        inputs = body["inputs"]
        if isinstance(inputs, dict) and set(inputs) != {"b64"}:
            columns = inputs
        elif len(expected) == 1:
            columns = {next(iter(expected)): inputs}
        else:
            raise invalid_argument(f"the signature has inputs {sorted(expected)}: 'inputs' must be an object")
        row = False
    tensors = {}
    for key, value in columns.items():
        # a name not in the signature gets a placeholder: Servable.predict reports it with the expected ones
        tensors[key] = json_to_tensor(key, value, expected[key]) if key in expected else tf.constant(0)
    return tensors, row


def outputs_to_json(outputs: dict[str, np.ndarray], row: bool) -> dict:
    """`{"predictions": [...]}` (row format) or `{"outputs": ...}` (columnar), as TF Serving answers."""
    if not row:
        if len(outputs) == 1:
            return {"outputs": _to_json_value(next(iter(outputs.values())))}
        return {"outputs": {k: _to_json_value(v) for k, v in outputs.items()}}
    sizes = {k: (v.shape[0] if v.ndim else None) for k, v in outputs.items()}
    if None in sizes.values() or len(set(sizes.values())) > 1:
        raise invalid_argument(f"outputs do not share a batch dimension {sizes}; use the columnar 'inputs' format")
    if len(outputs) == 1:
        return {"predictions": _to_json_value(next(iter(outputs.values())))}
    batch = next(iter(sizes.values()), 0)
    return {"predictions": [{k: _to_json_value(v[i]) for k, v in outputs.items()} for i in range(batch)]}


class RestApi:
    """Answers REST requests by calling the same `ModelManager` as the gRPC services.

    Example:

    >>> api = RestApi(manager, timeout_ms=30000)                              # doctest: +SKIP
    >>> status, body = api.handle("GET", "/v1/models/sst2", b"")              # doctest: +SKIP
    >>> status, body["model_version_status"][0]["state"]                      # doctest: +SKIP
    (200, 'AVAILABLE')
    """

    # --- ops: Host check, CORS, Prometheus and health paths (a http_extras.RestExtras, set by server.main)
    extras = None

    def __init__(self, manager: ModelManager, timeout_ms: int = 30000, max_workers: int = 4):
        self.manager = manager
        self.timeout = timeout_ms / 1000 if timeout_ms and timeout_ms > 0 else None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="rest-predict")

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        """Returns `(http_status, json_body)` for one request; never raises."""
        try:
            return 200, self._route(method, path.split("?", 1)[0], body)
        except ServingError as exc:
            _log.warning("REST %s %s -> %s: %s", method, path, exc.code.name, exc.message)
            return exc.http_status, {"error": exc.message}
        except Exception as exc:
            _log.exception("REST %s %s failed unexpectedly", method, path)
            return 500, {"error": f"{type(exc).__name__}: {exc}"}

    @counted_rest_route  # --- ops: request_count / request_latency per model request
    def _route(self, method: str, path: str, body: bytes) -> dict:
        match = _ROUTE.match(path)
        if not match:
            raise not_found(f"Malformed request: {method} {path}")
        spec = model_pb2.ModelSpec(name=match["name"])
        version = int(match["version"]) if match["version"] else None
        if version is not None:
            spec.version.value = version
        if match["label"]:
            spec.version_label = match["label"]
        verb = match["verb"] or ""
        if method == "GET" and verb in ("", "/metadata"):
            if verb == "":
                return json_format.MessageToDict(
                    fill_status_response(self.manager, spec),
                    always_print_fields_with_no_presence=True,
                    preserving_proto_field_name=True,
                )
            servable = self.manager.get_servable(spec.name, version, match["label"])
            return {
                "model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
                "metadata": {
                    "signature_def": json_format.MessageToDict(
                        servable.signature_def_map(), preserving_proto_field_name=True
                    )
                },
            }
        if method == "POST" and verb == ":predict":
            return self._predict(spec.name, version, match["label"], body)
        if method == "POST" and verb in (":classify", ":regress"):
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"{verb[1:]} is not implemented; use :predict")
        raise not_found(f"Malformed request: {method} {path}")

    def _predict(self, name: str, version: int | None, label: str | None, body: bytes) -> dict:
        try:
            request = json.loads(body or b"{}")
        except ValueError as exc:
            raise invalid_argument(f"JSON parse error: {exc}") from exc
        if not isinstance(request, dict):
            raise invalid_argument("the request body must be a JSON object")
        servable = self.manager.get_servable(name, version, label)
        signature_name = request.get("signature_name") or DEFAULT_SIGNATURE
        inputs, row = request_to_inputs(request, servable.signature_def(signature_name))
        future = self._pool.submit(self.manager.predict, servable, signature_name, inputs)
        try:
            outputs = future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            raise ServingError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"predict took longer than --rest_api_timeout_in_ms={int(self.timeout * 1000)}",
            ) from None
        return outputs_to_json(outputs, row)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def start_rest_server(api: RestApi, host: str, port: int) -> ThreadingHTTPServer:
    """Serves `api` on `host:port` from a daemon thread; returns the server (call `.shutdown()` to stop)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = api.timeout  # socket read timeout

        def _answer(self, method: str) -> None:
            if api.extras is not None and api.extras.intercept(self, method):  # --- ops hooks
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, payload = api.handle(method, self.path, body)
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 (http.server naming)
            self._answer("GET")

        def do_POST(self):  # noqa: N802
            self._answer("POST")

        # --- ops: OPTIONS preflight and CORS headers (kerasbert.serving.http_extras)
        def do_OPTIONS(self):  # noqa: N802
            if api.extras is not None and api.extras.intercept(self, "OPTIONS"):
                return
            self.send_error(501)

        def end_headers(self):
            if api.extras is not None:
                api.extras.add_headers(self)
            super().end_headers()

        def log_message(self, fmt, *args):  # keep stderr for errors, which RestApi logs
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="rest", daemon=True).start()
    return server
