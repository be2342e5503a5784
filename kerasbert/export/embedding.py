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
"""

import os

import tensorflow as tf

from kerasbert import contract
from kerasbert.export.saved_model import export_task
from kerasbert.preprocessing.batching import cut_to_longest as _cut_to_longest

JIT_LENGTH_MULTIPLE = 16
DEFAULT_SEQUENCE_LENGTH = 128


def embedding_serving_fns(preprocessor, model, jit_compile=False):
    """The `serving_default` and `tokens` functions of an embedding export.

    Args:
        preprocessor: a `kerasbert.preprocessing.BertPreprocessor`.
        model: a model from `kerasbert.tasks.build_embedding_model`.
        jit_compile: run the encoder + pooling of `serving_default` with XLA.

    Returns:
        `{signature_name: (fn, input_signature)}` for
        `kerasbert.export.save_serving_archive`.

    Example (not run as a doctest):

        endpoints = embedding_serving_fns(pre, model)
        fn, _ = endpoints["serving_default"]
        fn(tf.constant(["a sentence"]))["embeddings"].shape  # [1, 384]
    """

    def embeddings(features):
        return model(features, training=False)[contract.EMBEDDINGS]

    encode = tf.function(embeddings, jit_compile=True) if jit_compile else embeddings
    multiple = JIT_LENGTH_MULTIPLE if jit_compile else 1
    text_spec = [tf.TensorSpec([None], tf.string, name=contract.TEXT)]

    def serve(text):
        features = _cut_to_longest(preprocessor(text), multiple)
        return {contract.EMBEDDINGS: tf.cast(encode(features), tf.float32)}

    def tokens(text):
        full = preprocessor(text)
        mask = full["padding_mask"]
        vectors = model(_cut_to_longest(full), training=False)[contract.TOKEN_EMBEDDINGS]
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
    task = EmbeddingTask(pooling=pooling, layer=layer, l2_normalize=l2_normalize, jit_compile=jit_compile)
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
            `version` (see `export_embedder`).

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
