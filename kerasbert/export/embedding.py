"""Sentence-embedding SavedModels: raw text in, vectors out.

Same TF Serving layout, atomic write and loading rules as the classifier
exports (`kerasbert.export.saved_model`): the graph holds the tf-text
preprocessing and the Keras encoder + pooling, no `py_function`, so stock
TF Serving (with the tf-text ops) and a process importing only `tensorflow`
and `tensorflow_text` can run it.

Signatures:

- `serving_default`: `text` tf.string `[batch]` -> `embeddings` float32
  `[batch, dim]`.
- `tokens`: `text` tf.string `[batch]` -> `token_embeddings` float32
  `[batch, sequence_length, hidden]` (the per-token vectors that were
  pooled, zeros at padding), `tokens` tf.string `[batch, sequence_length]`
  (WordPiece strings, `[CLS]` and `[SEP]` included, "" at padding) and
  `mask` int32 `[batch, sequence_length]` (1 at real tokens). The length is
  always the export's `sequence_length`, so batches concatenate.

Batches are cut to their longest sentence before the encoder runs (a batch
of short sentences does not pay for `sequence_length` positions); padding is
masked either way, so the vectors do not depend on it. With
`jit_compile=True` the encoder + pooling run as one XLA computation (string
ops stay outside it) and the cut length is rounded up to a multiple of
`JIT_LENGTH_MULTIPLE` to bound the number of compiled shapes. Stock
`tensorflow_model_server` only runs such graphs when started with
`--xla_cpu_compilation_enabled=true`; exports without `jit_compile` need
no flag.

With `graph="fused"` (the default) both signatures run the encoder as
`kerasbert.export.fused_encoder.FusedBertEncoder` (the same function on 2-D
rows, in ops TF's oneDNN rewrites fuse); `mixed_precision="bfloat16"` stores
bfloat16 kernels and runs the matmuls in bfloat16 inside the graph, so stock
TF Serving needs no flag for it. `graph="keras"` serves the Keras model's own
graph.
"""

import os

import keras
import tensorflow as tf

from kerasbert import contract
from kerasbert.export.saved_model import export_task
from kerasbert.preprocessing.batching import cut_to_longest as _cut_to_longest

JIT_LENGTH_MULTIPLE = 16
DEFAULT_SEQUENCE_LENGTH = 128


class FusedEmbeddingModel(keras.layers.Layer):
    """`FusedBertEncoder` + the pooling of `build_embedding_model`: features in, the same output dict out.

    Example:

    >>> import numpy as np
    >>> from kerasbert.modeling import build_encoder
    >>> m = fused_embedding_model(build_encoder("tiny", 100), "mean", -1, True)
    >>> out = m({"token_ids": np.array([[2, 7, 3, 0]], "int32"),
    ...          "segment_ids": np.zeros((1, 4), "int32"),
    ...          "padding_mask": np.array([[1, 1, 1, 0]], bool)})
    >>> tuple(out["embeddings"].shape), tuple(out["token_embeddings"].shape)
    ((1, 128), (1, 4, 128))
    """

    def __init__(self, backbone, pooling, layer, l2_normalize, compute_dtype="float32", **kwargs):
        super().__init__(dtype="float32", **kwargs)
        from kerasbert.export.fused_encoder import FusedBertEncoder
        from kerasbert.tasks.embedding import _REDUCTIONS, L2Normalize, SequencePooling, _check_pooling, resolve_layer

        _check_pooling(pooling)
        num_layers = len(backbone.transformer_layers)
        self.index = resolve_layer(layer, num_layers)
        if pooling == "pooled" and self.index != num_layers:
            raise ValueError(f"pooling 'pooled' is BERT's pooler on the last layer; got layer {layer}")
        self.pooling = pooling
        depth = max(self.index, 1) if pooling == "first_last_avg" else self.index
        self.encoder = FusedBertEncoder(backbone, compute_dtype, num_layers=depth)
        self.pooled_dense = backbone.pooled_dense if pooling == "pooled" else None
        self.reduce = None if pooling == "pooled" else SequencePooling(_REDUCTIONS[pooling])
        self.normalize = L2Normalize() if l2_normalize else None
        self.built = True

    def call(self, features):
        states = self.encoder(features)
        tokens = states[self.index]
        if self.pooling == "pooled":
            embeddings = self.pooled_dense(tokens[:, 0, :])
        else:
            if self.pooling == "first_last_avg":
                tokens = (states[1] + tokens) / 2.0
            embeddings = self.reduce(tokens, features["padding_mask"])
        if self.normalize is not None:
            embeddings = self.normalize(embeddings)
        return {contract.EMBEDDINGS: embeddings, contract.TOKEN_EMBEDDINGS: tokens}


def fused_embedding_model(backbone, pooling="mean", layer=-1, l2_normalize=False, compute_dtype="float32"):
    """A `FusedEmbeddingModel`: what `build_embedding_model` computes, as the fused serving graph."""
    return FusedEmbeddingModel(backbone, pooling, layer, l2_normalize, compute_dtype)


def embedding_serving_fns(preprocessor, model, jit_compile=False):
    """The `serving_default` and `tokens` functions of an embedding export.

    Args:
        preprocessor: a `kerasbert.preprocessing.BertPreprocessor`.
        model: a model from `kerasbert.tasks.build_embedding_model` (or
            `fused_embedding_model`: any callable from features to that dict).
        jit_compile: run the encoder + pooling of `serving_default` with XLA.

    Returns:
        `{signature_name: (fn, input_signature)}` for
        `kerasbert.export.save_serving_archive`.

    Example (not run as a doctest):

        endpoints = embedding_serving_fns(pre, model)
        fn, _ = endpoints["serving_default"]
        fn(tf.constant(["a sentence"]))["embeddings"].shape  # [1, 384]
    """

    def run(features):
        return model(features, training=False) if isinstance(model, keras.Model) else model(features)

    def embeddings(features):
        return run(features)[contract.EMBEDDINGS]

    encode = tf.function(embeddings, jit_compile=True) if jit_compile else embeddings
    multiple = JIT_LENGTH_MULTIPLE if jit_compile else 1
    text_spec = [tf.TensorSpec([None], tf.string, name=contract.TEXT)]

    def serve(text):
        features = _cut_to_longest(preprocessor(text), multiple)
        return {contract.EMBEDDINGS: tf.cast(encode(features), tf.float32)}

    def tokens(text):
        full = preprocessor(text)
        mask = full["padding_mask"]
        vectors = run(_cut_to_longest(full))[contract.TOKEN_EMBEDDINGS]
        # Back to the full length, zeros at padding: every request has the same
        # shape, so clients can concatenate batches.
        vectors = tf.cast(vectors, tf.float32) * tf.cast(mask[:, : tf.shape(vectors)[1], None], tf.float32)
        vectors = tf.pad(vectors, [[0, 0], [0, tf.shape(mask)[1] - tf.shape(vectors)[1]], [0, 0]])
        strings = preprocessor.id_to_token(full["token_ids"])
        return {
            contract.TOKEN_EMBEDDINGS: vectors,
            contract.TOKENS: tf.where(mask, strings, tf.constant("", tf.string)),
            contract.MASK: tf.cast(mask, tf.int32),
        }

    return {contract.SERVING_DEFAULT: (serve, text_spec), contract.TOKENS_SIGNATURE: (tokens, text_spec)}


def check_compatible(backbone, preprocessor):
    """Raises ValueError when the preprocessor does not fit the encoder."""
    max_length = getattr(backbone, "max_sequence_length", None)
    if max_length is not None and preprocessor.sequence_length > max_length:
        raise ValueError(
            f"sequence_length {preprocessor.sequence_length} is longer than the encoder's position table ({max_length})"
        )
    if preprocessor.vocabulary_size > backbone.vocabulary_size:
        # (Fewer is fine: some checkpoints pad the embedding table.)
        raise ValueError(
            f"the vocabulary has {preprocessor.vocabulary_size} tokens but the encoder "
            f"embeds only {backbone.vocabulary_size}"
        )


def export_embedder(
    backbone,
    preprocessor,
    export_dir,
    model_name,
    pooling="mean",
    layer=-1,
    l2_normalize=False,
    jit_compile=False,
    version=None,
    metadata=None,
    graph="fused",
    mixed_precision="",
):
    """Exports a sentence-embedding SavedModel as `<export_dir>/<model_name>/<version>/`.

    A thin wrapper: `EmbeddingTask` + `kerasbert.export.export_task`.

    Args:
        backbone: a `keras_hub.models.BertBackbone` (e.g.
            `load_checkpoint(path).backbone`).
        preprocessor: a `BertPreprocessor` with the backbone's vocabulary;
            its `sequence_length` is the maximum length (longer text is
            truncated).
        export_dir, model_name, version: as `kerasbert.export.write_versioned`.
        pooling, layer, l2_normalize: as
            `kerasbert.tasks.build_embedding_model`.
        jit_compile: compile encoder + pooling with XLA (one compilation per
            batch shape; on 2 CPU cores it measured no faster than the
            default oneDNN kernels; stock TF Serving then needs
            `--xla_cpu_compilation_enabled=true`).
        metadata: extra entries for the export's metadata (`extra`).
        graph: "fused" (`FusedBertEncoder`, the default) or "keras" (the
            Keras model's own graph); the vectors agree to float32 rounding.
        mixed_precision: "" (float32) or "bfloat16" (bfloat16 matmuls in the
            graph; needs `graph="fused"`).

    Returns:
        The version folder written.

    Raises:
        ValueError: bad pooling/layer, or a `sequence_length` longer than the
            backbone's position table.

    Example (not run as a doctest):

        ckpt = load_checkpoint("all-MiniLM-L6-v2")
        pre = BertPreprocessor(ckpt.vocabulary_path, ckpt.lowercase, 128)
        export_embedder(ckpt.backbone, pre, "exports", "minilm", "mean", l2_normalize=True)
        # 'exports/minilm/1'
    """
    from kerasbert.tasks.embedding import EmbeddingTask

    check_compatible(backbone, preprocessor)
    task = EmbeddingTask(pooling, layer, l2_normalize, jit_compile, graph, mixed_precision)  # the fields' order
    model = task.build_model(backbone)
    return export_task(task, preprocessor, model, export_dir, model_name, version=version, extra=metadata)


def export_checkpoint_embedder(
    init_checkpoint, export_dir, model_name, sequence_length=None, metadata=None, log=None, **options
):
    """Loads a checkpoint (any format `load_checkpoint` reads) and exports it.

    Args:
        init_checkpoint: a Hugging Face / Google TF1 / keras-hub / kerasbert
            pretrained folder (see `kerasbert.modeling.checkpoints`).
        export_dir, model_name: where to write.
        sequence_length: maximum tokens per sentence, `[CLS]`/`[SEP]`
            included (default: 128, or the encoder's position table if
            shorter).
        metadata: extra metadata entries.
        log: called with one line saying which checkpoint format was loaded
            from where (`LoadedCheckpoint.describe`), e.g. `print`.
        **options: `pooling`, `layer`, `l2_normalize`, `jit_compile`,
            `graph`, `mixed_precision`, `version` (see `export_embedder`).

    Returns:
        The version folder written.

    Example (not run as a doctest):

        export_checkpoint_embedder("all-MiniLM-L6-v2", "exports", "minilm",
                                   pooling="mean", l2_normalize=True)  # 'exports/minilm/1'
    """
    from kerasbert.modeling.checkpoints import load_checkpoint
    from kerasbert.preprocessing.bert_preprocessor import BertPreprocessor

    checkpoint = load_checkpoint(init_checkpoint)
    if log is not None:
        log(checkpoint.describe())
    if sequence_length is None:
        sequence_length = min(DEFAULT_SEQUENCE_LENGTH, checkpoint.backbone.max_sequence_length)
    preprocessor = BertPreprocessor(
        checkpoint.vocabulary_path,
        lowercase=checkpoint.lowercase,
        sequence_length=sequence_length,
    )
    meta = {
        "checkpoint": os.path.basename(os.path.normpath(os.fspath(init_checkpoint))),
        "checkpoint_format": checkpoint.format,
        "hidden_activation": checkpoint.hidden_activation,
    }
    meta.update(metadata or {})
    return export_embedder(checkpoint.backbone, preprocessor, export_dir, model_name, metadata=meta, **options)
