"""The task abstraction: one module per task, registered by name.

A task owns everything that differs between BERT's jobs – its flags, how it
reads examples, turns them into features and targets, its head, loss,
metrics and evaluation, its serving signatures and its export metadata – so
that fine-tuning (`kerasbert.training.finetune`), export, client and UI are
generic over tasks. The hooks follow TF Model Garden's `Task`
(`build_model`, `build_inputs`, `build_losses`, `validation_step` +
`aggregate_logs`, here folded into `evaluate`) and keras-hub's pairing of a
task with its preprocessor.

Adding a task:

    @register
    class MyTask(Task):
        name = "my_task"          # also listed in kerasbert.contract.TASKS
        ...

and import its module in `kerasbert/tasks/registry.py`'s `TASK_MODULES`.

The driver's life cycle of a task:

    task = get_task(name).from_args(args)       # or Task(**options)
    train = task.read_split(path, "train")       # raises TaskDataError
    task.prepare(train, dev)                     # e.g. learns class names
    model = task.build_model(encoder, dropout=...)
    model.compile(loss=task.build_loss(), metrics=task.build_metrics(), ...)
    ds, n = task.build_inputs(train, preprocessor, batch_size, training=True)
    scores = task.evaluate(model, preprocessor, dev, batch_size)
    endpoints = task.serving_endpoints(preprocessor, model)
    meta = task.metadata()
    spec = task.get_config(); same = type(task).from_config(spec)
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar


class TaskDataError(ValueError):
    """A problem with the user's data or task flags; the message names the
    flag (or file and line) to fix. The CLI prints it as one line."""


_REGISTRY: dict[str, type] = {}


def register(cls):
    """Class decorator: makes a `Task` subclass available by `cls.name`."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"task {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


@dataclasses.dataclass
class Task:
    """Base class of tasks. Subclasses are dataclasses whose fields are the
    task's options (what `get_config` saves and `from_config` restores).

    Class attributes:
        name: registry key and `kerasbert.contract` task name.
        description: one line for `--help`.
        trainable: False for export-only tasks (embedding).
        primary_metric: the dev metric that says how good a model is.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    trainable: ClassVar[bool] = True
    primary_metric: ClassVar[str] = ""
    # The driver's --sequence_length default for this task (None: the driver's own).
    default_sequence_length: ClassVar[int | None] = None

    # ---- flags and spec ---------------------------------------------------
    @classmethod
    def add_arguments(cls, parser) -> None:
        """Adds the task's own flags to an argparse (group) `parser`.

        Flags shared by several tasks (e.g. the table columns) may be added
        by several tasks; `kerasbert.training.finetune` de-duplicates by
        flag name, so keep their definitions identical.
        """

    @classmethod
    def from_args(cls, args) -> Task:
        """The task configured by parsed command-line `args`."""
        return cls()

    def get_config(self) -> dict[str, Any]:
        """JSON-able options; `from_config(get_config())` rebuilds the task
        (with what `prepare` learned, e.g. class names)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Task:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in names})

    # ---- data ---------------------------------------------------------------
    def read_examples(self, path: str) -> Any:
        """Reads one file; returns a sized collection. Raises TaskDataError."""
        raise NotImplementedError

    def read_split(self, path: str, split: str) -> Any:
        """Reads the `split` ("train" or "dev") from `path`; the driver calls
        this. Default: `read_examples(path)` (a task whose splits can share
        one file, e.g. question answering by article, overrides it)."""
        return self.read_examples(path)

    def take(self, examples: Any, n: int) -> Any:
        """The first `n` examples (for `--max_train_examples` and `--max_dev_examples`)."""
        return examples[:n]

    def prepare(self, train: Any, dev: Any | None) -> None:
        """Learns what the task needs from the training data (label names...)
        and checks the dev set against it. Raises TaskDataError."""

    def describe(self) -> str:
        """A short summary for the run's start-up line."""
        return ""

    # ---- model --------------------------------------------------------------
    def build_model(self, encoder, dropout: float = 0.1):
        """Encoder + head as one `keras.Model` over BERT's input dict."""
        raise NotImplementedError

    def build_loss(self):
        raise NotImplementedError

    def build_metrics(self) -> list:
        """Keras metrics shown during training."""
        return []

    def build_inputs(self, examples, preprocessor, batch_size: int, training: bool = False, seed: int = 0):
        """`(tf.data.Dataset of (features, targets), number of rows)`.

        With `training`, shuffled and with whole batches only (when there
        are enough rows); the row count may exceed `len(examples)` (e.g.
        long sentences split into windows).
        """
        raise NotImplementedError

    # ---- evaluation -----------------------------------------------------------
    def evaluate(self, model, preprocessor, examples, batch_size: int = 32) -> dict[str, float]:
        """The task's dev metrics of `model` on `examples`; the first key is
        `primary_metric`."""
        raise NotImplementedError

    # ---- export -----------------------------------------------------------------
    def serving_endpoints(self, preprocessor, model) -> dict[str, tuple]:
        """`{signature_name: (fn, input_signature)}` taking raw strings; the
        names are those of `kerasbert.contract.signatures_for(self.name)`,
        less `metadata` (added by the exporter)."""
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        """The task's facts for `ExportMetadata.task_config`."""
        return self.get_config()

    @property
    def text_pair(self) -> bool:
        return False


def feature_predict_fn(task, model, head):
    """A `tf.function` from packed features (`token_ids`, `segment_ids`, `padding_mask`) to
    `head(model(features))`, traced once and cached on `task` for as long as `model` is the same object.

    Tasks that evaluate in Python on the model's outputs (tagging, question answering) share it.
    """
    import tensorflow as tf

    cached = getattr(task, "_predict_cache", None)
    if cached is not None and cached[0] is model:
        return cached[1]
    spec = {
        "token_ids": tf.TensorSpec([None, None], tf.int32),
        "segment_ids": tf.TensorSpec([None, None], tf.int32),
        "padding_mask": tf.TensorSpec([None, None], tf.bool),
    }

    @tf.function(input_signature=[spec])
    def predict(features):
        return head(model(features, training=False))

    task._predict_cache = (model, predict)
    return predict


def get_task(name: str) -> type:
    """The registered `Task` subclass called `name`.

    Raises:
        TaskDataError: unknown name (the message lists the known ones).
    """
    from kerasbert.tasks import registry  # imports every task module

    registry.load_all()
    if name not in _REGISTRY:
        raise TaskDataError(f"--task: unknown task {name!r}; choose one of {', '.join(task_names())}")
    return _REGISTRY[name]


def task_names(trainable_only: bool = False) -> list[str]:
    """Registered task names in `kerasbert.contract.TASKS` order (others
    after, as registered); the first trainable one is `--task`'s default."""
    from kerasbert import contract
    from kerasbert.tasks import registry

    registry.load_all()
    order = {name: i for i, name in enumerate(contract.TASKS)}
    names = sorted(_REGISTRY, key=lambda n: order.get(n, len(order)))
    return [n for n in names if _REGISTRY[n].trainable or not trainable_only]
