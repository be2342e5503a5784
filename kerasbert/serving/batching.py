"""Request batching as TF Serving's `--enable_batching` does it: concurrent Predict calls are merged into one call.

Requests for the same servable (model + version), signature, input names/dtypes/inner shapes and output filter
join one queue. Each queue keeps a deque of batches (the last one open), like TF's `SharedBatchScheduler`: a
request goes into the open batch if it fits (`max_batch_size` rows, or `max_execution_batch_size` with
`enable_large_batch_splitting`), else a new batch is opened; when `max_enqueued_batches` batches are waiting the
request is refused with UNAVAILABLE at once. `num_batch_threads` threads, shared by every queue (round-robin),
take a batch when it is full, when it is not the open one, or when its oldest request has waited
`batch_timeout_micros`; they concatenate the inputs along axis 0 (padding the batch up to the next of
`allowed_batch_sizes` by repeating a row), make one signature call and split the outputs back per request.

Why hand-written: TF Serving's scheduler lives in C++ inside `tensorflow_model_server` and TF's Python API has
no request batcher (`tf.nondifferentiable_batch_function` batches inside one graph, not across Python callers).

Where we differ from TF Serving, on purpose:

* kerasbert outputs padded to the widest row of a call (`entity_*`, `token_*`) are sliced per request and
  trimmed with `arrays.trim_padding`, so a request gets exactly what it gets alone (TF Serving fails such
  outputs with FAILED_PRECONDITION);
* a merged call that fails (e.g. one request carries a value the model rejects) is re-run request by request,
  so only the bad request gets the error;
* a request whose deadline passed while queued is answered DEADLINE_EXCEEDED and not run (TF Serving says
  RESOURCE_EXHAUSTED "Run() timeout exceeded while waiting in batching queue");
* signatures without a batch dimension (no inputs, like kerasbert's `metadata`, or an output whose first
  dimension is fixed) bypass the batcher instead of failing.

Example:

>>> options = BatchingOptions.from_proto(protos.parse_text(
...     "max_batch_size { value: 8 } batch_timeout_micros { value: 2000 } allowed_batch_sizes: 4 "
...     "allowed_batch_sizes: 8", protos.BatchingParameters))
>>> options.max_batch_size, options.batch_timeout_micros, options.allowed_batch_sizes, options.max_enqueued_batches
(8, 2000, (4, 8), 10)
>>> options.padded_size(3), options.padded_size(5)
(4, 8)
>>> batcher = Batcher(options)                                                       # doctest: +SKIP
>>> batcher.predict(servable, "serving_default", {"text": tf.constant(["hi"])})      # doctest: +SKIP
{'probabilities': array([[0.1, 0.9]], dtype=float32), ...}
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping

import grpc
import numpy as np

from kerasbert import contract
from kerasbert.serving import arrays, protos
from kerasbert.serving.errors import ServingError, invalid_argument

_log = logging.getLogger("kerasbert.serve")

# TF's SharedBatchScheduler::QueueOptions defaults (what TF Serving uses for a field the file leaves unset).
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_BATCH_TIMEOUT_MICROS = 0
DEFAULT_MAX_ENQUEUED_BATCHES = 10


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """The `BatchingParameters` fields the batcher uses, with TF Serving's defaults for unset ones.

    `max_execution_batch_size` is the most rows one merged call runs: `max_batch_size` unless
    `enable_large_batch_splitting` is on and the file sets it (then a request of up to `max_batch_size`
    rows is split over several calls of at most that many rows).

    Example:

    >>> BatchingOptions().max_batch_size, BatchingOptions().max_enqueued_batches
    (1000, 10)
    """

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    batch_timeout_micros: int = DEFAULT_BATCH_TIMEOUT_MICROS
    max_enqueued_batches: int = DEFAULT_MAX_ENQUEUED_BATCHES
    num_batch_threads: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    allowed_batch_sizes: tuple[int, ...] = ()
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    thread_pool_name: str = "model_server_batch_threads"

    def __post_init__(self):
        if self.max_execution_batch_size > self.max_batch_size or not self.enable_large_batch_splitting:
            object.__setattr__(self, "max_execution_batch_size", self.max_batch_size)
        self.validate()

    def validate(self) -> None:
        """Raises ValueError (one line) for values TF Serving refuses."""
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads", "max_execution_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive; was {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batch_timeout_micros must be non-negative; was {self.batch_timeout_micros}")
        sizes = self.allowed_batch_sizes
        if sizes:
            if any(s < 1 for s in sizes) or any(b <= a for a, b in zip(sizes, sizes[1:])):
                raise ValueError(f"allowed_batch_sizes entries must be positive and increasing; got {list(sizes)}")
            if sizes[-1] != self.max_batch_size:
                raise ValueError(
                    "Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                    f"{sizes[-1]}; expected {self.max_batch_size}"
                )

    @classmethod
    def from_proto(cls, params) -> BatchingOptions:
        """From a `protos.BatchingParameters` message; raises ValueError for values TF Serving refuses."""

        def get(name, default):
            return getattr(params, name).value if params.HasField(name) else default

        max_batch_size = get("max_batch_size", DEFAULT_MAX_BATCH_SIZE)
        splitting = get("enable_large_batch_splitting", False)
        execution = get("max_execution_batch_size", max_batch_size) if splitting else max_batch_size
        if splitting and execution > max_batch_size:
            raise ValueError(
                f"max_execution_batch_size ({execution}) must not exceed max_batch_size ({max_batch_size})"
            )
        return cls(
            max_batch_size=int(max_batch_size),
            batch_timeout_micros=int(get("batch_timeout_micros", DEFAULT_BATCH_TIMEOUT_MICROS)),
            max_enqueued_batches=int(get("max_enqueued_batches", DEFAULT_MAX_ENQUEUED_BATCHES)),
            num_batch_threads=int(get("num_batch_threads", os.cpu_count() or 1)),
            allowed_batch_sizes=tuple(int(s) for s in params.allowed_batch_sizes),
            enable_large_batch_splitting=bool(splitting),
            max_execution_batch_size=int(execution),
            thread_pool_name=get("thread_pool_name", "model_server_batch_threads") or "model_server_batch_threads",
        )

    @classmethod
    def from_file(cls, path: str) -> BatchingOptions:
        """Reads a text-format `BatchingParameters` file (ParseError / ValueError / OSError on a bad one)."""
        return cls.from_proto(protos.read_text_file(path, protos.BatchingParameters))

    def padded_size(self, rows: int) -> int:
        """The smallest allowed batch size >= `rows` (`rows` itself without `allowed_batch_sizes`)."""
        if not self.allowed_batch_sizes:
            return rows
        i = bisect.bisect_left(self.allowed_batch_sizes, rows)
        return self.allowed_batch_sizes[min(i, len(self.allowed_batch_sizes) - 1)]

    def describe(self) -> str:
        """One line for the server log."""
        return (
            f"max_batch_size={self.max_batch_size} batch_timeout_micros={self.batch_timeout_micros} "
            f"max_enqueued_batches={self.max_enqueued_batches} num_batch_threads={self.num_batch_threads} "
            f"allowed_batch_sizes={list(self.allowed_batch_sizes)} "
            f"enable_large_batch_splitting={self.enable_large_batch_splitting} "
            f"max_execution_batch_size={self.max_execution_batch_size}"
        )


class _Task:
    """One request (or one piece of a split request) waiting for its rows' outputs."""

    __slots__ = ("inputs", "rows", "deadline", "enqueued", "done", "outputs", "error", "cancelled")

    def __init__(self, inputs: Mapping, rows: int, deadline: float | None):
        self.inputs = inputs
        self.rows = rows
        self.deadline = deadline
        self.enqueued = time.monotonic()
        self.done = threading.Event()
        self.outputs: dict[str, np.ndarray] | None = None
        self.error: BaseException | None = None
        self.cancelled = False

    def finish(self, outputs=None, error=None) -> None:
        self.outputs, self.error = outputs, error
        self.done.set()


class _Queue:
    """The batches of one (servable, signature, input layout, output filter); the last batch is the open one."""

    def __init__(self, key, servable, signature_name: str, output_filter: tuple[str, ...]):
        self.key = key
        self.servable = servable
        self.signature_name = signature_name
        self.output_filter = output_filter
        self.batches: collections.deque[list[_Task]] = collections.deque()
        self.sizes: collections.deque[int] = collections.deque()


def _rows(value) -> int | None:
    shape = getattr(value, "shape", None)
    if shape is None or len(shape) == 0 or shape[0] is None:
        return None
    return int(shape[0])


def _slice(value, start: int, stop: int):
    return value[start:stop]


def _concat(values: list, pad_rows: int):
    """Concatenates tensors/arrays along axis 0, appending `pad_rows` copies of the last value's first row."""
    import tensorflow as tf

    if pad_rows:
        values = values + [tf.repeat(values[-1][:1], pad_rows, axis=0)]
    if len(values) == 1:
        return values[0]
    return tf.concat(values, axis=0)


def _variable_width(output_names) -> frozenset[str]:
    """Outputs padded to the widest row of their call: `arrays.VARIABLE_WIDTH`, plus `tokens` where it sits next
    to per-WordPiece tags (the tagging export's `tokens` signature pads it like them; the embedding export's
    `tokens` signature pads to the full sequence length whatever the batch, so it is left alone)."""
    names = set(output_names)
    extra = {contract.TOKENS} if names & {contract.TOKEN_LABELS, contract.TOKEN_STARTS} else set()
    return frozenset(arrays.VARIABLE_WIDTH | extra)


def _trim(array: np.ndarray, name: str, variable: frozenset[str]) -> np.ndarray:
    if name not in variable:
        return array
    if name in arrays.VARIABLE_WIDTH:
        return arrays.trim_padding(array, name)
    # `tokens`: "" padding, like the entity/token string outputs (trim_padding only knows its own set)
    used = np.flatnonzero((array != b"").any(axis=0)) if array.ndim == 2 and array.size else np.array([])
    return array[:, : int(used[-1]) + 1 if used.size else 0]


def _deadline_error() -> ServingError:
    return ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline exceeded while waiting in the batching queue")


class Batcher:
    """Merges concurrent `predict` calls per queue key into single signature calls (see the module doc).

    Args:
        options: a `BatchingOptions`.
        metrics: a `kerasbert.serving.metrics.Metrics` (or None): processed batch sizes and queuing latency.

    Example:

    >>> batcher = Batcher(BatchingOptions(max_batch_size=32, batch_timeout_micros=2000))  # doctest: +SKIP
    >>> out = batcher.predict(servable, "serving_default", {"text": tf.constant(["a"])})   # doctest: +SKIP
    >>> batcher.close()                                                                    # doctest: +SKIP
    """

    def __init__(self, options: BatchingOptions | None = None, metrics=None):
        self.options = options or BatchingOptions()
        self.metrics = metrics
        self._cond = threading.Condition()
        self._queues: dict[tuple, _Queue] = {}
        self._order: collections.deque[tuple] = collections.deque()  # round-robin over queue keys
        self._unbatchable: set[tuple] = set()  # (id(servable), signature) whose outputs are not batch-major
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{self.options.thread_pool_name}-{i}", daemon=True)
            for i in range(self.options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------------------------------------ public
    def predict(
        self,
        servable,
        signature_name: str,
        inputs: Mapping,
        output_filter: Iterable[str] = (),
        deadline: float | None = None,
    ) -> dict[str, np.ndarray]:
        """`servable.predict(signature_name, inputs, output_filter)`, run in a merged batch when it can be.

        Args:
            deadline: absolute `time.monotonic()` after which the request is answered DEADLINE_EXCEEDED
                instead of being run (None = no deadline).

        Raises:
            ServingError: what `servable.predict` raises; INVALID_ARGUMENT for more rows than `max_batch_size`;
                UNAVAILABLE when the queue is full; DEADLINE_EXCEEDED when the deadline passed in the queue.
        """
        from kerasbert.serving.servable import DEFAULT_SIGNATURE, _check_inputs

        name = signature_name or DEFAULT_SIGNATURE
        output_filter = tuple(dict.fromkeys(output_filter))
        signature_def = servable.signature_def(name)
        if deadline is not None and time.monotonic() >= deadline:
            raise _deadline_error()
        rows = self._batch_rows(servable, name, signature_def, inputs)
        if rows is None:
            return servable.predict(name, inputs, output_filter)
        _check_inputs(name, signature_def, inputs)  # a malformed request fails alone, before it can join a batch
        if rows > self.options.max_batch_size:
            raise invalid_argument(
                f"Task size {rows} is larger than maximum input batch size {self.options.max_batch_size}"
            )
        layout = tuple(sorted((k, str(v.dtype), tuple(v.shape[1:])) for k, v in inputs.items()))
        key = (id(servable), name, layout, output_filter)
        tasks = self._schedule(key, servable, name, output_filter, inputs, rows, deadline)
        for task in tasks:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not task.done.wait(timeout):
                for t in tasks:
                    t.cancelled = True
                raise _deadline_error()
        for task in tasks:
            if task.error is not None:
                raise task.error
        if len(tasks) == 1:
            return tasks[0].outputs
        return {k: arrays.concat_rows([t.outputs[k] for t in tasks], k) for k in tasks[0].outputs}

    def close(self) -> None:
        """Stops the batch threads; queued requests are answered UNAVAILABLE."""
        with self._cond:
            self._closed = True
            queues = list(self._queues.values())
            self._queues.clear()
            self._order.clear()
            self._cond.notify_all()
        for queue in queues:
            for batch in queue.batches:
                for task in batch:
                    task.finish(error=ServingError(grpc.StatusCode.UNAVAILABLE, "The server is shutting down"))
        for thread in self._threads:
            thread.join(timeout=10)

    # ---------------------------------------------------------------------------------------- helpers
    def _batch_rows(self, servable, name: str, signature_def, inputs: Mapping) -> int | None:
        """Rows of the request, or None when it must bypass the batcher (no batch dimension)."""
        if not signature_def.inputs or not inputs or (id(servable), name) in self._unbatchable:
            return None
        for infos in (signature_def.inputs, signature_def.outputs):
            for info in infos.values():
                if info.tensor_shape.unknown_rank:
                    continue
                dims = info.tensor_shape.dim
                if not dims or dims[0].size >= 0:
                    return None
        sizes = {_rows(v) for v in inputs.values()}
        if len(sizes) != 1 or None in sizes:
            return None  # rank 0 or mismatched: let `servable.predict` give its error
        rows = sizes.pop()
        return rows if rows > 0 else None

    def _schedule(self, key, servable, name, output_filter, inputs, rows, deadline) -> list[_Task]:
        """Enqueues the request (split into pieces when large-batch splitting is on); UNAVAILABLE when full."""
        opts = self.options
        limit = opts.max_execution_batch_size
        with self._cond:
            if self._closed:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "The server is shutting down")
            queue = self._queues.get(key)
            open_size = queue.sizes[-1] if queue is not None and queue.sizes else None
            queued = len(queue.batches) if queue is not None else 0
            if opts.enable_large_batch_splitting:
                room = (limit - open_size) if open_size is not None else 0
                capacity = room + (opts.max_enqueued_batches - queued) * limit
                if rows > capacity:
                    raise self._full(rows, capacity, queued)
                pieces, start = [], 0
                first = min(room, rows)
                if first:
                    pieces.append((0, first))
                    start = first
                while start < rows:
                    pieces.append((start, min(start + limit, rows)))
                    start += limit
            else:
                fits = open_size is not None and open_size + rows <= limit
                if not fits and queued >= opts.max_enqueued_batches:
                    raise self._full(rows, 0 if open_size is None else limit - open_size, queued)
                pieces = [(0, rows)]
            if queue is None:
                queue = self._queues[key] = _Queue(key, servable, name, output_filter)
                self._order.append(key)
            tasks = []
            for start, stop in pieces:
                piece = inputs if (start, stop) == (0, rows) else {k: _slice(v, start, stop) for k, v in inputs.items()}
                task = _Task(piece, stop - start, deadline)
                if queue.sizes and queue.sizes[-1] + task.rows <= limit:
                    queue.batches[-1].append(task)
                    queue.sizes[-1] += task.rows
                else:
                    queue.batches.append([task])
                    queue.sizes.append(task.rows)
                tasks.append(task)
            self._cond.notify()
        return tasks

    def _full(self, rows: int, capacity: int, queued: int) -> ServingError:
        return ServingError(
            grpc.StatusCode.UNAVAILABLE,
            f"The batch scheduling queue to which this task was submitted is full; task size is {rows} but "
            f"scheduling capacity is only {capacity} (num_enqueued_batches={queued}, "
            f"max_enqueued_batches={self.options.max_enqueued_batches})",
        )

    # ---------------------------------------------------------------------------------- batch threads
    def _next_batch(self) -> tuple[_Queue | None, list[_Task] | None, float | None]:
        """Under the lock: a batch ready to run (round-robin over queues), else how long to wait for one."""
        now = time.monotonic()
        timeout = self.options.batch_timeout_micros / 1e6
        wait = None
        for _ in range(len(self._order)):
            key = self._order[0]
            self._order.rotate(-1)
            queue = self._queues[key]
            ready = (
                len(queue.batches) > 1
                or queue.sizes[0] >= self.options.max_execution_batch_size
                or now - queue.batches[0][0].enqueued >= timeout
            )
            if ready:
                batch = queue.batches.popleft()
                queue.sizes.popleft()
                if not queue.batches:  # drop empty queues: no reference to an unloaded servable stays here
                    del self._queues[key]
                    self._order.remove(key)
                return queue, batch, None
            left = timeout - (now - queue.batches[0][0].enqueued)
            wait = left if wait is None else min(wait, left)
        return None, None, wait

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    queue, batch, wait = self._next_batch()
                    if batch is not None:
                        if self._queues:
                            self._cond.notify()  # another ready batch may be waiting for a free thread
                        break
                    self._cond.wait(wait)
            try:
                self._run(queue, batch)
            except BaseException as exc:  # never lose a thread, never leave a caller waiting
                _log.exception("batch of model '%s' failed unexpectedly", queue.servable.name)
                for task in batch:
                    if not task.done.is_set():
                        task.finish(error=ServingError(grpc.StatusCode.INTERNAL, "Internal error"))
                if not isinstance(exc, Exception):
                    raise
            del queue, batch  # an idle thread must not keep the last servable (an unloaded version) alive

    def _run(self, queue: _Queue, batch: list[_Task]) -> None:
        now = time.monotonic()
        live = []
        for task in batch:
            if task.cancelled:
                task.finish(error=_deadline_error())
            elif task.deadline is not None and now >= task.deadline:
                task.finish(error=_deadline_error())
            else:
                live.append(task)
        if not live:
            return
        model = queue.servable.name
        if self.metrics is not None:
            for task in live:
                self.metrics.observe_queuing_latency(model, now - task.enqueued)
        rows = sum(t.rows for t in live)
        padded = self.options.padded_size(rows)
        if len(live) == 1 and padded == rows:
            merged = live[0].inputs
        else:
            merged = {k: _concat([t.inputs[k] for t in live], padded - rows) for k in live[0].inputs}
        if self.metrics is not None:
            self.metrics.observe_batch_size(model, padded)
        try:
            outputs = queue.servable.predict(queue.signature_name, merged, queue.output_filter)
        except ServingError as exc:
            if len(live) == 1:
                live[0].finish(error=exc)
            else:  # one bad request must not fail the others: run each alone
                self._run_alone(queue, live)
            return
        if any(_rows(v) != padded for v in outputs.values()):
            if len(live) == 1 and padded == rows:
                live[0].finish(outputs)
                return
            _log.warning(
                "Signature '%s' of model '%s' returns outputs without a batch dimension; not batching it",
                queue.signature_name,
                model,
            )
            self._unbatchable.add((queue.key[0], queue.signature_name))
            self._run_alone(queue, live)
            return
        if len(live) == 1:  # padding rows repeat its own first row: no column is wider than alone
            live[0].finish({k: v[:rows] if padded != rows else v for k, v in outputs.items()})
            return
        trimmed = _variable_width(queue.servable.signature_def(queue.signature_name).outputs)
        offsets = itertools.accumulate([0] + [t.rows for t in live])
        for task, start in zip(live, offsets):
            stop = start + task.rows
            task.finish({k: _trim(v[start:stop], k, trimmed) for k, v in outputs.items()})

    def _run_alone(self, queue: _Queue, tasks: list[_Task]) -> None:
        for task in tasks:
            try:
                task.finish(queue.servable.predict(queue.signature_name, task.inputs, queue.output_filter))
            except ServingError as exc:
                task.finish(error=exc)


__all__ = ["Batcher", "BatchingOptions"]
