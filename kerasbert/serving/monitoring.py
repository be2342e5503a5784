"""Request metrics for the gRPC and REST front ends, with TF Serving's label values.

TF Serving (`prediction_service_impl.cc`, `http_server.cc`, `servables/tensorflow/util.cc`) records

* `:tensorflow:serving:request_count{model_name, status}` for every request, `status` the canonical code name
  (`OK`, `INVALID_ARGUMENT`, `NOT_FOUND`, ...);
* `:tensorflow:serving:request_latency{model_name, API, entrypoint}` for successful requests only, with
  `API="Predict"` / `entrypoint="GRPC"` over gRPC and `API="predict"` (the REST verb; empty for the GET
  status and metadata routes) / `entrypoint="REST"` over REST;
* `:tensorflow:serving:runtime_latency{model_name, API="Predict", runtime="TF1"}` around the signature call
  (with batching this includes the wait for the merged batch, as TF Serving's BatchingSession::Run does).

Unlike TF Serving, a model name that is not configured is recorded as `model_name=""`, so a client sending
random names cannot grow the metric set without bound.

`--monitoring_config_file` is read by `load_monitoring_config`.

Example:

>>> from kerasbert.serving.metrics import Metrics
>>> m = Metrics()
>>> record(m, {"sst2"}, "sst2", "Predict", "GRPC", "OK", 0.002)
>>> record(m, {"sst2"}, "typo", "Predict", "GRPC", "NOT_FOUND", 0.001)
>>> text = m.exposition().decode()
>>> ':tensorflow:serving:request_count{model_name="",status="NOT_FOUND"} 1.0' in text
True
>>> 'request_latency_count{API="Predict",entrypoint="GRPC",model_name="sst2"} 1.0' in text
True
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Container

from kerasbert.serving.protos import MonitoringConfig, read_text_file

_log = logging.getLogger("kerasbert.serve")
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath
# TF Serving's REST routes (http_rest_api_util.cc), case-insensitive: model name and verb for the labels.
_REST_ROUTE = re.compile(r"(?i)^/v1/models/([^/:]+)(?:/versions/\d+|/labels/[^/:]+)?(?::(classify|regress|predict))?")
# gRPC methods counted (HandleReloadConfigRequest is an admin call, not a model request).
COUNTED_RPCS = frozenset({"Predict", "GetModelMetadata", "GetModelStatus", "Classify", "Regress", "MultiInference"})


def load_monitoring_config(path: str) -> str | None:
    """The Prometheus path a `--monitoring_config_file` asks for, or None when it does not enable Prometheus.

    Raises:
        ValueError: the file cannot be read or parsed, or the path is not absolute (one line, for the flag error).

    Example:

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".config", delete=False) as f:
    ...     _ = f.write("prometheus_config { enable: true }")
    >>> load_monitoring_config(f.name)
    '/monitoring/prometheus/metrics'
    """
    from google.protobuf import text_format

    try:
        config = read_text_file(path, MonitoringConfig)
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror})") from None
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise ValueError(f"is not a text-format MonitoringConfig: {exc}") from None
    if not config.prometheus_config.enable:
        return None
    metrics_path = config.prometheus_config.path or DEFAULT_PROMETHEUS_PATH
    if not metrics_path.startswith("/") or "?" in metrics_path or any(c.isspace() for c in metrics_path):
        raise ValueError(f"prometheus_config.path must be an absolute URL path like {DEFAULT_PROMETHEUS_PATH}")
    return metrics_path


def record(
    metrics, served: Container[str], model_name: str, api: str, entrypoint: str, status: str, seconds: float
) -> None:
    """Counts one finished request and, when it succeeded, its latency (no-op when `metrics` is None)."""
    if metrics is None:
        return
    name = model_name if model_name in served else ""
    metrics.count_request(name, status)
    if status == "OK":
        metrics.observe_request_latency(name, api, entrypoint, seconds)


def _served(manager, model_name: str) -> Container[str]:
    """`(model_name,)` if the manager serves it, else `()`; runs per request, so a dict-view lookup."""
    try:
        return (model_name,) if model_name in manager.served_names() else ()
    except Exception:  # never let metrics break a request
        return ()


def record_grpc(manager, method_name: str, request, status: str, seconds: float) -> None:
    """Called by `grpc_service._rpc` after each RPC."""
    metrics = getattr(manager, "metrics", None)
    if metrics is None or method_name not in COUNTED_RPCS:
        return
    spec = getattr(request, "model_spec", None)
    name = spec.name if spec is not None else ""
    record(metrics, _served(manager, name), name, method_name, "GRPC", status, seconds)


def counted_rest_route(route):
    """Decorates `RestApi._route(self, method, path, body)`: counts each model API request by its outcome.

    `self.manager.metrics` (a `Metrics` or None) receives the figures; exceptions pass through unchanged.

    Example:

    >>> class Api:                                             # doctest: +SKIP
    ...     @counted_rest_route
    ...     def _route(self, method, path, body): ...
    """

    @functools.wraps(route)
    def wrapper(self, method, path, body):
        metrics = getattr(getattr(self, "manager", None), "metrics", None)
        if metrics is None:
            return route(self, method, path, body)
        start = time.monotonic()
        match = _REST_ROUTE.match(path)
        model_name = match.group(1) if match else ""
        api = (match.group(2) or "").lower() if match else ""
        status = "OK"
        try:
            return route(self, method, path, body)
        except Exception as exc:
            code = getattr(exc, "code", None)
            status = getattr(code, "name", None) or "UNKNOWN"
            raise
        finally:
            seconds = time.monotonic() - start
            record(metrics, _served(self.manager, model_name), model_name, api, "REST", status, seconds)

    return wrapper


def instrument_manager(manager) -> None:
    """Times every `manager.predict` call into `:tensorflow:serving:runtime_latency` (wraps the bound method).

    Done here, not inside `ModelManager`, so the request path of the manager stays untouched; a no-op when
    `manager.metrics` is None.

    Example:

    >>> manager = ModelManager(metrics=Metrics())          # doctest: +SKIP
    >>> instrument_manager(manager)                        # doctest: +SKIP
    """
    metrics = getattr(manager, "metrics", None)
    if metrics is None or getattr(manager.predict, "_kerasbert_timed", False):
        return
    predict = manager.predict

    @functools.wraps(predict)
    def timed(servable, *args, **kwargs):
        start = time.monotonic()
        outputs = predict(servable, *args, **kwargs)  # failed calls are not timed (TF Serving neither)
        metrics.observe_runtime_latency(servable.name, "Predict", time.monotonic() - start)
        return outputs

    timed._kerasbert_timed = True
    manager.predict = timed


__all__ = [
    "DEFAULT_PROMETHEUS_PATH",
    "counted_rest_route",
    "instrument_manager",
    "load_monitoring_config",
    "record",
    "record_grpc",
]
