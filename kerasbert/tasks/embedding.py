"""Sentence embeddings from a BERT encoder: bert-as-service's pooling strategies.

A sentence vector is a reduction of the encoder's per-token vectors
(`hidden states`) over the real tokens of each sentence. We number hidden
states like Hugging Face's `output_hidden_states`: index 0 is the embedding
layer's output, index `i` (1..num_layers) the output of transformer block
`i`; negative indices count from the end, so -1 is the last block
(`sequence_output`) and -2 the second-to-last (bert-as-service's default
`pooling_layer`).

Pooling strategies (`POOLING_STRATEGIES`):

- "cls": the `[CLS]` vector of the chosen layer (bert-as-service
  `CLS_TOKEN`).
- "pooled": BERT's pooler output, `tanh(Dense([CLS] of the last layer))`
  (last layer only).
- "mean": average over the attention mask, i.e. every real token, `[CLS]`
  and `[SEP]` included, padding excluded (sentence-transformers' mean
  pooling; bert-as-service `REDUCE_MEAN`).
- "max": element-wise maximum over the real tokens (`REDUCE_MAX`).
- "mean_max": `concat([mean, max])`, twice the width (`REDUCE_MEAN_MAX`).
- "first_last_avg": mean pooling of the average of the first transformer
  block's output and the chosen layer (SimCSE / BERT-whitening's
  "first-last-avg": `hidden_states[1]` and `hidden_states[-1]` by default).

Padding never leaks: masked positions get weight 0 in the mean and `-inf`
in the max, so a sentence padded to any length gets the same vector.

Example:

>>> from kerasbert.modeling import build_encoder
>>> model = build_embedding_model(build_encoder("tiny", 100), "mean",
...                               l2_normalize=True)
>>> model.output["embeddings"].shape
(None, 128)
"""

import dataclasses
from typing import ClassVar

import keras
from keras import ops

from kerasbert import contract
from kerasbert.tasks.base import Task, TaskDataError, register

POOLING_STRATEGIES = ("cls", "pooled", "mean", "max", "mean_max", "first_last_avg")
GRAPHS = ("fused", "keras")

# The reduction `SequencePooling` applies after the per-token vectors are chosen.
_REDUCTIONS = {"cls": "cls", "mean": "mean", "max": "max", "mean_max": "mean_max", "first_last_avg": "mean"}


def _check_pooling(pooling):
    if pooling not in POOLING_STRATEGIES:
        raise ValueError(f"pooling must be one of {', '.join(POOLING_STRATEGIES)}, got {pooling!r}")


@keras.saving.register_keras_serializable(package="kerasbert")
class SequencePooling(keras.layers.Layer):
    """Reduces per-token vectors `[batch, length, dim]` to one per sequence.

    Only positions where `padding_mask` is true count. Computation is in
    float32 whatever the input dtype.

    Args:
        mode: "mean" (average of the real tokens), "max" (element-wise
            maximum of the real tokens), "mean_max" (both, concatenated:
            `[batch, 2 * dim]`) or "cls" (position 0).

    Call arguments:
        inputs: float tensor `[batch, length, dim]`.
        padding_mask: bool/int tensor `[batch, length]`, true at real tokens.
            Every row needs at least one (BERT always has `[CLS]`).

    Example:

    >>> import numpy as np
    >>> x = np.array([[[1., 4.], [3., 0.], [100., 100.]]])
    >>> mask = np.array([[True, True, False]])
    >>> np.asarray(SequencePooling("mean")(x, mask))
    array([[2., 2.]], dtype=float32)
    >>> np.asarray(SequencePooling("max")(x, mask))
    array([[3., 4.]], dtype=float32)
    """

    MODES = ("mean", "max", "mean_max", "cls")

    def __init__(self, mode="mean", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self.built = True

    def _mean(self, x, mask):
        weights = ops.cast(mask, "float32")[:, :, None]
        total = ops.sum(x * weights, axis=1)
        # sentence-transformers clamps the count at 1e-9 too.
        return total / ops.maximum(ops.sum(weights, axis=1), 1e-9)

    def _max(self, x, mask):
        mask = ops.cast(mask, "bool")[:, :, None]
        return ops.max(ops.where(mask, x, float("-inf")), axis=1)

    def call(self, inputs, padding_mask):
        x = ops.cast(inputs, "float32")
        if self.mode == "cls":
            return x[:, 0, :]
        if self.mode == "mean":
            return self._mean(x, padding_mask)
        if self.mode == "max":
            return self._max(x, padding_mask)
        return ops.concatenate([self._mean(x, padding_mask), self._max(x, padding_mask)], axis=-1)

    def compute_output_shape(self, inputs_shape, padding_mask_shape=None):
        dim = inputs_shape[-1]
        if self.mode == "mean_max" and dim is not None:
            dim = 2 * dim
        return (inputs_shape[0], dim)

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        return config


@keras.saving.register_keras_serializable(package="kerasbert")
class L2Normalize(keras.layers.Layer):
    """Scales each vector to unit L2 norm (`x / max(||x||, 1e-12)`).

    The same as `torch.nn.functional.normalize` (sentence-transformers'
    `Normalize` module): a zero vector stays zero.

    Example:

    >>> import numpy as np
    >>> np.asarray(L2Normalize()(np.array([[3., 4.]])))
    array([[0.6, 0.8]], dtype=float32)
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.built = True

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        norm = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
        return x / ops.maximum(norm, 1e-12)

    def compute_output_shape(self, input_shape):
        return input_shape


def hidden_states(backbone):
    """The backbone's hidden states as symbolic tensors of its functional graph.

    Args:
        backbone: a `keras_hub.models.BertBackbone` (built by its
            constructor, as `load_checkpoint`/`build_encoder` return it).

    Returns:
        A list of `num_layers + 1` Keras tensors `[batch, length, hidden]`:
        the embedding layer's output, then each transformer block's output.
        Combine them with `backbone.input` into a `keras.Model`.

    Example:

    >>> from kerasbert.modeling import build_encoder
    >>> len(hidden_states(build_encoder("tiny", 100)))
    3
    """
    return [backbone.embeddings_dropout.output] + [block.output for block in backbone.transformer_layers]


def resolve_layer(layer, num_layers):
    """Index of hidden state `layer` in `0..num_layers` (see module docstring).

    Raises:
        ValueError: if `layer` is outside `-(num_layers + 1)..num_layers`.

    Example:

    >>> resolve_layer(-2, 6), resolve_layer(-1, 6), resolve_layer(0, 6)
    (5, 6, 0)
    """
    layer = int(layer)
    if not -(num_layers + 1) <= layer <= num_layers:
        raise ValueError(
            f"layer {layer} does not exist: this encoder has {num_layers} transformer "
            f"layers, so layer must be in {-(num_layers + 1)}..{num_layers} (0 = the "
            f"embedding output, {num_layers} or -1 = the last layer, -2 = the "
            "second-to-last)"
        )
    return layer % (num_layers + 1)


def build_embedding_model(backbone, pooling="mean", layer=-1, l2_normalize=False):
    """A Keras model from BERT inputs to sentence embeddings.

    Args:
        backbone: a `keras_hub.models.BertBackbone` (e.g.
            `load_checkpoint(path).backbone`).
        pooling: one of `POOLING_STRATEGIES` (see the module docstring).
        layer: which hidden state to pool: 0 = embedding output, 1..N =
            transformer block outputs, negative = from the end (-1 = last,
            -2 = second-to-last). "pooled" needs the last layer.
        l2_normalize: scale every embedding to unit length (then cosine
            similarity is a dot product).

    Returns:
        A `keras.Model` taking BERT's input dict (`token_ids`,
        `segment_ids`, `padding_mask`, each `[batch, length]`) and returning
        a dict: `embeddings` float32 `[batch, dim]` (`2 * hidden` for
        "mean_max") and `token_embeddings` float32 `[batch, length, hidden]`
        (the per-token vectors that were pooled; for "pooled" and "cls" the
        chosen layer, for "first_last_avg" the averaged one). Shares the
        backbone's weights.

    Raises:
        ValueError: unknown pooling, a layer out of range, or "pooled" with
            another layer than the last.

    Example:

    >>> import numpy as np
    >>> from kerasbert.modeling import build_encoder
    >>> model = build_embedding_model(build_encoder("tiny", 100), "mean_max", layer=-2)
    >>> out = model({"token_ids": np.array([[2, 7, 3, 0]], "int32"),
    ...              "segment_ids": np.zeros((1, 4), "int32"),
    ...              "padding_mask": np.array([[1, 1, 1, 0]], bool)})
    >>> tuple(out["embeddings"].shape), tuple(out["token_embeddings"].shape)
    ((1, 256), (1, 4, 128))
    """
    _check_pooling(pooling)
    states = hidden_states(backbone)
    index = resolve_layer(layer, len(backbone.transformer_layers))
    inputs = backbone.input
    mask = inputs["padding_mask"]
    tokens = states[index]
    if pooling == "pooled":
        if index != len(states) - 1:
            raise ValueError(
                f"pooling 'pooled' is BERT's pooler on the last layer; got layer {layer} "
                "(use 'cls' for the [CLS] vector of another layer)"
            )
        embeddings = backbone.output["pooled_output"]
    else:
        if pooling == "first_last_avg":
            tokens = keras.layers.Average(name="first_last_average")([states[1], tokens])
        embeddings = SequencePooling(_REDUCTIONS[pooling], name=f"{pooling}_pooling")(tokens, mask)
    if l2_normalize:
        embeddings = L2Normalize(name="l2_normalize")(embeddings)
    embeddings = keras.layers.Activation("linear", dtype="float32", name=contract.EMBEDDINGS)(embeddings)
    tokens = keras.layers.Activation("linear", dtype="float32", name=contract.TOKEN_EMBEDDINGS)(tokens)
    return keras.Model(
        inputs,
        {contract.EMBEDDINGS: embeddings, contract.TOKEN_EMBEDDINGS: tokens},
        name=f"bert_embedding_{pooling}",
    )


# ---------------------------------------------------------------------------
# The registered task (export only: `python -m kerasbert.export --mode embedding`).
# ---------------------------------------------------------------------------
@register
@dataclasses.dataclass
class EmbeddingTask(Task):
    """Sentence embeddings from a (pretrained) encoder; nothing to train.

    Attributes:
        pooling: one of `POOLING_STRATEGIES`.
        layer: the hidden state to pool (see `resolve_layer`).
        l2_normalize: unit-length embeddings.
        jit_compile: XLA-compile encoder + pooling in the export.

    Example (not run as a doctest):

        task = EmbeddingTask(pooling="mean", l2_normalize=True)
        model = task.build_model(load_checkpoint(path).backbone)
        export_task(task, preprocessor, model, "exports", "minilm")
    """

    name: ClassVar[str] = contract.EMBEDDING
    description: ClassVar[str] = "text -> sentence vectors (export only)"
    trainable: ClassVar[bool] = False

    pooling: str = "mean"
    layer: int = -1
    l2_normalize: bool = False
    jit_compile: bool = False
    graph: str = "fused"
    mixed_precision: str = ""

    def __post_init__(self):
        try:
            _check_pooling(self.pooling)
        except ValueError as e:
            raise TaskDataError(f"--pooling: {e}") from e
        self.layer = int(self.layer)
        self.l2_normalize = bool(self.l2_normalize)
        self.jit_compile = bool(self.jit_compile)
        if self.graph not in GRAPHS:
            raise TaskDataError(f"--graph must be one of {', '.join(GRAPHS)}, got {self.graph!r}")
        if self.mixed_precision not in ("", "bfloat16"):
            raise TaskDataError(f"--mixed_precision: only bfloat16 is supported, got {self.mixed_precision!r}")
        if self.mixed_precision and self.graph != "fused":
            raise TaskDataError("--mixed_precision bfloat16 needs --graph fused (the default)")
        self._facts = {}
        self._backbone = None
        self._tracked = []

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument(
            "--pooling",
            default="mean",
            choices=POOLING_STRATEGIES,
            help="how token vectors become one sentence vector: cls ([CLS] vector), "
            "pooled (BERT's tanh pooler, last layer only), mean (average over real tokens "
            "incl. [CLS]/[SEP], as sentence-transformers), max (element-wise max over real "
            "tokens), mean_max (both concatenated, 2x wide), first_last_avg (mean of the "
            "average of the first and the chosen layer) (default: mean)",
        )
        parser.add_argument(
            "--layer",
            type=int,
            default=-1,
            help="hidden state to pool: 0 = embedding output, 1..N = transformer layers, "
            "negative counts from the end (-1 = last, -2 = second-to-last, "
            "bert-as-service's default) (default: -1)",
        )
        parser.add_argument(
            "--l2_normalize",
            action="store_true",
            help="scale embeddings to unit length (cosine similarity = dot product)",
        )
        parser.add_argument(
            "--jit_compile",
            action="store_true",
            help="XLA-compile encoder + pooling (compiles once per batch shape; on a "
            "2-core CPU it measured no faster than TF's oneDNN kernels); stock "
            "tensorflow_model_server then needs --xla_cpu_compilation_enabled=true",
        )
        parser.add_argument(
            "--graph",
            default="fused",
            choices=GRAPHS,
            help="fused: the encoder as 2-D MatMul+BiasAdd(+GELU) ops that TF's oneDNN rewrites fuse, same "
            "vectors (kerasbert.export.fused_encoder); keras: the Keras model's own graph (default: fused)",
        )
        parser.add_argument(
            "--mixed_precision",
            default="",
            choices=("", "bfloat16"),
            help="bfloat16: bfloat16 kernels and matmuls in the exported graph (float32 residuals, layer norm, "
            "softmax, pooling), for CPUs with AVX512_BF16/AMX; stock TF Serving needs no flag for it "
            "(default: float32)",
        )

    @classmethod
    def from_args(cls, args):
        return cls(
            pooling=args.pooling,
            layer=args.layer,
            l2_normalize=args.l2_normalize,
            jit_compile=bool(args.jit_compile),
            graph=getattr(args, "graph", "fused"),
            mixed_precision=getattr(args, "mixed_precision", "") or "",
        )

    def describe(self):
        return (
            f"pooling={self.pooling} layer={self.layer}"
            f"{' l2' if self.l2_normalize else ''}{' xla' if self.jit_compile else ''}"
            f" graph={self.graph}{' bf16' if self.mixed_precision else ''}"
        )

    def build_model(self, encoder, dropout=0.1):
        """The pooling model (`build_embedding_model`); `dropout` is unused
        (an embedding model runs with `training=False`)."""
        model = build_embedding_model(encoder, self.pooling, self.layer, self.l2_normalize)
        self._backbone = encoder
        num_layers = len(encoder.transformer_layers)
        self._facts = {
            "layer_index": resolve_layer(self.layer, num_layers),
            "num_layers": num_layers,
            "embedding_dim": int(model.output[contract.EMBEDDINGS].shape[-1]),
            "hidden_dim": int(encoder.hidden_dim),
        }
        return model

    def serving_endpoints(self, preprocessor, model):
        from kerasbert.export.embedding import embedding_serving_fns, fused_embedding_model

        encode = model
        if self.graph == "fused" and self._backbone is not None:
            encode = fused_embedding_model(
                self._backbone, self.pooling, self.layer, self.l2_normalize, self.mixed_precision or "float32"
            )
            self._tracked = [encode]
        return embedding_serving_fns(preprocessor, encode, jit_compile=self.jit_compile)

    def export_trackables(self):
        """Layers the serving graph uses besides the model (the fused encoder's weights)."""
        return list(self._tracked)

    def metadata(self):
        return {**self.get_config(), **self._facts}
