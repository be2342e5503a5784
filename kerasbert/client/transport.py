"""The TF Serving protocol layer: Predict / GetModelMetadata / GetModelStatus over a wire (gRPC here,
TF Serving's REST API in :mod:`kerasbert.client.rest`), long inputs split into pipelined requests, and
the wire's errors turned into the typed errors of :mod:`kerasbert.client.errors`.

:class:`Transport` knows nothing about tasks; :class:`kerasbert.client.Client` builds the
per-task methods (``classify``, ``encode``, ``entities``...) on top of it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import copy
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import numpy as np

from kerasbert import contract
from kerasbert.client.errors import (
    InvalidInput,
    KerasBertClientError,
    ModelNotFound,
    NoExportMetadata,
    NotAString,
    RequestTimeout,
    ServerUnavailable,
    SignatureNotFound,
)
from kerasbert.client.progress import Progress
from kerasbert.client.protos import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from kerasbert.client.tensors import as_array, check_strings, dtype_name, from_tensor_proto, to_tensor_proto

DEFAULT_SERVER = "localhost:8500"
DEFAULT_MODEL = "kerasbert"
SERVER_ENV = "KERASBERT_SERVER"
MODEL_ENV = "KERASBERT_MODEL"
# gRPC's default receive limit is 4 MiB; allow larger replies (e.g. big embedding batches).
_MAX_MESSAGE_BYTES = 256 * 1024 * 1024


def default_server() -> str:
    """The server address from ``$KERASBERT_SERVER``, else ``"localhost:8500"``."""
    return os.environ.get(SERVER_ENV) or DEFAULT_SERVER


def default_model() -> str:
    """The model name from ``$KERASBERT_MODEL``, else ``"kerasbert"``."""
    return os.environ.get(MODEL_ENV) or DEFAULT_MODEL


def split_target(target: str) -> tuple[str, str | None]:
    """``"host:port"`` / ``"[::1]:port"`` / ``"host"`` -> ``(host, port or None)``."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, rest.lstrip(":") or None
    if target.count(":") == 1:
        host, port = target.split(":")
        return host, port or None
    return target, None


def _pem(value: str | os.PathLike | bytes | None, what: str) -> bytes | None:
    """PEM bytes from bytes, PEM text, or a file path."""
    if value is None or isinstance(value, bytes):
        return value
    text = os.fspath(value)
    if "-----BEGIN" in text:
        return text.encode("ascii")
    try:
        with open(text, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} file {text}: {exc.strerror}") from None


def tls_credentials(
    ca_cert: str | os.PathLike | bytes | None = None,
    client_cert: str | os.PathLike | bytes | None = None,
    client_key: str | os.PathLike | bytes | None = None,
) -> grpc.ChannelCredentials:
    """gRPC channel credentials: the CA that signed the server's certificate (None = the system's CAs), and a
    client certificate + key for servers with ``client_verify: true``. Each is PEM bytes/text or a file path.

    Example:

    >>> tls_credentials(client_cert="client.pem")
    Traceback (most recent call last):
    ...
    ValueError: client_cert and client_key go together (mutual TLS needs both)
    """
    if (client_cert is None) != (client_key is None):
        raise ValueError("client_cert and client_key go together (mutual TLS needs both)")
    return grpc.ssl_channel_credentials(
        root_certificates=_pem(ca_cert, "CA certificate"),
        private_key=_pem(client_key, "client key"),
        certificate_chain=_pem(client_cert, "client certificate"),
    )


Batch = tuple[slice, dict[str, np.ndarray]]  # the input rows one request answered, and its outputs
DEFAULT_MAX_IN_FLIGHT = 4


class WireError(Exception):
    """A failed call as a wire reports it: the gRPC status code name (REST: the one its HTTP status
    stands for) and the server's message; :class:`Transport` turns it into a typed error."""

    def __init__(self, code: str | None, details: str):
        super().__init__(details)
        self.code = code
        self.details = details


def is_rest_url(address: str | None) -> bool:
    """``http://...`` / ``https://...``: the client then speaks TF Serving's REST API."""
    return bool(address) and address.lower().startswith(("http://", "https://"))


class _GrpcPending:
    """One Predict in flight (a gRPC future): ``result()`` waits for its outputs, ``cancel()`` drops it."""

    def __init__(self, future: Any):
        self._future = future

    def result(self) -> dict[str, np.ndarray]:
        try:
            response = self._future.result()
        except grpc.RpcError as err:
            raise _grpc_error(err) from None
        return {name: from_tensor_proto(proto) for name, proto in response.outputs.items()}

    def cancel(self) -> None:
        self._future.cancel()


def _grpc_error(err: grpc.RpcError) -> WireError:
    code = err.code() if hasattr(err, "code") else None
    details = (err.details() if hasattr(err, "details") else None) or str(err)
    return WireError(code.name if code is not None else None, details)


def _fill_model_spec(spec: Any, model_name: str, version: int | str | None, signature_name: str | None = None) -> None:
    spec.name = model_name
    if signature_name:
        spec.signature_name = signature_name
    if isinstance(version, str):
        spec.version_label = version
    elif version is not None:
        spec.version.value = int(version)


class GrpcWire:
    """TF Serving's gRPC API (``PredictionService``, ``ModelService``) on one channel."""

    kind = "gRPC"

    def __init__(self, target: str, tls: bool, ca_cert: Any, client_cert: Any, client_key: Any):
        options = [
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            # Retry a server that was down within seconds, not gRPC's default 2 minutes.
            ("grpc.max_reconnect_backoff_ms", 5000),
        ]
        if tls:
            self.channel = grpc.secure_channel(
                target, tls_credentials(ca_cert, client_cert, client_key), options=options
            )
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def start(
        self,
        model: tuple[str, int | str | None],
        arrays: dict[str, np.ndarray],
        output_filter: Sequence[str] | None,
        signature_name: str,
        timeout: float,
    ) -> _GrpcPending:
        """Sends one Predict without waiting for it."""
        request = predict_pb2.PredictRequest()
        _fill_model_spec(request.model_spec, *model, signature_name)
        for name, array in arrays.items():
            request.inputs[name].CopyFrom(to_tensor_proto(array))
        if output_filter:
            request.output_filter.extend(output_filter)
        return _GrpcPending(self._prediction.Predict.future(request, timeout=timeout))

    def _call(self, method: Any, request: Any, timeout: float) -> Any:
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as err:
            raise _grpc_error(err) from None

    def model_metadata(self, model: tuple[str, int | str | None], timeout: float) -> tuple[Any, int | None, str]:
        """``(SignatureDefMap, version or None, model name)`` from ``GetModelMetadata``."""
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        _fill_model_spec(request.model_spec, *model)
        request.metadata_field.append("signature_def")
        response = self._call(self._prediction.GetModelMetadata, request, timeout)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        if "signature_def" in response.metadata:
            response.metadata["signature_def"].Unpack(signature_map)
        version = response.model_spec.version.value if response.model_spec.HasField("version") else None
        return signature_map, version, response.model_spec.name

    def model_status(self, model: tuple[str, int | str | None], timeout: float) -> Any:
        """The ``GetModelStatusResponse``."""
        request = get_model_status_pb2.GetModelStatusRequest()
        _fill_model_spec(request.model_spec, *model)
        return self._call(self._models.GetModelStatus, request, timeout)

    def close(self) -> None:
        self.channel.close()


class Transport:
    """A connection to one model of a TF Serving-compatible server (no task knowledge): gRPC for a
    ``host:port`` address, TF Serving's REST API for an ``http://host:port`` one.

    Args: as :class:`kerasbert.client.Client`, which adds the per-task methods.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        model_name: str | None = None,
        timeout: float = 10.0,
        signature_name: str = contract.SERVING_DEFAULT,
        version: int | str | None = None,
        *,
        target: str | None = None,
        batch_size: int = 64,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        progress: bool | None = None,
        tls: bool = False,
        ca_cert: str | os.PathLike | bytes | None = None,
        client_cert: str | os.PathLike | bytes | None = None,
        client_key: str | os.PathLike | bytes | None = None,
    ):
        if target is None and is_rest_url(host):
            target = host  # Client("http://localhost:8501")
        if target is None:
            if host is not None and port is None and split_target(host)[1] is not None:
                target = host  # Client("localhost:8500")
            else:
                env = default_server()
                if is_rest_url(env) and host is None and port is None:
                    target = env
                else:
                    env_host, env_port = split_target(env) if not is_rest_url(env) else ("localhost", None)
                    host = host or env_host or "localhost"
                    target = f"{f'[{host}]' if ':' in host else host}:{port or env_port or 8500}"
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.rest = is_rest_url(target)
        self.target = target.rstrip("/") if self.rest else target
        self.model_name = model_name or default_model()
        self.timeout = timeout
        self.signature_name = signature_name
        self.version = version
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.progress = progress
        self.tls = bool(tls or ca_cert or client_cert or client_key or self.target.lower().startswith("https://"))
        if self.rest:
            from kerasbert.client.rest import RestWire

            self._wire: Any = RestWire(self.target, ca_cert, client_cert, client_key, max_workers=max_in_flight)
        else:
            self._wire = GrpcWire(target, self.tls, ca_cert, client_cert, client_key)
        # (model_name, version) -> ExportMetadata, or (reason, code, details) when the model has none.
        self._export_metadata: dict[tuple[str, Any], Any] = {}
        self._async_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._async_lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """Runs ``fn(*args, **kwargs)`` (a method of this client, e.g. ``client.encode``) on the client's
        worker threads (``max_in_flight`` of them) and returns its ``concurrent.futures.Future`` at once.

        The ``*_async`` methods (``encode_async``, ``classify_async``...) are this for each method, like
        bert-as-service's ``encode_async``; one client can be shared by many threads, so no pool of
        clients is needed (bert-as-service's ``ConcurrentBertClient``). :meth:`close` cancels the calls
        that have not started.

        Example:

        ```python
        futures = [client.encode_async(chunk) for chunk in chunks]
        vectors = np.concatenate([f.result() for f in futures])
        ```
        """
        with self._async_lock:
            if self._async_pool is None:
                self._async_pool = concurrent.futures.ThreadPoolExecutor(
                    self.max_in_flight, thread_name_prefix="kerasbert-client"
                )
            return self._async_pool.submit(fn, *args, **kwargs)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(target={self.target!r}, model_name={self.model_name!r}, "
            f"signature_name={self.signature_name!r})"
        )

    # -- plumbing ------------------------------------------------------------------------

    @property
    def _model(self) -> tuple[str, int | str | None]:
        return self.model_name, self.version

    def _describe_model(self) -> str:
        version = "" if self.version is None else f" version {self.version}"
        return f"model '{self.model_name}'{version}"

    def _call(self, method: Any, *args: Any, signature_name: str | None = None) -> Any:
        """``method(*args)`` of the wire, its WireError turned into the typed error."""
        try:
            return method(*args)
        except WireError as err:
            raise self._translate(err, signature_name or self.signature_name) from None

    def _translate(self, err: WireError, signature_name: str) -> KerasBertClientError:
        name, details = err.code, err.details
        protocol = "REST" if self.rest else "gRPC"
        if name == "UNAVAILABLE" and self.tls:
            return ServerUnavailable(
                f"no TLS connection to {self.target}: the server is down, does not speak TLS, or the certificates "
                f"do not match (the CA must have signed the server's certificate for this host name; with "
                f"client_verify the server needs a client certificate) ({protocol}: {details})",
                name,
                details,
            )
        if name == "UNAVAILABLE":
            flag = "--rest_api_port <port> " if self.rest else ""
            return ServerUnavailable(
                f"no TF Serving {'REST API' if self.rest else 'server'} at {self.target} – start one with "
                f"`python -m kerasbert.serve {flag}--model_base_path <export dir> --model_name {self.model_name}` "
                f"({protocol}: {details})",
                name,
                details,
            )
        if name in ("NOT_FOUND", "FAILED_PRECONDITION") and "signature" in details.lower():
            return SignatureNotFound(
                f"{self._describe_model()} at {self.target} has no signature '{signature_name}': {details} "
                f"– see Client.metadata()['signatures'] for the ones it has",
                name,
                details,
            )
        if name == "NOT_FOUND":
            return ModelNotFound(
                f"{self._describe_model()} is not served at {self.target}: {details} – check the model "
                f"name (the server's --model_name, or ${MODEL_ENV}) and that the model finished loading",
                name,
                details,
            )
        if name in ("INVALID_ARGUMENT", "FAILED_PRECONDITION"):
            return InvalidInput(f"the server rejected the request: {details}", name, details)
        if name == "DEADLINE_EXCEEDED":
            return RequestTimeout(
                f"{self.target} did not answer within {self.timeout:g} s "
                f"(raise Client(timeout=...) or send smaller batches)",
                name,
                details,
            )
        return KerasBertClientError(f"request to {self.target} failed with {name}: {details}", name, details)

    # -- Predict ---------------------------------------------------------------------------

    def predict(
        self,
        inputs: dict[str, Any],
        output_filter: Sequence[str] | None = None,
        batch_size: int | None = None,
        *,
        progress: bool | None = None,
    ) -> dict[str, np.ndarray]:
        """Calls the signature with named inputs and returns its named outputs.

        Inputs with a leading batch dimension are split into requests of at most
        ``batch_size`` rows, up to the client's ``max_in_flight`` of them at once; the outputs
        are concatenated back in order.

        Args:
            inputs: input name -> list, numpy array, or single string. All must have the
                same number of rows.
            output_filter: names of the outputs to compute (default: all).
            batch_size: rows per request (default: the client's ``batch_size``).
            progress: show a progress line on stderr (default: the client's ``progress``).

        Returns:
            Output name -> numpy array (strings decoded to Python ``str``).

        Raises:
            ValueError: no inputs, an empty input, or inputs with different row counts.
            NotAString: a text input holds a non-string (e.g. ``None``); the message names it.
            KerasBertClientError: the call failed (see the subclasses), or the requests' outputs
                cannot be concatenated (padded per request to different lengths).

        Example:

        ```python
        out = client.predict({"text": ["nice", "bad"]}, output_filter=["labels"])
        out["labels"]   # array(['positive', 'negative'], dtype=object)
        ```
        """
        parts = [outputs for _, outputs in self._predict_batches(inputs, output_filter, batch_size, progress=progress)]
        if len(parts) == 1:
            return parts[0]
        merged = {}
        for key, first in parts[0].items():
            if not first.ndim:
                merged[key] = first
                continue
            shapes = {p[key].shape[1:] for p in parts}
            if len(shapes) > 1:
                raise KerasBertClientError(
                    f"output '{key}' has a different shape in each request of {batch_size or self.batch_size} rows "
                    f"({', '.join(str(s) for s in sorted(shapes))} after the batch axis: padded per request), so "
                    f"the requests cannot be joined; pass a batch_size of at least the number of rows, or use the "
                    f"task's method (entities(), tokens(), encode_tokens()), which decodes each request"
                )
            merged[key] = np.concatenate([p[key] for p in parts])
        return merged

    def _predict_batches(
        self,
        inputs: dict[str, Any],
        output_filter: Sequence[str] | None = None,
        batch_size: int | None = None,
        signature_name: str | None = None,
        progress: bool | None = None,
    ) -> list[Batch]:
        """Sends ``inputs`` in requests of at most ``batch_size`` rows, at most ``max_in_flight`` at a
        time (pipelined: the next request leaves before the previous one is answered);
        ``[(rows, outputs), ...]`` in input order.

        ``signature_name``: another signature than the client's own (e.g. ``tokens``).
        """
        signature_name = signature_name or self.signature_name
        if not inputs:
            raise ValueError("predict() needs at least one named input")
        arrays = {}
        for name, value in inputs.items():
            arrays[name] = as_array(value)
            try:  # an error naming the input and the position, before any request is sent
                check_strings(arrays[name])
            except TypeError as err:
                raise NotAString(f"input '{name}': {err}", None, str(err)) from None
        rows = {name: (a.shape[0] if a.ndim else None) for name, a in arrays.items()}
        for name, n in rows.items():
            if n == 0:
                raise ValueError(f"input '{name}' is empty: pass at least one value")
        if len(set(rows.values())) > 1:
            raise ValueError(f"inputs have different numbers of rows: {rows}")
        total = next(iter(rows.values()))
        if total is None:  # scalar inputs: nothing to split
            return [(slice(None), self._request(arrays, output_filter, signature_name))]
        step = batch_size or self.batch_size
        parts = [slice(start, min(start + step, total)) for start in range(0, total, step)]
        return self._pipeline(arrays, parts, output_filter, signature_name, progress)

    def _pipeline(
        self,
        arrays: dict[str, np.ndarray],
        parts: list[slice],
        output_filter: Sequence[str] | None,
        signature_name: str,
        progress: bool | None,
    ) -> list[Batch]:
        """Keeps up to ``max_in_flight`` requests outstanding; collects the answers in order. A failed
        request cancels the ones still in flight and raises its error."""
        window: collections.deque = collections.deque()
        results: list[Batch] = []
        bar = Progress(parts[-1].stop, enabled=self.progress if progress is None else progress, requests=len(parts))

        def collect() -> None:
            rows, pending = window.popleft()
            results.append((rows, self._finish(pending, signature_name)))
            bar.update(rows.stop - rows.start)

        try:
            for rows in parts:
                if len(window) >= self.max_in_flight:
                    collect()
                window.append(
                    (rows, self._start_request({k: a[rows] for k, a in arrays.items()}, output_filter, signature_name))
                )
            while window:
                collect()
        except BaseException:
            for _, pending in window:
                pending.cancel()
            raise
        finally:
            bar.close()
        return results

    def _start_request(
        self, arrays: dict[str, np.ndarray], output_filter: Sequence[str] | None, signature_name: str
    ) -> Any:
        """Sends one Predict request to ``signature_name`` without waiting: a pending answer for
        :meth:`_finish`."""
        try:
            return self._wire.start(self._model, arrays, output_filter, signature_name, self.timeout)
        except WireError as err:
            raise self._translate(err, signature_name) from None

    def _finish(self, pending: Any, signature_name: str) -> dict[str, np.ndarray]:
        """The outputs of a request from :meth:`_start_request` (waits for them)."""
        return self._call(pending.result, signature_name=signature_name)

    def _request(
        self, arrays: dict[str, np.ndarray], output_filter: Sequence[str] | None, signature_name: str
    ) -> dict[str, np.ndarray]:
        """One Predict request to ``signature_name``, answered."""
        return self._finish(self._start_request(arrays, output_filter, signature_name), signature_name)

    # -- GetModelMetadata / GetModelStatus --------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The model's signatures, from ``PredictionService.GetModelMetadata`` (REST: ``GET .../metadata``).

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
        signature_map, version, name = self._call(self._wire.model_metadata, self._model, self.timeout)

        def describe(tensors: Any) -> dict[str, dict[str, Any]]:
            return {
                name: {
                    "dtype": dtype_name(info.dtype),
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
        return {
            "model_name": name or self.model_name,
            "version": version,
            "signature_name": self.signature_name,
            "inputs": chosen["inputs"],
            "outputs": chosen["outputs"],
            "signatures": signatures,
        }

    def export_metadata(self, *, refresh: bool = False) -> contract.ExportMetadata:
        """What the model says about itself: its task, signatures, preprocessing and task facts.

        Calls ``Predict`` on the export's ``metadata`` signature (no inputs; one scalar string,
        the JSON of :class:`kerasbert.contract.ExportMetadata`), so it works against stock
        ``tensorflow_model_server`` (gRPC) as well as ``kerasbert.serve``. The answer is cached
        per model name and version (``version=None``: the version that answered first; pass
        ``refresh=True`` to ask again, e.g. after the server loaded a new version).

        Returns:
            A copy of the cached ``ExportMetadata``: ``.task`` (one of ``contract.TASKS``),
            ``.signatures``, ``.preprocessing``, ``.task_config`` (e.g. ``class_names``,
            ``text_pair``, ``entity_types``) and ``.extra``.

        Raises:
            NoExportMetadata: the model has no ``metadata`` signature (an export from an older
                kerasbert, or not a kerasbert export) or it answers something else;
                :meth:`predict` still works.
            ServerUnavailable, ModelNotFound, RequestTimeout: as for any call.

        Example:

        ```python
        meta = client.export_metadata()
        meta.task                          # 'token_classification'
        meta.task_config["entity_types"]   # ['LOC', 'MISC', 'ORG', 'PER']
        ```
        """
        key = (self.model_name, self.version)
        if refresh:
            self._export_metadata.pop(key, None)
        if key not in self._export_metadata:
            self._export_metadata[key] = self._fetch_export_metadata()
        cached = self._export_metadata[key]
        if isinstance(cached, tuple):
            reason, code, details = cached
            raise NoExportMetadata(
                f"{self._describe_model()} at {self.target} does not say which task it performs: it {reason} "
                f"(an export from an older kerasbert, or not a kerasbert export). predict() still works "
                f"on it; Client.metadata()['signatures'] lists what it takes and returns",
                code,
                details,
            )
        return copy.deepcopy(cached)  # callers may change it; the cache stays as the model said

    def _fetch_export_metadata(self) -> contract.ExportMetadata | tuple[str, str | None, str | None]:
        """The parsed ``metadata`` answer, or ``(reason, code, details)`` when there is none."""
        signature = contract.METADATA_SIGNATURE
        try:
            outputs = self._request({}, [contract.METADATA], signature)
        except SignatureNotFound as err:
            return f"has no '{signature}' signature", err.code, err.details
        except InvalidInput as err:  # a 'metadata' signature of somebody else's, wanting inputs
            return f"has a '{signature}' signature, but not kerasbert's ({err.details})", err.code, err.details
        value = outputs.get(contract.METADATA)
        if value is None or value.size != 1 or value.dtype != object:
            return (
                f"answers '{signature}' with outputs {sorted(outputs)}, not one '{contract.METADATA}' string",
                None,
                None,
            )
        try:
            return contract.ExportMetadata.from_json(value.reshape(-1)[0])
        except ValueError as err:
            return f"answers '{signature}' with something other than kerasbert export metadata ({err})", None, None

    def status(self) -> list[tuple[int, str]]:
        """The served versions and their states, from ``ModelService.GetModelStatus`` (REST: ``GET /v1/models/<name>``).

        Returns:
            ``[(version, state), ...]`` sorted by version, e.g. ``[(1, "AVAILABLE")]``.
            States: ``START``, ``LOADING``, ``AVAILABLE``, ``UNLOADING``, ``END``.

        Example:

        ```python
        client.status()   # [(1, 'AVAILABLE'), (2, 'LOADING')]
        ```
        """
        response = self._call(self._wire.model_status, self._model, self.timeout)
        state_name = get_model_status_pb2.ModelVersionStatus.State.Name
        return sorted((int(v.version), state_name(v.state)) for v in response.model_version_status)

    def close(self) -> None:
        """Cancels async calls not started yet, then closes the gRPC channel (REST: the keep-alive connections)."""
        with self._async_lock:
            pool, self._async_pool = self._async_pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        self._wire.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
