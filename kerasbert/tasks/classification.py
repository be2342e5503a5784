"""Sequence classification and regression on BERT's pooled output.

The head is Google's `run_classifier.py` head: dropout on the pooled `[CLS]`
output, then one dense layer (`num_classes` logits, or one score for
regression), initialised with stddev 0.02.

`pooling="mean"` feeds the head the average of the last layer's token
vectors instead (padding excluded) and leaves the pooler unused. That is
how sentence-transformers checkpoints (e.g. all-MiniLM-L6-v2) were trained:
their sentence-embedding training never used the pooler.
"""

import dataclasses

import keras

from kerasbert.tasks.embedding import SequencePooling

TASK_KINDS = ("classification", "regression")
HEAD_POOLING = ("cls", "mean")


@dataclasses.dataclass
class TaskSpec:
    """What a fine-tuned model predicts.

    Attributes:
        kind: "classification" or "regression".
        class_names: class names in logit order (classification only).
        text_pair: whether the model reads sentence pairs.
    """

    kind: str = "classification"
    class_names: list = dataclasses.field(default_factory=list)
    text_pair: bool = False

    def __post_init__(self):
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task must be one of {TASK_KINDS}, got {self.kind!r}")
        if self.kind == "classification" and len(self.class_names) < 2:
            raise ValueError(
                f"classification needs at least 2 classes, got {self.class_names}"
            )

    @property
    def num_outputs(self):
        return len(self.class_names) if self.kind == "classification" else 1


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

    Example:

    >>> from kerasbert.modeling import build_encoder
    >>> model = build_classifier(build_encoder("tiny", 100),
    ...                          TaskSpec("classification", ["neg", "pos"]))
    >>> model.output_shape
    (None, 2)
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
        pooled = SequencePooling("mean", name="mean_pooling")(
            encoded["sequence_output"], inputs["padding_mask"]
        )
    x = keras.layers.Dropout(dropout, name="classifier_dropout")(pooled)
    outputs = keras.layers.Dense(
        task.num_outputs,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        name="logits" if task.kind == "classification" else "score_dense",
    )(x)
    if task.kind == "regression":
        outputs = keras.layers.Reshape((), name="score")(outputs)
    return keras.Model(inputs, outputs, name=f"bert_{task.kind}")
