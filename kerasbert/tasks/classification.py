"""Sequence classification and regression on BERT's pooled output.

Two registered tasks read the same TSV/CSV tables (`kerasbert.data.tables`):

- `ClassificationTask` ("classification"): labels are class names; softmax
  cross-entropy; dev accuracy, F1 and MCC; the export returns
  `probabilities`, `label_ids`, `labels` and `class_names`.
- `RegressionTask` ("regression"): labels are numbers (STS-B); mean squared
  error; dev Pearson, Spearman and their mean; the export returns `score`.

The head is Google's `run_classifier.py` head: dropout on the pooled `[CLS]`
output, then one dense layer (`num_classes` logits, or one score for
regression), initialised with stddev 0.02.

`pooling="mean"` feeds the head the average of the last layer's token
vectors instead (padding excluded) and leaves the pooler unused. That is
how sentence-transformers checkpoints (e.g. all-MiniLM-L6-v2) were trained:
their sentence-embedding training never used the pooler.
"""

import dataclasses
from typing import Any, ClassVar

import keras

from kerasbert import contract
from kerasbert.tasks.base import Task, TaskDataError, register
from kerasbert.tasks.embedding import SequencePooling

TASK_KINDS = (contract.CLASSIFICATION, contract.REGRESSION)
HEAD_POOLING = ("cls", "mean")
FORMATS = ("auto", "tsv", "csv")


@dataclasses.dataclass
class TaskSpec:
    """What a fine-tuned model predicts (the head's shape).

    Kept for `build_classifier` callers; the registered tasks below carry
    the same facts.

    Attributes:
        kind: "classification" or "regression".
        class_names: class names in logit order (classification only).
        text_pair: whether the model reads sentence pairs.
    """

    kind: str = contract.CLASSIFICATION
    class_names: list = dataclasses.field(default_factory=list)
    text_pair: bool = False

    def __post_init__(self):
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task must be one of {TASK_KINDS}, got {self.kind!r}")
        if self.kind == contract.CLASSIFICATION and len(self.class_names) < 2:
            raise ValueError(f"classification needs at least 2 classes, got {self.class_names}")

    @property
    def num_outputs(self):
        return len(self.class_names) if self.kind == contract.CLASSIFICATION else 1


def build_classifier(encoder, task, dropout=0.1, pooling="cls"):
    """Encoder + classification/regression head as one Keras model.

    Args:
        encoder: a `keras_hub.models.BertBackbone`.
        task: a `TaskSpec`.
        dropout: dropout rate on the pooled output.
        pooling: "cls" (Google's head: the pooler's `tanh(Dense([CLS]))`) or
            "mean" (mean of the last layer over the real tokens).

    Returns:
        A `keras.Model` taking BERT's input dict (`token_ids`,
        `segment_ids`, `padding_mask`) and returning logits `[batch, classes]`
        (classification) or scores `[batch]` (regression).

    Example (not run as a doctest):

        model = build_classifier(build_encoder("tiny", 100),
                                 TaskSpec("classification", ["neg", "pos"]))
        model.output_shape  # (None, 2)
    """
    inputs = {
        "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
        "segment_ids": keras.Input((None,), dtype="int32", name="segment_ids"),
        "padding_mask": keras.Input((None,), dtype="bool", name="padding_mask"),
    }
    if pooling not in HEAD_POOLING:
        raise ValueError(f"pooling must be one of {HEAD_POOLING}, got {pooling!r}")
    encoded = encoder(inputs)
    if pooling == "cls":
        pooled = encoded["pooled_output"]
    else:
        pooled = SequencePooling("mean", name="mean_pooling")(encoded["sequence_output"], inputs["padding_mask"])
    x = keras.layers.Dropout(dropout, name="classifier_dropout")(pooled)
    classify = task.kind == contract.CLASSIFICATION
    outputs = keras.layers.Dense(
        task.num_outputs,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        name="logits" if classify else "score_dense",
        dtype="float32",  # float32 logits under a mixed-precision policy too (a stable loss)
    )(x)
    if not classify:
        outputs = keras.layers.Reshape((), name="score", dtype="float32")(outputs)
    return keras.Model(inputs, outputs, name=f"bert_{task.kind}")


def _split(value):
    """A comma-separated flag value (or a list) as a list of stripped names."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items]


def _look_like_scores(names):
    """True when the distinct labels are numbers and some are not integers."""
    try:
        values = [float(n) for n in names]
    except ValueError:
        return False
    return any(v != int(v) for v in values)


def _text_spec(name):
    import tensorflow as tf

    return tf.TensorSpec([None], tf.string, name=name)


@dataclasses.dataclass
class TableTask(Task):
    """Shared part of the two table tasks: columns, format, head pooling.

    Attributes:
        text_column, text_pair_column, label_column: header names or 0-based
            indices (`--text_column` ...); `text_pair_column` makes it a
            sentence-pair task.
        format: "auto" (.csv is CSV, anything else TSV), "tsv" or "csv".
        no_header: the files have no header row.
        pooling: what the head reads, "cls" or "mean" (see the module doc).
        pad_to_sequence_length: feed every batch at `--sequence_length`
            (the old behaviour); default: each batch is cut to its longest
            row, rounded up to a multiple of 8 (`tables.cut_padding`).
    """

    text_column: Any = "sentence"
    text_pair_column: Any = None
    label_column: Any = "label"
    format: str = "auto"
    no_header: bool = False
    pooling: str = "cls"
    pad_to_sequence_length: bool = False

    def __post_init__(self):
        if self.pooling not in HEAD_POOLING:
            raise TaskDataError(f"--pooling must be one of {', '.join(HEAD_POOLING)}, got {self.pooling!r}")
        if self.format not in FORMATS:
            raise TaskDataError(f"--format {self.format}: {self.name} reads {', '.join(FORMATS)}")

    # ---- flags ------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument(
            "--format",
            default="auto",
            choices=FORMATS,
            help="file format; auto: .csv is CSV, anything else TSV (default: auto)",
        )
        parser.add_argument(
            "--no_header", action="store_true", help="files have no header row; give columns as 0-based indices"
        )
        parser.add_argument(
            "--text_column",
            default="sentence",
            help="column with the text: header name or 0-based index (default: sentence)",
        )
        parser.add_argument(
            "--text_pair_column", default=None, help="column with the second text, for sentence-pair tasks"
        )
        parser.add_argument("--label_column", default="label", help="column with the label or score (default: label)")
        parser.add_argument(
            "--pooling",
            default="cls",
            choices=HEAD_POOLING,
            help="what the head reads: cls = BERT's pooler on [CLS] (Google's "
            "head, default); mean = the mean of the last layer's token vectors",
        )
        parser.add_argument(
            "--pad_to_sequence_length",
            action="store_true",
            help="feed every batch padded to --sequence_length; default: each batch is cut to its longest "
            "row (rounded up to a multiple of 8), which gives the same outputs with less compute",
        )

    @classmethod
    def _table_options(cls, args):
        return {
            name: getattr(args, name)
            for name in (
                "text_column",
                "text_pair_column",
                "label_column",
                "format",
                "no_header",
                "pooling",
                "pad_to_sequence_length",
            )
            if getattr(args, name, None) is not None
        }

    # ---- data -------------------------------------------------------------
    @property
    def text_pair(self):
        return self.text_pair_column is not None

    def read_examples(self, path):
        from kerasbert.data import tables

        columns = tables.Columns(self.text_column, self.text_pair_column, self.label_column)
        try:
            return tables.read_examples(path, columns, fmt=self.format, header=not self.no_header)
        except tables.TableError as e:
            raise TaskDataError(str(e)) from e

    def take(self, examples, n):
        from kerasbert.data import tables

        return tables.Examples(
            examples.texts[:n],
            examples.text_pairs[:n] if examples.text_pairs is not None else None,
            examples.labels[:n] if examples.labels is not None else None,
            examples.path,
        )

    def _encode(self, examples):
        """The targets of `examples` (int32 class ids or float32 scores)."""
        raise NotImplementedError

    def build_inputs(self, examples, preprocessor, batch_size, training=False, seed=0):
        from kerasbert.data import tables

        return (
            tables.make_dataset(
                examples,
                preprocessor,
                self._encode(examples),
                batch_size,
                shuffle=training,
                seed=seed,
                drop_remainder=training and len(examples) >= batch_size,
                pad_to_sequence_length=self.pad_to_sequence_length,
            ),
            len(examples),
        )

    def _predict(self, model, preprocessor, examples, batch_size):
        from kerasbert.data import tables

        ds = tables.make_dataset(
            examples, preprocessor, None, batch_size, pad_to_sequence_length=self.pad_to_sequence_length
        )
        return model.predict(ds, verbose=0)

    # ---- model ------------------------------------------------------------
    def _spec(self):
        raise NotImplementedError

    def build_model(self, encoder, dropout=0.1):
        return build_classifier(encoder, self._spec(), dropout=dropout, pooling=self.pooling)

    def _serve(self, preprocessor, outputs):
        """`{serving_default: (fn, input_signature), tokens: ...}` over `outputs(features)`."""
        from kerasbert.export.saved_model import text_tokens_endpoint

        tokens = text_tokens_endpoint(preprocessor)
        if self.text_pair:

            def serve(text, text_pair):
                return outputs(preprocessor((text, text_pair)))

            pair_spec = [_text_spec(contract.TEXT), _text_spec(contract.TEXT_PAIR)]
            return {contract.SERVING_DEFAULT: (serve, pair_spec), contract.TOKENS_SIGNATURE: tokens}

        def serve(text):
            return outputs(preprocessor(text))

        return {contract.SERVING_DEFAULT: (serve, [_text_spec(contract.TEXT)]), contract.TOKENS_SIGNATURE: tokens}


@register
@dataclasses.dataclass
class ClassificationTask(TableTask):
    """Text (pair) classification.

    Attributes:
        labels: the class labels as they are in the files, in output order
            (`--labels`); default: the sorted distinct training labels
            (numeric order for integers).
        label_names: what the export calls each class (`--label_names`), e.g.
            `["negative", "positive"]` for GLUE's "0"/"1"; default: the
            labels themselves.
        class_names: the labels in logit order, learned by `prepare` (or
            given when restoring).

    Example (not run as a doctest):

        task = ClassificationTask(label_names=["negative", "positive"])
        train = task.read_examples("train.tsv")
        task.prepare(train, None)
        task.display_names  # ['negative', 'positive']
    """

    name: ClassVar[str] = contract.CLASSIFICATION
    description: ClassVar[str] = "labels are class names (default)"
    primary_metric: ClassVar[str] = "accuracy"

    labels: list | None = None
    label_names: list | None = None
    class_names: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        super().__post_init__()
        self.labels = _split(self.labels)
        self.label_names = _split(self.label_names)
        self.class_names = list(self.class_names or [])
        if self.labels is not None and (not all(self.labels) or len(set(self.labels)) != len(self.labels)):
            raise TaskDataError(f"--labels must be distinct, non-empty names, got {self.labels}")
        if self.label_names is not None and not all(self.label_names):
            raise TaskDataError(f"--label_names must be non-empty names, got {self.label_names}")

    @classmethod
    def add_arguments(cls, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--labels",
            default=None,
            help="comma-separated class labels as in the files, in output order "
            "(default: sorted distinct training labels, numeric order for "
            "integers)",
        )
        parser.add_argument(
            "--label_names",
            default=None,
            help="comma-separated names the export returns for the classes, in "
            "the same order (e.g. negative,positive for GLUE's 0,1), or "
            "label=name pairs (0=negative,1=positive)",
        )

    @classmethod
    def from_args(cls, args):
        options = cls._table_options(args)
        for name in ("labels", "label_names"):
            if getattr(args, name, None):
                options[name] = getattr(args, name)
        return cls(**options)

    # ---- data -------------------------------------------------------------
    def prepare(self, train, dev):
        from kerasbert.data import tables

        if train.labels is None:
            raise TaskDataError(f"--label_column: {train.path} has no labels")
        if not self.class_names:
            try:
                names = tables.class_names_from_labels(train.labels, self.labels)
            except tables.TableError as e:
                raise TaskDataError(str(e)) from e
            if not self.labels and _look_like_scores(names):
                raise TaskDataError(
                    f"labels such as {names[1]!r} look like real-valued scores; use "
                    "--task regression (or pass --labels to treat them as classes)"
                )
            if len(names) < 2:
                raise TaskDataError(f"only one class ({names}) in {train.path}; check --label_column")
            self.class_names = names
        _ = self.display_names  # checks --label_names against the classes
        self._encode(train)
        if dev is not None:
            self._encode(dev)

    @property
    def display_names(self):
        """The class names the export returns (`--label_names` applied)."""
        names = list(self.class_names)
        given = self.label_names
        if not given:
            return names
        if all("=" in item for item in given):
            mapping = dict(item.split("=", 1) for item in given)
            mapping = {k.strip(): v.strip() for k, v in mapping.items()}
            unknown = sorted(set(mapping) - set(names))
            if unknown:
                raise TaskDataError(f"--label_names: {unknown} are not classes; the classes are {names}")
            renamed = [mapping.get(n, n) for n in names]
        else:
            if len(given) != len(names):
                raise TaskDataError(
                    f"--label_names has {len(given)} names but there are {len(names)} classes "
                    f"{names}; give one name per class in that order (or label=name pairs)"
                )
            renamed = list(given)
        if len(set(renamed)) != len(renamed):
            raise TaskDataError(f"--label_names must give distinct names, got {renamed}")
        return renamed

    def describe(self):
        shown = self.display_names
        renamed = f" named {shown}" if shown != self.class_names else ""
        return f"classes={self.class_names}{renamed} pair={self.text_pair}"

    def _encode(self, examples):
        from kerasbert.data import tables

        if examples.labels is None:
            raise TaskDataError(f"--label_column: {examples.path} has no labels")
        try:
            return tables.encode_labels(examples.labels, self.name, self.class_names)
        except tables.TableError as e:
            raise TaskDataError(str(e)) from e

    # ---- model ------------------------------------------------------------
    def _spec(self):
        return TaskSpec(self.name, self.display_names, self.text_pair)

    def build_loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def build_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def evaluate(self, model, preprocessor, examples, batch_size=32):
        from kerasbert.training import metrics as M

        y = self._predict(model, preprocessor, examples, batch_size)
        return M.classification_metrics(self._encode(examples), y.argmax(-1), len(self.class_names))

    # ---- export -----------------------------------------------------------
    def serving_endpoints(self, preprocessor, model):
        import tensorflow as tf

        class_names = tf.constant(self.display_names, dtype=tf.string)

        def outputs(features):
            probabilities = tf.nn.softmax(tf.cast(model(features, training=False), tf.float32), axis=-1)
            label_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
            batch = tf.shape(probabilities)[0]
            return {
                contract.PROBABILITIES: probabilities,
                contract.LABEL_IDS: label_ids,
                contract.LABELS: tf.gather(class_names, label_ids),
                contract.CLASS_NAMES: tf.tile(class_names[tf.newaxis, :], [batch, 1]),
            }

        return self._serve(preprocessor, outputs)

    def metadata(self):
        return {
            "class_names": self.display_names,
            "labels": list(self.class_names),
            "text_pair": self.text_pair,
            "pooling": self.pooling,
        }


@register
@dataclasses.dataclass
class RegressionTask(TableTask):
    """Text (pair) regression: one real-valued score per example (STS-B)."""

    name: ClassVar[str] = contract.REGRESSION
    description: ClassVar[str] = "labels are numbers"
    primary_metric: ClassVar[str] = "pearson"

    @classmethod
    def from_args(cls, args):
        for flag in ("labels", "label_names"):
            if getattr(args, flag, None):
                raise TaskDataError(f"--{flag} is for classification; drop it or use --task classification")
        return cls(**cls._table_options(args))

    def prepare(self, train, dev):
        if train.labels is None:
            raise TaskDataError(f"--label_column: {train.path} has no labels")
        self._encode(train)
        if dev is not None:
            self._encode(dev)

    def describe(self):
        return f"pair={self.text_pair}"

    def _encode(self, examples):
        from kerasbert.data import tables

        if examples.labels is None:
            raise TaskDataError(f"--label_column: {examples.path} has no labels")
        try:
            return tables.encode_labels(examples.labels, self.name)
        except tables.TableError as e:
            raise TaskDataError(str(e)) from e

    def _spec(self):
        return TaskSpec(self.name, [], self.text_pair)

    def build_loss(self):
        return keras.losses.MeanSquaredError()

    def build_metrics(self):
        return [keras.metrics.MeanAbsoluteError(name="mae")]

    def evaluate(self, model, preprocessor, examples, batch_size=32):
        from kerasbert.training import metrics as M

        y = self._predict(model, preprocessor, examples, batch_size)
        return M.regression_metrics(self._encode(examples), y.reshape(-1))

    def serving_endpoints(self, preprocessor, model):
        import tensorflow as tf

        def outputs(features):
            return {contract.SCORE: tf.cast(model(features, training=False), tf.float32)}

        return self._serve(preprocessor, outputs)

    def metadata(self):
        return {"class_names": [], "text_pair": self.text_pair, "pooling": self.pooling}
