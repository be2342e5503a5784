"""Readiness for probes: the standard `grpc.health.v1.Health` service and the REST health paths.

The server is ready (SERVING) when every configured model has a version in state AVAILABLE; with no model
configured, or while any model is still loading or has no loadable version, it is NOT_SERVING. The gRPC
service (from `grpcio-health-checking`) answers for the overall service `""` and for each model name; TF
Serving's own names `PredictionService` and `ModelService` are SERVING once the server runs, as in TF
Serving's server.cc. A small watcher thread re-reads `ModelManager.model_status` every `interval` seconds, so
the manager needs no callbacks.

Example:

>>> from grpc_health.v1 import health_pb2
>>> class Manager:
...     def model_names(self): return ["a", "b"]
...     def model_status(self, name, version=None, label=None):
...         return [(1, AVAILABLE, None, "")] if name == "a" else [(3, 10, None, "")]   # b: LOADING
>>> readiness(Manager())
(False, {'a': True, 'b': False})
>>> watcher = HealthWatcher(Manager(), interval=60)
>>> watcher.update()
False
>>> answer = watcher.servicer.Check(health_pb2.HealthCheckRequest(service="a"), None)
>>> answer.status == health_pb2.HealthCheckResponse.SERVING
True
"""

from __future__ import annotations

import logging
import threading

from grpc_health.v1 import health, health_pb2, health_pb2_grpc

_log = logging.getLogger("kerasbert.serve")
AVAILABLE = 30  # tensorflow.serving.ModelVersionStatus.State.AVAILABLE
READY_PATH = "/v1/health/ready"
LIVE_PATH = "/v1/health/live"
ALWAYS_SERVING = ("PredictionService", "ModelService")  # TF Serving sets these once its gRPC server runs


def readiness(manager) -> tuple[bool, dict[str, bool]]:
    """`(ready, {model name: has an AVAILABLE version})` for the manager's configured models."""
    models = {}
    for name in manager.model_names():
        try:
            states = [entry[1] for entry in manager.model_status(name)]
        except Exception:  # NOT_FOUND: no version seen yet
            states = []
        models[name] = AVAILABLE in states
    return bool(models) and all(models.values()), models


def ready_response(manager) -> tuple[int, dict]:
    """The REST readiness answer: `(200 or 503, {"status": ..., "models": n, "ready_models": k})`.

    Model names are not listed: the probe paths need no credentials.
    """
    ready, models = readiness(manager)
    body = {
        "status": "SERVING" if ready else "NOT_SERVING",
        "models": len(models),
        "ready_models": sum(models.values()),
    }
    return (200 if ready else 503), body


class HealthWatcher:
    """Keeps a `grpc_health.v1.health.HealthServicer` in step with the models' availability.

    Args:
        manager: the `ModelManager` (only `model_names` and `model_status` are used).
        interval: seconds between checks.

    Example:

    >>> watcher = HealthWatcher(manager)                              # doctest: +SKIP
    >>> watcher.add_to_server(grpc_server); watcher.start()          # doctest: +SKIP
    >>> watcher.stop()                                                # doctest: +SKIP
    """

    def __init__(self, manager, interval: float = 0.5):
        self.manager = manager
        self.interval = interval
        self.servicer = health.HealthServicer()
        self._status: dict[str, int] = {}  # service name -> the status last set
        self._ready: bool | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for name in ALWAYS_SERVING:
            self.servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        self._status[""] = health_pb2.HealthCheckResponse.NOT_SERVING

    def add_to_server(self, server) -> None:
        """Registers `grpc.health.v1.Health` on a `grpc.Server` (before `server.start()`)."""
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)

    def update(self) -> bool:
        """Sets every status from the manager now; returns the overall readiness."""
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        ready, models = readiness(self.manager)
        wanted = {name: serving if available else not_serving for name, available in models.items()}
        wanted.update({name: not_serving for name in set(self._status) - set(models) - {""}})  # removed models
        wanted[""] = serving if ready else not_serving
        for name, status in wanted.items():
            if self._status.get(name) != status:  # Watch streams get a message only on a change
                self.servicer.set(name, status)
                self._status[name] = status
        if ready != self._ready:
            _log.info(
                "Health: %s (%d/%d models available)",
                "SERVING" if ready else "NOT_SERVING",
                sum(models.values()),
                len(models),
            )
            self._ready = ready
        return ready

    def start(self) -> None:
        """Checks at once, then every `interval` seconds from a daemon thread."""
        self.update()

        def loop():
            while not self._stop.wait(self.interval):
                try:
                    self.update()
                except Exception:  # keep watching
                    _log.exception("Health check update failed")

        self._thread = threading.Thread(target=loop, name="health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops the thread and answers NOT_SERVING for everything (graceful shutdown)."""
        self._stop.set()
        self.servicer.enter_graceful_shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)


__all__ = ["LIVE_PATH", "READY_PATH", "HealthWatcher", "readiness", "ready_response"]
