"""`tf.distribute` strategies by name, and who writes checkpoints.

Shared by pretraining and fine-tuning: `--strategy` picks one of
`STRATEGIES`, batch sizes on the command line are GLOBAL (the strategy splits
them over replicas), and only the chief writes checkpoints, summaries and
exports (the other workers write to throw-away folders, as every worker must
take part in saving under `MultiWorkerMirroredStrategy`).

Example:

>>> strategy = get_strategy("default")
>>> strategy.num_replicas_in_sync, is_chief()
(1, True)
"""

import json
import os
import shutil
import tempfile

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu", "one_device")


def _tf_config():
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from e


def get_strategy(name="default", tpu=None):
    """Creates a `tf.distribute.Strategy` by name.

    Must be called before any other TensorFlow op runs (multi-worker and TPU
    strategies configure the runtime).

    Args:
        name: "default" (no distribution; whatever device TF picks),
            "mirrored" (all local GPUs, else all logical CPU devices), "multi_worker" (one process
            per worker, cluster from the `TF_CONFIG` environment variable),
            "tpu" (a TPU given by `tpu`), "one_device" (first GPU, else CPU).
        tpu: TPU name or grpc address for "tpu" ("" or "local" for a TPU VM).

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ValueError: unknown name, or "multi_worker" without a TF_CONFIG
            cluster.

    Example:

    >>> get_strategy("one_device").num_replicas_in_sync
    1
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # All local GPUs; without GPUs, all logical CPU devices (one unless
        # configured with `tf.config.set_logical_device_configuration`).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "multi_worker":
        if not _tf_config().get("cluster"):
            raise ValueError(
                "strategy 'multi_worker' needs the TF_CONFIG environment "
                'variable, e.g. {"cluster": {"worker": ["host1:port", '
                '"host2:port"]}, "task": {"type": "worker", "index": 0}}'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    # TPU.
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="" if tpu in (None, "local") else tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def task_info():
    """(task type, task index) of this process from TF_CONFIG; ("", 0) alone."""
    task = _tf_config().get("task", {})
    return task.get("type", ""), int(task.get("index", 0))


def is_chief():
    """Whether this process is the chief: the one that writes files.

    The chief is the task of type "chief" if the cluster has one, otherwise
    worker 0; a process without TF_CONFIG is its own chief. Evaluators are
    never chief.

    Example:

    >>> import json
    >>> from unittest import mock
    >>> cluster = {"worker": ["host1:2222", "host2:2222"]}
    >>> def as_task(index):
    ...     config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
    ...     return mock.patch.dict(os.environ, {"TF_CONFIG": json.dumps(config)})
    >>> with as_task(0):
    ...     is_chief()
    True
    >>> with as_task(1):
    ...     is_chief()
    False
    """
    config = _tf_config()
    cluster = config.get("cluster", {})
    task_type, index = task_info()
    if not task_type:
        return True
    if task_type == "chief":
        return True
    return task_type == "worker" and index == 0 and "chief" not in cluster


def write_dir(directory):
    """Folder this process should write `directory`'s files to.

    The chief writes to `directory`; other workers to a private temporary
    folder (remove it with `cleanup_write_dir`), because every worker has
    to run the (collective) save but only one copy must land.

    Example:

    >>> write_dir("out") == "out"  # in a single process
    True
    """
    if is_chief():
        return directory
    task_type, index = task_info()
    return tempfile.mkdtemp(prefix=f"kerasbert_{task_type}{index}_")


def cleanup_write_dir(directory, written):
    """Removes a non-chief worker's throw-away folder from `write_dir`."""
    if written != directory and os.path.isdir(written):
        shutil.rmtree(written, ignore_errors=True)


def worker_count(strategy):
    """Number of worker processes (input pipelines) of a strategy."""
    extended = strategy.extended
    if hasattr(extended, "_num_workers"):
        return int(extended._num_workers)
    return 1
