"""Model warmup as TF Serving does it: replay `assets.extra/tf_serving_warmup_requests` before AVAILABLE.

The file is a TFRecord of `tensorflow.serving.PredictionLog` protos (read like TF Serving's
`servables/tensorflow/saved_model_warmup_util.cc`): at most `MAX_RECORDS` records (more fails the load),
each replayed `num_request_iterations` times; a record that does not parse or a request that fails
fails the load. kerasbert serves Predict only, so only `predict_log` records are replayed (others fail
the load with a clear message). A version without the file gets a best-effort synthetic warmup (ours:
each signature called once with one row of empty strings / zeros), since a swapped-in version's first
calls otherwise pay its graph optimisation on the request path.

Writers: `write_warmup_file` (used by `kerasbert.export.saved_model.export_task`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

_log = logging.getLogger("kerasbert.serve")

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_RECORDS = 1000  # WarmupConsts::kMaxNumRecords


class WarmupError(Exception):
    """The warmup file is invalid or one of its requests failed; the version must not become AVAILABLE."""


def warmup_path(version_dir: str) -> str:
    """Where TF Serving looks for a version's warmup requests.

    Example:

    >>> warmup_path("/m/1")
    '/m/1/assets.extra/tf_serving_warmup_requests'
    """
    return os.path.join(version_dir, WARMUP_FILE)


def read_warmup_records(path: str, max_records: int = MAX_RECORDS) -> list:
    """The `PredictionLog`s of a warmup file; `WarmupError` if it has more than `max_records` or a bad record.

    TFRecord framing (length + CRC) is read with `tf.data.TFRecordDataset`, which checks the CRCs.

    Example:

    >>> [log.predict_log.request.model_spec.signature_name
    ...  for log in read_warmup_records("exports/sst2/1/assets.extra/tf_serving_warmup_requests")]  # doctest: +SKIP
    ['serving_default', 'serving_default', 'serving_default']
    """
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    records = []
    try:
        for i, raw in enumerate(tf.data.TFRecordDataset(path).take(max_records + 1).as_numpy_iterator()):
            if i >= max_records:
                raise WarmupError(f"Number of warmup records exceeds the maximum ({max_records})")
            log = prediction_log_pb2.PredictionLog()
            try:
                log.ParseFromString(raw)
            except Exception as exc:
                raise WarmupError(f"Failed to parse warmup record {i + 1}") from exc
            records.append(log)
    except tf.errors.OpError as exc:  # truncated file, CRC mismatch
        raise WarmupError(f"warmup file is not a valid TFRecord file after {len(records)} records") from exc
    return records


def synthetic_inputs(signature_def) -> dict | None:
    """A one-row request for a signature: `""` for string inputs, zeros for numbers and booleans.

    None when an input's shape is not `[batch or 1, fixed dims...]` or its dtype is something else.

    Example:

    >>> from tensorflow.core.protobuf import meta_graph_pb2
    >>> sig = meta_graph_pb2.SignatureDef()
    >>> sig.inputs["text"].dtype = 7  # DT_STRING
    >>> sig.inputs["text"].tensor_shape.dim.add().size = -1
    >>> {k: v.numpy().tolist() for k, v in synthetic_inputs(sig).items()}
    {'text': [b'']}
    """
    import tensorflow as tf

    inputs = {}
    for name, info in signature_def.inputs.items():
        if info.tensor_shape.unknown_rank:
            return None
        dims = [d.size for d in info.tensor_shape.dim]
        if dims and (dims[0] not in (-1, 1) or any(d < 0 for d in dims[1:])):
            return None
        shape = [1, *dims[1:]] if dims else []
        dtype = tf.dtypes.as_dtype(info.dtype)
        if dtype == tf.string:
            inputs[name] = tf.fill(shape, "")
        elif dtype.is_integer or dtype.is_floating or dtype.is_bool:
            inputs[name] = tf.zeros(shape, dtype)
        else:
            return None
    return inputs


def run_synthetic_warmup(servable, predict) -> int:
    """Calls each signature once with `synthetic_inputs` (ours, for versions without a warmup file).

    The first call of a loaded signature pays its graph instantiation and optimisation; doing it here
    keeps that off the request path after a hot-swap. A signature whose synthetic call fails is only
    logged: this warmup is best effort and never fails a load. Returns the number of signatures called.
    """
    called = 0
    for name in sorted(servable.functions):
        signature_def = servable.meta_graph.signature_def.get(name)
        inputs = synthetic_inputs(signature_def) if signature_def is not None else None
        if inputs is None:
            continue
        try:
            predict(servable, name, inputs, [])
            called += 1
        except Exception as exc:
            _log.info(
                "Synthetic warmup of {name: %s version: %d} signature %s skipped: %s",
                servable.name,
                servable.version,
                name,
                getattr(exc, "message", exc),
            )
    return called


def run_warmup(
    servable,
    predict: Callable[[object, str, Mapping, Sequence[str]], Mapping],
    num_request_iterations: int = 1,
    metrics=None,
    synthesize: bool = True,
) -> int:
    """Replays `servable`'s warmup file through `predict(servable, signature_name, inputs, output_filter)`.

    Args:
        servable: a `Servable` (its `.path` is the version folder).
        predict: the server's predict path, e.g. `ModelManager.predict`.
        num_request_iterations: times each record is replayed (TF Serving's
            `--num_request_iterations_for_warmup`; values < 1 mean 1).
        metrics: a `kerasbert.serving.metrics.Metrics` or None; gets `observe_warmup`.
        synthesize: without a warmup file, call each signature once with `synthetic_inputs` (ours;
            TF Serving does nothing then).

    Returns:
        The number of records replayed (0 when the version has no warmup file).

    Raises:
        WarmupError: too many or bad records, a non-Predict record, or a failing request.

    Example:

    >>> run_warmup(manager_servable, manager.predict, 1)  # doctest: +SKIP
    3
    """
    import tensorflow as tf

    path = warmup_path(servable.path)
    if not os.path.isfile(path):
        _log.info("No warmup data file found for {name: %s version: %d}", servable.name, servable.version)
        if synthesize:
            run_synthetic_warmup(servable, predict)
        return 0
    start = time.monotonic()
    status = "OK"
    try:
        records = read_warmup_records(path)
        for i, log in enumerate(records, 1):
            if log.WhichOneof("log_type") != "predict_log":
                raise WarmupError(f"warmup record {i} is a {log.WhichOneof('log_type')}; only predict_log is served")
            request = log.predict_log.request
            try:
                inputs = {
                    name: tf.constant(tf.make_ndarray(proto), dtype=tf.dtypes.as_dtype(proto.dtype))
                    for name, proto in request.inputs.items()
                }
            except Exception as exc:
                raise WarmupError(f"warmup record {i} has an invalid input tensor") from exc
            for _ in range(max(1, int(num_request_iterations))):
                try:
                    predict(servable, request.model_spec.signature_name, inputs, list(request.output_filter))
                except Exception as exc:
                    raise WarmupError(f"warmup request {i} failed: {getattr(exc, 'message', exc)}") from exc
        _log.info(
            "Finished reading warmup data for {name: %s version: %d}: %d records x %d iterations in %.3f s",
            servable.name,
            servable.version,
            len(records),
            max(1, int(num_request_iterations)),
            time.monotonic() - start,
        )
        return len(records)
    except BaseException:
        status = "FAILED"
        raise
    finally:
        if metrics is not None:
            metrics.observe_warmup(servable.path, status, time.monotonic() - start)


def predict_log(inputs: Mapping[str, object], signature_name: str = "serving_default", model_name: str = ""):
    """A `PredictionLog` whose Predict request carries `inputs` (`{name: array-like}`).

    Example:

    >>> log = predict_log({"text": ["a fine film"]})
    >>> log.predict_log.request.model_spec.signature_name
    'serving_default'
    """
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    log = prediction_log_pb2.PredictionLog()
    request = log.predict_log.request
    request.model_spec.signature_name = signature_name
    if model_name:
        request.model_spec.name = model_name
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return log


def write_warmup_file(version_dir: str, logs: Iterable) -> str:
    """Writes `logs` (`PredictionLog`s) as `<version_dir>/assets.extra/tf_serving_warmup_requests`.

    Example:

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> path = write_warmup_file(d, [predict_log({"text": ["hello"]})])
    >>> len(read_warmup_records(path))
    1
    """
    import tensorflow as tf

    path = warmup_path(version_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


__all__ = [
    "MAX_RECORDS",
    "WARMUP_FILE",
    "WarmupError",
    "predict_log",
    "read_warmup_records",
    "run_synthetic_warmup",
    "run_warmup",
    "synthetic_inputs",
    "warmup_path",
    "write_warmup_file",
]
