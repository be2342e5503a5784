"""The server's Prometheus metrics, under TF Serving's names (its exporter turns `/` into `:`).

`tensorflow_model_server` names its counters without Prometheus' `_total` suffix
(`:tensorflow:serving:request_count{model_name="m",status="OK"} 3`), which `prometheus_client.Counter` always
adds; so counters are kept and written out here (a few lines of text format), while histograms are
`prometheus_client.Histogram`s with TF Serving's buckets (microseconds, 10 * 1.8^i, 33 buckets). Everything
lives in one `CollectorRegistry` per server (`Metrics()`), so tests can run several servers in one process.

Example:

>>> m = Metrics()
>>> m.count_request("sst2", "OK")
>>> m.observe_request_latency("sst2", "predict", "grpc", 0.0125)
>>> m.observe_batch_size("sst2", 12)
>>> text = m.exposition().decode()
>>> ':tensorflow:serving:request_count{model_name="sst2",status="OK"} 1.0' in text
True
>>> ':tensorflow:serving:batching_session:processed_batch_size_count{model_name="sst2"} 1.0' in text
True
"""

from __future__ import annotations

import threading
from collections import defaultdict

from prometheus_client import CollectorRegistry, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = ":tensorflow:serving:"
# TF Serving's request/runtime latency buckets: Buckets::Exponential(10, 1.8, 33), in microseconds.
LATENCY_BUCKETS_US = tuple(10 * 1.8**i for i in range(33))
# Batch sizes: powers of two up to 2^14, like TF Serving's example-count sampler.
BATCH_SIZE_BUCKETS = tuple(float(2**i) for i in range(15))


class _Counters:
    """Counters exposed without the `_total` suffix (TF Serving's exposition)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str, tuple], float] = defaultdict(float)  # (name, doc, labels) -> value

    def inc(self, name: str, doc: str, labels: dict[str, str], amount: float = 1.0) -> None:
        with self._lock:
            self._values[(name, doc, tuple(sorted(labels.items())))] += amount

    def exposition(self) -> str:
        """Prometheus text for the counters (`# TYPE <name> counter`, samples without `_total`)."""
        with self._lock:
            items = sorted(self._values.items())
        lines, seen = [], set()
        for (name, doc, labels), value in items:
            if name not in seen:
                seen.add(name)
                lines += [f"# HELP {name} {doc}", f"# TYPE {name} counter"]
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{name}{{{text}}} {float(value)!r}")
        return "".join(line + "\n" for line in lines)


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """One server's metrics; `exposition()` is the body of the Prometheus scrape path."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        self._counters = _Counters()
        self.request_latency = Histogram(
            PREFIX + "request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ["model_name", "API", "entrypoint"],
            buckets=LATENCY_BUCKETS_US,
            registry=self.registry,
        )
        self.runtime_latency = Histogram(
            PREFIX + "runtime_latency",
            "Distribution of wall time (in microseconds) for Tensorflow runtime.",
            ["model_name", "API", "runtime"],
            buckets=LATENCY_BUCKETS_US,
            registry=self.registry,
        )
        self.processed_batch_size = Histogram(
            PREFIX + "batching_session:processed_batch_size",
            "Tracks the batch size distribution on processing.",
            ["model_name"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.queuing_latency = Histogram(
            PREFIX + "batching_session:queuing_latency",
            "Distribution of wall time spent (in microseconds) in queuing",
            ["model_name"],
            buckets=LATENCY_BUCKETS_US,
            registry=self.registry,
        )
        self.model_warmup_latency = Histogram(
            PREFIX + "model_warmup_latency",
            "Distribution of wall time (in microseconds) for warming up the model.",
            ["model_path", "status"],
            buckets=LATENCY_BUCKETS_US,
            registry=self.registry,
        )

    def count_request(self, model_name: str, status: str) -> None:
        """One finished Predict/metadata request; `status` is the gRPC code name ("OK", "INVALID_ARGUMENT")."""
        self._counters.inc(
            PREFIX + "request_count", "The total number of requests.", {"model_name": model_name, "status": status}
        )

    def count(self, name: str, doc: str, labels: dict[str, str], amount: float = 1.0) -> None:
        """Any other counter, named after the prefix (e.g. `count("request_log_count", ...)`)."""
        self._counters.inc(PREFIX + name, doc, labels, amount)

    def observe_request_latency(self, model_name: str, api: str, entrypoint: str, seconds: float) -> None:
        """Wall time of one request (`api` e.g. "predict", `entrypoint` "grpc" or "rest")."""
        self.request_latency.labels(model_name, api, entrypoint).observe(seconds * 1e6)

    def observe_runtime_latency(self, model_name: str, api: str, seconds: float) -> None:
        """Wall time of one signature call."""
        self.runtime_latency.labels(model_name, api, "TF1").observe(seconds * 1e6)

    def observe_batch_size(self, model_name: str, size: int) -> None:
        """Rows in one merged batch the batcher ran."""
        self.processed_batch_size.labels(model_name).observe(size)

    def observe_queuing_latency(self, model_name: str, seconds: float) -> None:
        """Time a request waited in the batching queue."""
        self.queuing_latency.labels(model_name).observe(seconds * 1e6)

    def observe_warmup(self, model_path: str, status: str, seconds: float) -> None:
        """Wall time of one version's warmup."""
        self.model_warmup_latency.labels(model_path, status).observe(seconds * 1e6)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (serve with `CONTENT_TYPE`)."""
        return self._counters.exposition().encode("utf-8") + generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "Metrics"]
