"""Loads, polls and unloads model versions per a TF Serving `ModelServerConfig`."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from kerasbert.serving.config import aspired_versions, list_versions, single_model_config, validate_config
from kerasbert.serving.errors import ServingError, not_found
from kerasbert.serving.servable import Servable

_log = logging.getLogger("kerasbert.serve")
State = get_model_status_pb2.ModelVersionStatus.State
MAX_LOAD_ATTEMPTS = 5  # TF Serving's --max_num_load_retries default (+1 first try is close enough)


@dataclass
class _Model:
    config: model_server_config_pb2.ModelConfig
    loaded: dict[int, Servable] = field(default_factory=dict)
    # version -> (State, grpc.StatusCode, message); kept after unload so status can report END
    status: dict[int, tuple[int, grpc.StatusCode, str]] = field(default_factory=dict)
    failures: dict[int, int] = field(default_factory=dict)
    warned_empty: bool = False


class ModelManager:
    """Serves the models of a `ModelServerConfig`, following new version folders on disk.

    Thread-safe: request threads call `get_servable`/`predict`/`model_status` while a poll thread (or a
    `reload_config` call) loads and unloads versions. New versions are loaded before old ones are
    unloaded, and if no wanted version can be loaded the old ones stay (availability preserving).

    Args:
        poll_wait_seconds: seconds between file system polls; 0 or less = poll only when the config is set.
        batching: a `kerasbert.serving.batching.BatchingOptions` (`--enable_batching`): Predict calls are then
            merged across requests by a `Batcher` (`self.batcher`); None = each call runs on its own.
        metrics: a `kerasbert.serving.metrics.Metrics` (or None), for the batcher's batch sizes and queuing.

    Example:

    >>> manager = ModelManager(poll_wait_seconds=1)                              # doctest: +SKIP
    >>> manager.reload_config(single_model_config("sst2", "exports/sst2"))       # doctest: +SKIP
    >>> manager.get_servable("sst2").version                                      # doctest: +SKIP
    1
    """

    def __init__(self, poll_wait_seconds: float = 1.0, *, batching=None, metrics=None):
        self.poll_wait_seconds = poll_wait_seconds
        self._models: dict[str, _Model] = {}
        self._lock = threading.Lock()  # guards _models and each _Model's dicts
        self._sync_lock = threading.RLock()  # one config change / poll at a time; loads run outside _lock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # --- batching (serve-batching): one Batcher shared by every model, as TF Serving shares its batch threads
        self.metrics = metrics
        self.batching = batching
        self.batcher = None
        if batching is not None:
            from kerasbert.serving.batching import Batcher

            self.batcher = Batcher(batching, metrics=metrics)

    # ----------------------------------------------------------------------------------------- config
    def reload_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """Swaps the served models for `config`'s and loads their versions before returning.

        Models missing from `config` are unloaded; models whose base path or policy changed are re-synced.
        """
        with self._sync_lock:
            models = validate_config(config)
            with self._lock:
                old = self._models
                new = {}
                for model_config in models:
                    cfg = model_server_config_pb2.ModelConfig()
                    cfg.CopyFrom(model_config)
                    cfg.base_path = os.path.abspath(cfg.base_path)
                    prev = old.get(cfg.name)
                    if prev is not None and prev.config.base_path == cfg.base_path:
                        prev.config = cfg
                        new[cfg.name] = prev
                    else:
                        new[cfg.name] = _Model(cfg)
                removed = [m for name, m in old.items() if new.get(name) is not m]
                self._models = new
            for model in removed:
                _log.info("Unloading all versions of model '%s' (no longer in the config)", model.config.name)
                with self._lock:
                    model.loaded.clear()
            _log.info("Model config set: %s", ", ".join(f"{m.name} <- {m.base_path}" for m in models) or "(none)")
            self.poll_once()

    def model_names(self) -> list[str]:
        """Names of the configured models."""
        with self._lock:
            return sorted(self._models)

    # ---------------------------------------------------------------------------------------- polling
    def poll_once(self) -> None:
        """Loads new wanted versions and unloads unwanted ones, for every configured model."""
        with self._sync_lock:
            with self._lock:
                models = list(self._models.values())
            for model in models:
                try:
                    self._sync_model(model)
                except Exception:  # never let one model stop the poller
                    _log.exception("Polling model '%s' failed", model.config.name)

    def _set_status(self, model: _Model, version: int, state: int, code=grpc.StatusCode.OK, msg: str = "") -> None:
        with self._lock:
            model.status[version] = (state, code, msg)

    def _sync_model(self, model: _Model) -> None:
        cfg = model.config
        available = list_versions(cfg.base_path)
        if not available:
            if not model.warned_empty:
                _log.warning(
                    "No versions of servable %s found under base path %s (expecting <base path>/<integer "
                    "version>/saved_model.pb); waiting for versions to appear",
                    cfg.name,
                    cfg.base_path,
                )
                model.warned_empty = True
        else:
            model.warned_empty = False
        aspired = aspired_versions(cfg, available)
        for version in sorted(aspired, reverse=True):
            if version in model.loaded or model.failures.get(version, 0) >= MAX_LOAD_ATTEMPTS:
                continue
            path = os.path.join(cfg.base_path, str(version))
            self._set_status(model, version, State.LOADING)
            _log.info("Loading servable version {name: %s version: %d} from %s", cfg.name, version, path)
            try:
                servable = Servable.load(cfg.name, version, path)
            except Exception as exc:
                model.failures[version] = model.failures.get(version, 0) + 1
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                _log.error(
                    "Loading servable version {name: %s version: %d} failed (attempt %d/%d): %s",
                    cfg.name,
                    version,
                    model.failures[version],
                    MAX_LOAD_ATTEMPTS,
                    first_line,
                )
                self._set_status(model, version, State.END, grpc.StatusCode.UNKNOWN, first_line)
                continue
            with self._lock:
                model.loaded[version] = servable
            self._set_status(model, version, State.AVAILABLE)
            _log.info("Successfully loaded servable version {name: %s version: %d}", cfg.name, version)
        with self._lock:
            serving_aspired = any(v in model.loaded for v in aspired)
            stale = [v for v in model.loaded if v not in aspired and (serving_aspired or v not in available)]
        for version in stale:
            with self._lock:
                model.loaded.pop(version, None)
            self._set_status(model, version, State.END)
            _log.info("Unloaded servable version {name: %s version: %d}", cfg.name, version)
        # forget failures of versions that disappeared, so a re-export under the same number is retried
        for version in [v for v in model.failures if v not in available]:
            model.failures.pop(version)

    def start_polling(self) -> None:
        """Starts the background poll thread (no-op when `poll_wait_seconds <= 0`)."""
        if self.poll_wait_seconds <= 0 or self._thread is not None:
            return

        def loop():
            while not self._stop.wait(self.poll_wait_seconds):
                self.poll_once()

        self._thread = threading.Thread(target=loop, name="fs-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops polling and drops all loaded versions."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            for model in self._models.values():
                model.loaded.clear()

    # --------------------------------------------------------------------------------------- requests
    def _model(self, name: str) -> _Model:
        model = self._models.get(name)
        if model is None:
            raise not_found(
                f"Servable not found for request: model '{name}' is not served (served models: {sorted(self._models)})"
            )
        return model

    def get_servable(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The loaded version asked for: a number, a label from `version_labels`, or else the newest.

        Raises:
            ServingError: NOT_FOUND for an unknown model, version or label, or a version not loaded.
        """
        with self._lock:
            model = self._model(name)
            if label:
                labels = dict(model.config.version_labels)
                if label not in labels:
                    raise not_found(
                        f"Unrecognized servable version label: '{label}' for model '{name}' (labels: {sorted(labels)})"
                    )
                version = labels[label]
            if version is None:
                if not model.loaded:
                    raise not_found(f"Servable not found for request: Latest({name}); no version is loaded")
                return model.loaded[max(model.loaded)]
            servable = model.loaded.get(version)
            if servable is None:
                raise not_found(
                    f"Servable not found for request: Specific({name}, {version}); "
                    f"loaded versions: {sorted(model.loaded)}"
                )
            return servable

    def predict(
        self, servable: Servable, signature_name: str, inputs: Mapping, output_filter=(), deadline=None
    ) -> dict:
        """Runs `servable.predict`, through the request batcher when batching is on.

        `deadline` is an absolute `time.monotonic()` value (or None): a request still queued for a batch then
        is answered DEADLINE_EXCEEDED and not run.
        """
        if self.batcher is not None:
            return self.batcher.predict(servable, signature_name, inputs, output_filter, deadline)
        return servable.predict(signature_name, inputs, output_filter)

    def model_status(self, name: str, version: int | None = None, label: str | None = None):
        """`[(version, State, grpc.StatusCode, message)]` for a model, like TF Serving's GetModelStatus.

        Without `version`/`label` every version ever seen is listed (END for unloaded or failed ones).

        Raises:
            ServingError: NOT_FOUND for an unknown model/version/label.
        """
        if label:
            version = self.get_servable(name, label=label).version
        with self._lock:
            model = self._model(name)
            status = dict(model.status)
        if version is not None:
            if version not in status:
                raise not_found(f"Could not find version {version} of model '{name}'")
            return [(version, *status[version])]
        if not status:
            raise not_found(f"Could not find any versions of model '{name}'")
        return [(v, *status[v]) for v in sorted(status)]


__all__ = [
    "ModelManager",
    "ServingError",
    "aspired_versions",
    "list_versions",
    "single_model_config",
    "validate_config",
]
