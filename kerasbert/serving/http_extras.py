"""REST additions outside the model API: Host checks, CORS, the Prometheus path and the health paths.

`rest.start_rest_server` calls two hooks of `RestApi.extras` (a `RestExtras`, set by `server.main`):
`intercept(handler, method)` before routing (answers and returns True for what it handles) and
`add_headers(handler)` from `end_headers` (CORS headers on every answer).

* **Host check** (when the REST API is bound to a loopback address): a request whose `Host` header is not
  `localhost`, a `127.x.x.x` address or `[::1]` (any port) gets 403 and a JSON error, so a web page that
  rebinds its own DNS name to 127.0.0.1 cannot read results. Requests without `Host` (HTTP/1.0 tools) pass.
* **CORS** (`--rest_api_enable_cors_support`): TF Serving's headers (http_rest_api_util.cc)
  `Access-Control-Allow-Origin: *`, `Access-Control-Allow-Methods: POST, GET`,
  `Access-Control-Allow-Headers: Content-Type` on every answer. `OPTIONS` preflights are answered as TF
  Serving's http_server.cc does, with or without the flag: 200 and an empty body when `Origin` starts with
  `http://` or `https://`, else 400 `Origin header is missing in CORS preflight`.
* **Prometheus** (`--monitoring_config_file`): `GET <path>` answers `Metrics.exposition()`.
* **Health**: `GET /v1/health/ready` (200/503, see `health.ready_response`) and `GET /v1/health/live` (200).

Example:

>>> host_allowed("localhost:8501"), host_allowed("[::1]"), host_allowed("127.0.0.1"), host_allowed("evil.com:8501")
(True, True, True, False)
>>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0"), is_loopback("localhost")
(True, False, True)
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re

from kerasbert.serving import health
from kerasbert.serving.metrics import CONTENT_TYPE

_log = logging.getLogger("kerasbert.serve")
CORS_HEADERS = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "POST, GET"),
    ("Access-Control-Allow-Headers", "Content-Type"),
)
_HOST = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[^:\[\]]+))(?::\d{1,5})?$")


def is_loopback(address: str) -> bool:
    """True for `localhost` and loopback IP addresses (the bind address of `--host`)."""
    address = address.strip().strip("[]").rstrip(".").lower()
    if address == "localhost" or address.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def host_allowed(host: str | None) -> bool:
    """Whether a `Host` header names this machine's loopback interface (with or without a port)."""
    if host is None:
        return True
    match = _HOST.match(host.strip())
    if not match:
        return False
    return is_loopback(match["v6"] or match["name"])


class RestExtras:
    """The REST server's hooks (see the module docstring).

    Args:
        manager: the `ModelManager` (readiness).
        metrics: a `kerasbert.serving.metrics.Metrics`, or None.
        metrics_path: where to serve Prometheus text (None = nowhere).
        cors: add TF Serving's CORS headers (`--rest_api_enable_cors_support`).
        check_host: reject non-loopback `Host` headers (set when `--host` is a loopback address).

    Example:

    >>> api.extras = RestExtras(manager, metrics, "/monitoring/prometheus/metrics",
    ...                         cors=True, check_host=is_loopback("127.0.0.1"))   # doctest: +SKIP
    """

    def __init__(
        self, manager, metrics=None, metrics_path: str | None = None, cors: bool = False, check_host: bool = False
    ):
        self.manager = manager
        self.metrics = metrics
        self.metrics_path = metrics_path
        self.cors = cors
        self.check_host = check_host

    def add_headers(self, handler) -> None:
        """Adds the CORS headers (when enabled) to the response `handler` is writing."""
        if self.cors:
            for name, value in CORS_HEADERS:
                handler.send_header(name, value)

    def intercept(self, handler, method: str) -> bool:
        """Answers Host-check failures, OPTIONS, the metrics path and the health paths; True if it answered."""
        if self.check_host and not host_allowed(handler.headers.get("Host")):
            _log.warning("REST %s rejected: Host header %r is not a loopback name", method, handler.headers.get("Host"))
            self._send_json(
                handler,
                403,
                {
                    "error": "Host header not allowed: this server only answers "
                    "requests for localhost, 127.0.0.1 or [::1]"
                },
                close=True,
            )
            return True
        path = handler.path.split("?", 1)[0]
        if method == "OPTIONS":
            origin = handler.headers.get("Origin") or ""
            if re.search(r"https?://", origin):
                self._send(handler, 200, b"", "application/json")
            else:
                self._send_json(handler, 400, {"error": "Origin header is missing in CORS preflight"})
            return True
        if method != "GET":
            return False
        if self.metrics_path is not None and path == self.metrics_path:
            body = self.metrics.exposition() if self.metrics is not None else b""
            self._send(handler, 200, body, CONTENT_TYPE)
            return True
        if path == health.READY_PATH:
            status, body = health.ready_response(self.manager)
            self._send_json(handler, status, body)
            return True
        if path == health.LIVE_PATH:
            self._send_json(handler, 200, {"status": "ALIVE"})
            return True
        return False

    def _send_json(self, handler, status: int, payload: dict, close: bool = False) -> None:
        self._send(handler, status, json.dumps(payload).encode("utf-8"), "application/json", close)

    @staticmethod
    def _send(handler, status: int, body: bytes, content_type: str, close: bool = False) -> None:
        # A request answered here may still have an unread body: close the connection instead of reading it,
        # unless there is none to read.
        length = (handler.headers.get("Content-Length") or "0").strip()
        if close or length != "0" or handler.headers.get("Transfer-Encoding"):
            handler.close_connection = True
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        if handler.close_connection:
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body)


__all__ = ["CORS_HEADERS", "RestExtras", "host_allowed", "is_loopback"]
