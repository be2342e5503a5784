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
import binascii
import concurrent.futures
import json
import logging
import re
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import model_pb2

from kerasbert.serving.errors import ServingError, internal_error, invalid_argument, not_found
from kerasbert.serving.grpc_service import fill_status_response
from kerasbert.serving.limits import Limits
from kerasbert.serving.model_manager import ModelManager
from kerasbert.serving.monitoring import counted_rest_route  # --- ops: request metrics
from kerasbert.serving.servable import DEFAULT_SIGNATURE

_log = logging.getLogger("kerasbert.serve")
_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<verb>/metadata|:predict|:classify|:regress)?/?$"
)
_INT64_MAX = 2**63 - 1
SERVER_HEADER = "kerasbert.serve"  # no Python version (TF Serving sends no Server header at all)


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
        return _b64decode(value["b64"])
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"expected a string, got {type(value).__name__} {value!r}")


def _b64decode(text: Any) -> bytes:
    """Strict base64 (standard or URL-safe alphabet, padding optional, like absl::Base64Unescape).

    Example:

    >>> _b64decode("YWJj"), _b64decode("YWI")
    (b'abc', b'ab')
    >>> _b64decode("!!!")
    Traceback (most recent call last):
    ...
    ValueError: Unable to base64 decode
    """
    if not isinstance(text, str):
        raise ValueError("Unable to base64 decode")
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded.encode("ascii"))  # no validate= for this alphabet
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError("Unable to base64 decode") from None


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
    except RecursionError:
        raise invalid_argument(f"input '{name}' is nested too deeply") from None
    except Exception as exc:
        raise invalid_argument(f"input '{name}' cannot be converted to a {dtype.name} tensor: {exc}") from exc


def request_to_inputs(body: dict, signature_def, limits: Limits | None = None) -> tuple[dict[str, tf.Tensor], bool]:
    """Parses a `:predict` body into named tensors; returns `(inputs, row_format)`.

    Rows past `limits.max_request_rows` are refused before any tensor is built.
    """
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
    # --- limits: the row cap, before building tensors
    limits = limits or Limits()
    if row:
        limits.check_rows(next(iter(columns), "instances"), len(instances))
    for key, value in columns.items():
        if isinstance(value, list):
            limits.check_rows(key, len(value))
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
        except Exception:  # a bug: keep serving, tell the client nothing about the inside
            error = internal_error("REST API")
            _log.exception("REST %s %s failed unexpectedly (reference %s)", method, path, error.reference)
            return 500, {"error": error.message}

    @counted_rest_route  # --- ops: request_count / request_latency per model request
    def _route(self, method: str, path: str, body: bytes) -> dict:
        match = _ROUTE.match(path)
        if not match:
            raise not_found(f"Malformed request: {method} {path}")
        spec = model_pb2.ModelSpec(name=match["name"])
        version = int(match["version"]) if match["version"] else None
        if version is not None:
            if version > _INT64_MAX:  # TF Serving's absl::SimpleAtoi into int64
                raise invalid_argument(f"Failed to convert version: {match['version']} to numeric.")
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
        deadline = time.monotonic() + self.timeout if self.timeout else None
        try:
            request = json.loads(body or b"{}")
        except RecursionError:
            raise invalid_argument("JSON parse error: nested too deeply") from None
        except ValueError as exc:
            raise invalid_argument(f"JSON parse error: {exc}") from exc
        if not isinstance(request, dict):
            raise invalid_argument("the request body must be a JSON object")
        servable = self.manager.get_servable(name, version, label)
        signature_name = request.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise invalid_argument("'signature_name' key must be a string value.")
        signature_name = signature_name or DEFAULT_SIGNATURE
        inputs, row = request_to_inputs(request, servable.signature_def(signature_name), self.manager.limits)
        # the deadline stops a chunked call between chunks once the client has been answered 504
        future = self._pool.submit(self.manager.predict, servable, signature_name, inputs, (), deadline)
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


class _BodyError(Exception):
    """A request whose body cannot be read: answered with `status` and the connection closed."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def start_rest_server(api: RestApi, host: str, port: int) -> ThreadingHTTPServer:
    """Serves `api` on `host:port` from a daemon thread; returns the server (call `.shutdown()` to stop).

    Client mistakes in the HTTP layer get a JSON error too: a bad `Content-Length` 400, a body past
    `--rest_api_max_body_bytes` 413 (not read), a body not sent within `--rest_api_read_timeout_in_ms` 408.
    """
    limits = api.manager.limits or Limits()
    read_timeout = limits.rest_read_timeout_ms / 1000 if limits.rest_read_timeout_ms > 0 else None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # TCP_NODELAY: headers and body go out in two writes; with Nagle's algorithm the body waits for the
        # client's delayed ACK of the headers, 40 ms per keep-alive request (measured: 54 ms -> 3 ms a request)
        disable_nagle_algorithm = True
        timeout = read_timeout  # socket timeout while reading request lines and headers (and idle keep-alive)

        def version_string(self) -> str:
            return SERVER_HEADER

        def _send_json(self, status: int, payload: dict, close: bool = False) -> None:
            # one place where a finished request's HTTP status is known (hook per-request metrics here)
            try:
                data = json.dumps(payload).encode("utf-8")
            except (TypeError, ValueError):  # an output JSON cannot carry (e.g. complex numbers)
                error = internal_error("REST API")
                _log.exception("REST %s: answer not JSON-serialisable (reference %s)", self.path, error.reference)
                status, data = 500, json.dumps({"error": error.message}).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def send_error(self, code, message=None, explain=None):  # http.server's own errors, as JSON
            try:
                phrase = HTTPStatus(code).phrase
            except ValueError:
                phrase = "Error"
            self._send_json(code, {"error": message or phrase}, close=True)

        def _read_body(self) -> bytes:
            # hand-written: http.server reads bodies itself with no size cap, no strict Content-Length and a
            # per-recv (not per-body) timeout
            if self.headers.get("Transfer-Encoding"):
                raise _BodyError(411, "chunked request bodies are not supported; send Content-Length")
            raw = self.headers.get("Content-Length")
            if raw is None:
                return b""
            raw = raw.strip()
            if not (raw.isascii() and raw.isdigit()):
                raise _BodyError(400, "Invalid Content-Length header")
            length = int(raw)
            if limits.rest_max_body_bytes and length > limits.rest_max_body_bytes:
                raise _BodyError(413, f"request body of {length} bytes is larger than --rest_api_max_body_bytes")
            until = time.monotonic() + read_timeout if read_timeout else None
            chunks, got = [], 0
            try:
                while got < length:
                    if until is not None:
                        left = until - time.monotonic()
                        if left <= 0:
                            raise TimeoutError
                        self.connection.settimeout(left)
                    piece = self.rfile.read1(min(length - got, 1 << 20))
                    if not piece:
                        raise _BodyError(400, f"request body ended after {got} of {length} bytes")
                    chunks.append(piece)
                    got += len(piece)
            except TimeoutError:
                raise _BodyError(408, f"request body not received in time ({got} of {length} bytes)") from None
            finally:
                self.connection.settimeout(read_timeout)
            return b"".join(chunks)

        def _answer(self, method: str) -> None:
            if api.extras is not None and api.extras.intercept(self, method):  # --- ops hooks
                return
            try:
                body = self._read_body()
            except _BodyError as exc:
                _log.warning("REST %s %s -> %d: %s", method, self.path, exc.status, exc.message)
                self._send_json(exc.status, {"error": exc.message}, close=True)
                return
            status, payload = api.handle(method, self.path, body)
            self._send_json(status, payload)

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

    def handle_error(request, client_address):  # e.g. a client that hung up mid-answer: one log line, no traceback
        _log.info("REST connection from %s failed: %r", client_address[0], sys.exc_info()[1])

    server.handle_error = handle_error
    threading.Thread(target=server.serve_forever, name="rest", daemon=True).start()
    return server
