"""Loads, polls and unloads model versions per a TF Serving `ModelServerConfig`."""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import grpc
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from kerasbert.serving.config import (
    aspired_versions,
    check_under_roots,
    default_roots,
    list_versions,
    single_model_config,
    validate_config,
)
from kerasbert.serving.errors import ServingError, not_found, public_message, status_code_from_int
from kerasbert.serving.limits import Limits
from kerasbert.serving.servable import Servable

_log = logging.getLogger("kerasbert.serve")
State = get_model_status_pb2.ModelVersionStatus.State
MAX_NUM_LOAD_RETRIES = 5  # TF Serving's --max_num_load_retries default
LOAD_RETRY_INTERVAL_MICROS = 60_000_000  # TF Serving's --load_retry_interval_micros default (1 minute)
_FINGERPRINT_MAX_FILES = 10_000


@dataclass
class _Failure:
    """Load failures of one version: retried `max_num_load_retries` times, then given up until it changes."""

    attempts: int = 0
    next_try: float = 0.0  # time.monotonic() of the next allowed attempt
    gave_up: bool = False
    fingerprint: tuple = ()  # the folder's files (name, size, mtime) at the last failed attempt
    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN  # of the last attempt
    message: str = ""  # of the last attempt, without paths


@dataclass
class _Model:
    config: model_server_config_pb2.ModelConfig
    loaded: dict[int, Servable] = field(default_factory=dict)
    # version -> (State, grpc.StatusCode, message); kept after unload so status can report END
    status: dict[int, tuple[int, grpc.StatusCode, str]] = field(default_factory=dict)
    failures: dict[int, _Failure] = field(default_factory=dict)
    available: list[int] | None = None  # versions on disk at the last scan
    warned_empty: bool = False


def _fingerprint(path: str) -> tuple:
    """`(relative name, size, mtime_ns)` of the files under `path`: changes when a copy makes progress."""
    entries = []
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with contextlib.suppress(OSError):
                st = os.stat(full)
                entries.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
        if len(entries) > _FINGERPRINT_MAX_FILES:
            break
    return tuple(sorted(entries))


def load_error_message(exc: BaseException, version_dir: str) -> str:
    """The first line of a load error, without absolute paths (for status replies; the log keeps them).

    Paths inside the version folder become relative to it; other absolute paths are shortened by
    `errors.public_message`.

    Example:

    >>> load_error_message(OSError("Failed to find any matching files for /m/1/variables/variables"), "/m/1")
    'Failed to find any matching files for variables/variables'
    >>> load_error_message(ValueError("cannot read /etc/x: no"), "/m/1")
    'cannot read …/x: no'
    """
    text = getattr(exc, "message", None) or str(exc)
    text = (text.strip().splitlines() or [type(exc).__name__])[0].strip() or type(exc).__name__
    for prefix in dict.fromkeys([version_dir, os.path.realpath(version_dir)]):
        text = text.replace(prefix.rstrip(os.sep) + os.sep, "").replace(prefix, "<version folder>")
    return public_message(text)


class _FirstCallGate:
    """Wraps a signature function so that its first call runs alone; later calls pass straight through.

    The first call of a loaded function instantiates and optimises its graph, and concurrent first calls
    each pay for it: 16 at once cost 10.9 s of CPU (max latency 18.7 s) against 0.5 s for one, for a
    2-layer kerasbert export. Warmup takes that first call; for versions without a warmup file the gate
    keeps it to one request while the others wait for it. Attributes are the wrapped function's.
    """

    def __init__(self, fn):
        self._fn = fn
        self._lock = threading.Lock()
        self._warm = False

    def __call__(self, *args, **kwargs):
        if not self._warm:
            with self._lock:
                if not self._warm:
                    out = self._fn(*args, **kwargs)
                    self._warm = True  # only after a successful call
                    return out
        return self._fn(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._fn, name)


class ModelManager:
    """Serves the models of a `ModelServerConfig`, following new version folders on disk.

    Thread-safe: request threads call `get_servable`/`predict`/`model_status` while one low-priority loader
    thread loads, warms up and unloads versions (polls and `reload_config` both run there). A new version
    becomes visible to requests only after it loaded and answered its warmup requests, in one dict
    assignment, so the old version serves until then. If no wanted version can be loaded the old ones stay
    (availability preserving); with the `latest` policy the newest versions that load are served.

    A failed load is retried `max_num_load_retries` times, `load_retry_interval_micros` apart, without
    blocking requests; then the version stays END (with its error) until its folder changes or goes.

    Args:
        poll_wait_seconds: seconds between file system polls; 0 or less = poll only when the config is set.
        batching: a `kerasbert.serving.batching.BatchingOptions` (`--enable_batching`): Predict calls are then
            merged across requests by a `Batcher` (`self.batcher`); None = each call runs on its own.
        max_num_load_retries: retries after a failed load (TF Serving's flag; 0 = one attempt).
        load_retry_interval_micros: wait between retries (negative = none).
        enable_model_warmup: replay `assets.extra/tf_serving_warmup_requests` before AVAILABLE.
        num_request_iterations_for_warmup: times each warmup record is replayed.
        allowed_base_path_roots: folders, besides the parents of trusted configs' base paths, that
            `reload_config(..., trusted=False)` (the ReloadConfig RPC) may take base paths from.
        loader_niceness: `nice` increment of the loader thread (Linux), so loads yield the CPU to requests.
        metrics: the server's `kerasbert.serving.metrics.Metrics` (None = no metrics).
        limits: request caps and the predict chunk size (`kerasbert.serving.limits.Limits`).

    Example:

    >>> manager = ModelManager(poll_wait_seconds=1)                              # doctest: +SKIP
    >>> manager.reload_config(single_model_config("sst2", "exports/sst2"))       # doctest: +SKIP
    >>> manager.get_servable("sst2").version                                      # doctest: +SKIP
    1
    """

    def __init__(
        self,
        poll_wait_seconds: float = 1.0,
        *,
        batching=None,
        # --- versions and warmup (issue 11 defects 5-7, warmup)
        max_num_load_retries: int = MAX_NUM_LOAD_RETRIES,
        load_retry_interval_micros: int = LOAD_RETRY_INTERVAL_MICROS,
        enable_model_warmup: bool = True,
        num_request_iterations_for_warmup: int = 1,
        allowed_base_path_roots: Iterable[str] = (),
        loader_niceness: int = 10,
        metrics=None,
        limits: Limits | None = None,
    ):
        self.poll_wait_seconds = poll_wait_seconds
        self.metrics = metrics  # --- ops: a kerasbert.serving.metrics.Metrics, or None
        self.limits = limits  # request caps and chunk size (kerasbert.serving.limits); None = defaults
        self._models: dict[str, _Model] = {}
        self._lock = threading.Lock()  # guards _models and each _Model's dicts
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # --- batching: one Batcher shared by every model, as TF Serving shares its batch threads
        self.batching = batching
        self.batcher = None
        if batching is not None:
            from kerasbert.serving.batching import Batcher

            self.batcher = Batcher(batching, metrics=metrics)
        # --- versions and warmup
        self.max_num_load_retries = max(0, int(max_num_load_retries))
        self.load_retry_interval = max(0.0, load_retry_interval_micros / 1e6)
        self.enable_model_warmup = enable_model_warmup
        self.num_request_iterations_for_warmup = num_request_iterations_for_warmup
        self.allowed_roots = default_roots(model_server_config_pb2.ModelServerConfig(), allowed_base_path_roots)
        self.loader_niceness = loader_niceness
        self._loader_ident: int | None = None
        # Create TF's runtime (and its compute threads) here, on the caller's thread: threads inherit their
        # creator's nice value, and the TF pools must not inherit the loader thread's lower priority.
        import tensorflow as tf

        tf.reduce_sum(tf.ones([2]))
        # One loader thread does every load/unload (so loads never run on request threads and the RPC
        # thread's priority is untouched); ThreadPoolExecutor gives us its queue and futures.
        self._loader = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="loader", initializer=self._init_loader_thread
        )

    def _init_loader_thread(self) -> None:
        self._loader_ident = threading.get_ident()
        if self.loader_niceness and hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
            try:  # Linux: nice applies per thread; loads then only take CPU that requests leave idle
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.loader_niceness)
            except OSError as exc:
                _log.warning("Could not lower the loader thread's priority: %s", exc)

    def _on_loader(self, fn, *args):
        """Runs `fn(*args)` on the loader thread and returns its result (directly if already there)."""
        if threading.get_ident() == self._loader_ident:
            return fn(*args)
        return self._loader.submit(fn, *args).result()

    # ----------------------------------------------------------------------------------------- config
    def reload_config(self, config: model_server_config_pb2.ModelServerConfig, trusted: bool = True) -> None:
        """Swaps the served models for `config`'s and makes a first load attempt of their versions.

        Models missing from `config` are unloaded; models whose base path or policy changed are re-synced.

        Args:
            config: the new config.
            trusted: False for a ReloadConfig RPC: every base path must be an existing folder under
                `allowed_roots` (else INVALID_ARGUMENT with a path-free message) and error messages never
                contain paths. True (flags, `--model_config_file`): checked, and its base paths' parents
                join `allowed_roots`.

        Raises:
            ServingError: INVALID_ARGUMENT for an invalid or (untrusted) disallowed config; nothing changes.
        """
        if trusted:
            models = validate_config(config)
        else:
            config = check_under_roots(config, self.allowed_roots)
            models = validate_config(config, public=True)
        self._on_loader(self._apply_config, models, trusted)

    def _apply_config(self, models: list, trusted: bool) -> None:
        old = self._models  # only this (loader) thread replaces it
        new, kept = {}, {}
        for model_config in models:
            cfg = model_server_config_pb2.ModelConfig()
            cfg.CopyFrom(model_config)
            cfg.base_path = os.path.abspath(cfg.base_path)
            prev = old.get(cfg.name)
            if prev is not None and os.path.realpath(prev.config.base_path) == os.path.realpath(cfg.base_path):
                new[cfg.name], kept[cfg.name] = prev, cfg
            else:
                new[cfg.name] = _Model(cfg)
        # a moved model (same name, other base path) loads before it is published, so the old base path
        # serves until the new one is up; brand-new names are published at once (status shows LOADING)
        for name, model in new.items():
            if name not in kept and name in old:
                try:
                    self._sync_model(model)
                except Exception:
                    _log.exception("Loading model '%s' failed", name)
        with self._lock:
            for name, cfg in kept.items():
                new[name].config = cfg
            removed = [m for name, m in old.items() if new.get(name) is not m]
            self._models = new
            if trusted:
                config = model_server_config_pb2.ModelServerConfig()
                config.model_config_list.config.extend(m.config for m in new.values())
                self.allowed_roots = default_roots(config, self.allowed_roots)
        for model in removed:
            _log.info("Unloading model '%s' (no longer in the config, or its base path changed)", model.config.name)
            with self._lock:
                model.loaded.clear()
        _log.info("Model config set: %s", ", ".join(f"{m.name} <- {m.base_path}" for m in models) or "(none)")
        self._poll_all(True)

    def model_names(self) -> list[str]:
        """Names of the configured models."""
        with self._lock:
            return sorted(self._models)

    def served_names(self):
        """The configured model names as a view, for membership tests on the request path (no copy, no sort)."""
        return self._models.keys()

    # ---------------------------------------------------------------------------------------- polling
    def poll_once(self) -> None:
        """Loads new wanted versions and unloads unwanted ones, for every configured model."""
        self._on_loader(self._poll_all, True)

    def _poll_all(self, rescan: bool) -> None:
        with self._lock:
            models = list(self._models.values())
        for model in models:
            try:
                self._sync_model(model, rescan)
            except Exception:  # never let one model stop the poller
                _log.exception("Polling model '%s' failed", model.config.name)

    def _set_status(self, model: _Model, version: int, state: int, code=grpc.StatusCode.OK, msg: str = "") -> None:
        with self._lock:
            model.status[version] = (state, code, msg)

    def _due(self, model: _Model, version: int, now: float) -> bool:
        failure = model.failures.get(version)
        return failure is None or (not failure.gave_up and now >= failure.next_try)

    def _sync_model(self, model: _Model, rescan: bool = True) -> None:
        cfg = model.config
        if rescan or model.available is None:
            model.available = list_versions(cfg.base_path)
        available = model.available
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
        # forget failures of versions that disappeared, or were given up and changed since, so they are retried
        for version, failure in list(model.failures.items()):
            path = os.path.join(cfg.base_path, str(version))
            if version not in available or (failure.gave_up and _fingerprint(path) != failure.fingerprint):
                model.failures.pop(version)
                if version not in available and not failure.gave_up:  # was LOADING between retries
                    self._set_status(model, version, State.END, failure.code, failure.message)
        now = time.monotonic()
        policy = cfg.model_version_policy.WhichOneof("policy_choice")
        if policy in (None, "latest"):
            # the newest N versions that load: a broken (or still copying) version falls back to older ones
            n = cfg.model_version_policy.latest.num_versions if policy == "latest" else 0
            n = n if n > 0 else 1
            aspired = []
            for version in sorted(available, reverse=True):
                if len(aspired) >= n:
                    break
                if version in model.loaded or (self._due(model, version, now) and self._load(model, version)):
                    aspired.append(version)
            # a failing version older than the ones served is no longer wanted: stop retrying it (END)
            if len(aspired) >= n:
                for version, failure in model.failures.items():
                    if version < min(aspired) and not failure.gave_up:
                        failure.gave_up = True
                        self._set_status(model, version, State.END, failure.code, failure.message)
        else:
            aspired = aspired_versions(cfg, available)
            for version in sorted(aspired, reverse=True):
                if version not in model.loaded and self._due(model, version, now):
                    self._load(model, version)
        with self._lock:
            serving_aspired = any(v in model.loaded for v in aspired)
            stale = [v for v in model.loaded if v not in aspired and (serving_aspired or v not in available)]
        for version in stale:
            with self._lock:
                model.loaded.pop(version, None)
            self._set_status(model, version, State.END)
            _log.info("Unloaded servable version {name: %s version: %d}", cfg.name, version)

    def _load(self, model: _Model, version: int) -> bool:
        """Loads and warms up one version; True once it is AVAILABLE. Failures are scheduled for retry."""
        from kerasbert.serving.warmup import run_warmup

        cfg = model.config
        path = os.path.join(cfg.base_path, str(version))
        failure = model.failures.get(version)
        attempt = (failure.attempts if failure else 0) + 1
        if failure is None:  # TF Serving shows LOADING (not an error) between retries
            self._set_status(model, version, State.LOADING)
        _log.info(
            "Loading servable version {name: %s version: %d} from %s (attempt %d of %d)",
            cfg.name,
            version,
            path,
            attempt,
            self.max_num_load_retries + 1,
        )
        start = time.monotonic()
        try:
            servable = Servable.load(cfg.name, version, path)
            servable.functions = {name: _FirstCallGate(fn) for name, fn in servable.functions.items()}
            loaded_at = time.monotonic()
            if self.enable_model_warmup:
                # the class's predict: warmup calls are not requests, so they skip the runtime-latency timing
                # that monitoring.instrument_manager wraps around the instance's `predict`
                predict = type(self).predict.__get__(self)
                run_warmup(servable, predict, self.num_request_iterations_for_warmup, self.metrics)
        except Exception as exc:
            failure = model.failures.setdefault(version, _Failure())
            failure.attempts += 1
            failure.fingerprint = _fingerprint(path)
            message = load_error_message(exc, path)
            code = grpc.StatusCode.UNKNOWN
            if isinstance(exc, ServingError):
                code = exc.code
            elif isinstance(getattr(exc, "error_code", None), int):  # tf.errors.OpError
                code = status_code_from_int(exc.error_code)
            failure.code, failure.message = code, message
            full = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if failure.attempts > self.max_num_load_retries:
                failure.gave_up = True
                _log.error(
                    "Loading servable version {name: %s version: %d} failed (attempt %d, giving up until the "
                    "folder changes): %s",
                    cfg.name,
                    version,
                    failure.attempts,
                    full,
                )
                self._set_status(model, version, State.END, code, message)
            else:
                failure.next_try = time.monotonic() + self.load_retry_interval
                _log.warning(
                    "Loading servable version {name: %s version: %d} failed (attempt %d of %d), retrying in %.1f s: %s",
                    cfg.name,
                    version,
                    failure.attempts,
                    self.max_num_load_retries + 1,
                    self.load_retry_interval,
                    full,
                )
                retry = f"load attempt {failure.attempts} failed, retrying: {message}"
                self._set_status(model, version, State.LOADING, code, retry)
            return False
        model.failures.pop(version, None)
        with self._lock:  # the switch: from here on requests for the newest version get this one
            model.loaded[version] = servable
            model.status[version] = (State.AVAILABLE, grpc.StatusCode.OK, "")
        _log.info(
            "Successfully loaded servable version {name: %s version: %d} (load %.2f s, warmup %.2f s)",
            cfg.name,
            version,
            loaded_at - start,
            time.monotonic() - loaded_at,
        )
        return True

    def _next_retry(self) -> float:
        """time.monotonic() of the earliest pending retry (inf if none)."""
        with self._lock:
            models = list(self._models.values())
        try:
            due = [f.next_try for m in models for f in list(m.failures.values()) if not f.gave_up]
        except RuntimeError:  # the loader thread changed a dict meanwhile: look again soon
            return 0.0
        return min(due, default=math.inf)

    def start_polling(self) -> None:
        """Starts the background thread: polls every `poll_wait_seconds` (if > 0) and runs due load retries."""
        if self._thread is not None:
            return

        def loop():
            every = self.poll_wait_seconds
            next_poll = time.monotonic() + every if every > 0 else math.inf
            while True:
                wake = min(next_poll, self._next_retry())
                # wake at least every second: a reload on another thread may have scheduled an earlier retry
                if self._stop.wait(min(1.0, max(0.0, wake - time.monotonic()))):
                    return
                now = time.monotonic()
                try:
                    if now >= next_poll:
                        next_poll = now + every
                        self._on_loader(self._poll_all, True)
                    elif self._next_retry() <= now:
                        self._on_loader(self._poll_all, False)
                except RuntimeError:  # loader shut down
                    return

        self._thread = threading.Thread(target=loop, name="fs-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops polling and drops all loaded versions."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._loader.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for model in self._models.values():
                model.loaded.clear()

    # --------------------------------------------------------------------------------------- requests
    # --- request path: messages as TF Serving's (no list of served models, labels or versions to clients)
    def _model(self, name: str, request: str) -> _Model:
        model = self._models.get(name)
        if model is None:
            _log.info("Request for model '%s', which is not served (served: %s)", name, sorted(self._models))
            raise not_found(f"Servable not found for request: {request}")
        return model

    def get_servable(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The loaded version asked for: a number, a label from `version_labels`, or else the newest.

        Raises:
            ServingError: NOT_FOUND for an unknown model, version or label, or a version not loaded.
        """
        request = f"Latest({name})" if version is None and not label else f"Specific({name}, {version})"
        with self._lock:
            model = self._model(name, request if not label else f"Specific({name}, {label})")
            if label:
                labels = dict(model.config.version_labels)
                if label not in labels:
                    raise not_found(f"Unrecognized servable version label: {label}")
                version = labels[label]
                request = f"Specific({name}, {version})"
            if version is None:
                if not model.loaded:
                    raise not_found(f"Servable not found for request: {request}")
                return model.loaded[max(model.loaded)]
            servable = model.loaded.get(version)
            if servable is None:
                _log.info("Request for %s; loaded versions: %s", request, sorted(model.loaded))
                raise not_found(f"Servable not found for request: {request}")
            return servable

    def predict(
        self, servable: Servable, signature_name: str, inputs: Mapping, output_filter=(), deadline: float | None = None
    ) -> dict:
        """Runs `servable.predict`, through the request batcher when batching is on.

        `deadline` is an absolute `time.monotonic()` (None = none): work not started by then is skipped
        (DEADLINE_EXCEEDED; a request still queued for a batch is not run), and a chunked call stops between
        chunks once it passes.
        """
        if self.batcher is not None:
            return self.batcher.predict(servable, signature_name, inputs, output_filter, deadline)
        chunk_rows = self.limits.predict_chunk_rows if self.limits is not None else None
        return servable.predict(signature_name, inputs, output_filter, deadline=deadline, chunk_rows=chunk_rows)

    def model_status(self, name: str, version: int | None = None, label: str | None = None):
        """`[(version, State, grpc.StatusCode, message)]` for a model, like TF Serving's GetModelStatus.

        Without `version`/`label` every version ever seen is listed (END for unloaded or failed ones).

        Raises:
            ServingError: NOT_FOUND for an unknown model/version/label.
        """
        if label:
            version = self.get_servable(name, label=label).version
        with self._lock:
            model = self._models.get(name)
            if model is None:
                raise not_found(f"Could not find any versions of model {name}")
            # public_message: load errors name absolute paths, which clients must not see (the log has them)
            status = {v: (st, code, public_message(msg) if msg else msg) for v, (st, code, msg) in model.status.items()}
        if version is not None:
            if version not in status:
                raise not_found(f"Could not find version {version} of model {name}")
            return [(version, *status[version])]
        if not status:
            raise not_found(f"Could not find any versions of model {name}")
        return [(v, *status[v]) for v in sorted(status)]


__all__ = [
    "ModelManager",
    "ServingError",
    "aspired_versions",
    "list_versions",
    "single_model_config",
    "validate_config",
]
