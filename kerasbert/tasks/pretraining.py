"""BERT's pretraining model: masked language model + next-sentence prediction.

The heads are Google's `run_pretraining.py` heads:

* MLM (`cls/predictions`): gather the encoder output at the masked
  positions, Dense(hidden) + GELU + LayerNorm(eps 1e-12), then logits
  `h @ token_embeddings^T + output_bias`: the output weights are TIED to the
  token embedding, plus one bias per vocabulary entry. This is keras-hub's
  `MaskedLMHead(token_embedding=backbone.token_embedding)`, configured as BERT.
* NSP (`cls/seq_relationship`): Dense(2) on the pooled `[CLS]` output; label
  0 = IsNext, 1 = random segment.

Losses and accuracies are computed over real masked positions only (weight
1.0 in `sample_weights["mlm"]`). They are returned as SUMS and COUNTS
(`pretraining_sums`) so a distributed training loop can all-reduce the counts
and divide by the global count: the loss of a global batch is then the same
on 1 or N replicas, and with gradient accumulation.
"""

import keras
import keras_hub

# Keras names of the pretraining heads' weights -> `HEAD_KEYS` of
# `kerasbert.modeling.checkpoints` (Keras layout, kernels [in, out]).
MLM_HEAD_NAME = "mlm_head"
NSP_HEAD_NAME = "nsp_head"


def build_pretraining_model(backbone, name="bert_pretrainer"):
    """Encoder + MLM head (tied to the token embedding) + NSP head.

    The model's weights are float32 under any mixed-precision policy; its
    outputs are float32 logits.

    Args:
        backbone: a `keras_hub.models.BertBackbone` (e.g. from
            `kerasbert.modeling.build_encoder`).
        name: model name.

    Returns:
        A `keras.Model` taking the features of
        `kerasbert.data.pretraining.pretraining_dataset` (`token_ids`,
        `segment_ids`, `padding_mask`, `mask_positions`) and returning
        `{"mlm": [batch, predictions, vocabulary] logits, "nsp": [batch, 2]
        logits}`. The heads are reachable as `model.get_layer("mlm_head")`
        and `model.get_layer("nsp_head")`.

    Example:

    >>> import numpy as np
    >>> from kerasbert.modeling import build_encoder
    >>> model = build_pretraining_model(build_encoder("tiny", 100))
    >>> features = {"token_ids": np.ones((2, 8), "int32"),
    ...             "segment_ids": np.zeros((2, 8), "int32"),
    ...             "padding_mask": np.ones((2, 8), bool),
    ...             "mask_positions": np.array([[1, 2], [3, 0]], "int32")}
    >>> outputs = model(features)
    >>> tuple(outputs["mlm"].shape), tuple(outputs["nsp"].shape)
    ((2, 2, 100), (2, 2))
    """
    init = keras.initializers.TruncatedNormal(stddev=0.02)
    inputs = {
        "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
        "segment_ids": keras.Input((None,), dtype="int32", name="segment_ids"),
        "padding_mask": keras.Input((None,), dtype="bool", name="padding_mask"),
        "mask_positions": keras.Input((None,), dtype="int32", name="mask_positions"),
    }
    encoded = backbone({k: inputs[k] for k in ("token_ids", "segment_ids", "padding_mask")})
    mlm_logits = keras_hub.layers.MaskedLMHead(
        token_embedding=backbone.token_embedding,
        intermediate_activation="gelu",
        layer_norm_epsilon=1e-12,
        kernel_initializer=init,
        dtype=backbone.dtype_policy,
        name=MLM_HEAD_NAME,
    )(encoded["sequence_output"], mask_positions=inputs["mask_positions"])
    nsp_logits = keras.layers.Dense(2, kernel_initializer=init, dtype=backbone.dtype_policy, name=NSP_HEAD_NAME)(
        encoded["pooled_output"]
    )
    outputs = {
        # Logits in float32 for a stable softmax under mixed precision.
        "mlm": keras.layers.Activation("linear", dtype="float32", name="mlm")(mlm_logits),
        "nsp": keras.layers.Activation("linear", dtype="float32", name="nsp")(nsp_logits),
    }
    model = keras.Model(inputs, outputs, name=name)
    model.backbone = backbone
    return model


def pretraining_sums(labels, outputs, sample_weights):
    """Per-batch SUMS of the pretraining losses and hits, and their counts.

    Args:
        labels: `{"mlm": int [B, P], "nsp": int [B]}`.
        outputs: the model's `{"mlm": [B, P, V], "nsp": [B, 2]}` logits.
        sample_weights: `{"mlm": float [B, P], "nsp": float [B]}`; 0.0 marks
            padding predictions, which count for nothing.

    Returns:
        A dict of float32 scalars: `mlm_loss`, `mlm_correct`, `mlm_count`,
        `nsp_loss`, `nsp_correct`, `nsp_count` (losses are summed
        cross-entropies, counts are summed weights).

    Example:

    >>> import numpy as np
    >>> sums = pretraining_sums(
    ...     {"mlm": np.array([[1, 0]]), "nsp": np.array([0])},
    ...     {"mlm": np.array([[[0., 5.], [0., 0.]]]), "nsp": np.array([[3., 0.]])},
    ...     {"mlm": np.array([[1., 0.]]), "nsp": np.array([1.])})
    >>> {k: round(float(v), 4) for k, v in sums.items()}["mlm_correct"]
    1.0
    """
    ops = keras.ops
    result = {}
    for key in ("mlm", "nsp"):
        logits = ops.cast(outputs[key], "float32")
        target = ops.cast(labels[key], "int32")
        weight = ops.cast(sample_weights[key], "float32")
        xent = keras.losses.sparse_categorical_crossentropy(target, logits, from_logits=True)
        hits = ops.cast(
            ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), target),
            "float32",
        )
        result[f"{key}_loss"] = ops.sum(xent * weight)
        result[f"{key}_correct"] = ops.sum(hits * weight)
        result[f"{key}_count"] = ops.sum(weight)
    return result


def pretraining_loss(sums, mlm_count=None, nsp_count=None):
    """Total loss `mean MLM cross-entropy + mean NSP cross-entropy`.

    Args:
        sums: from `pretraining_sums` (possibly of a slice of the batch).
        mlm_count: number of real masked positions in the WHOLE (global)
            batch; defaults to `sums["mlm_count"]`.
        nsp_count: number of sequences in the whole batch; defaults to
            `sums["nsp_count"]`.

    Example:

    >>> float(pretraining_loss({"mlm_loss": 6.0, "mlm_count": 3.0,
    ...                         "nsp_loss": 1.0, "nsp_count": 2.0}))
    2.5
    """
    ops = keras.ops
    mlm_count = sums["mlm_count"] if mlm_count is None else mlm_count
    nsp_count = sums["nsp_count"] if nsp_count is None else nsp_count
    return ops.divide(sums["mlm_loss"], ops.maximum(mlm_count, 1.0)) + ops.divide(
        sums["nsp_loss"], ops.maximum(nsp_count, 1.0)
    )


def summarize(sums):
    """Mean losses and accuracies from (all-reduced) sums, as Python floats.

    Example:

    >>> summarize({"mlm_loss": 6.0, "mlm_correct": 1.0, "mlm_count": 3.0,
    ...            "nsp_loss": 1.0, "nsp_correct": 2.0, "nsp_count": 2.0})["nsp_accuracy"]
    1.0
    """
    out = {}
    for key in ("mlm", "nsp"):
        count = max(float(sums[f"{key}_count"]), 1.0)
        out[f"{key}_loss"] = float(sums[f"{key}_loss"]) / count
        out[f"{key}_accuracy"] = float(sums[f"{key}_correct"]) / count
    out["loss"] = out["mlm_loss"] + out["nsp_loss"]
    return out


def head_weights(model):
    """The pretraining heads' own weights as numpy arrays, keyed like
    `kerasbert.modeling.checkpoints.HEAD_KEYS` (the tied MLM output matrix is
    the backbone's token embedding, so it is not repeated here).

    Example:

    >>> from kerasbert.modeling import build_encoder
    >>> sorted(head_weights(build_pretraining_model(build_encoder("tiny", 50))))[:2]
    ['mlm_dense_bias', 'mlm_dense_kernel']
    """
    mlm = model.get_layer(MLM_HEAD_NAME)
    nsp = model.get_layer(NSP_HEAD_NAME)
    arrays = {
        "mlm_dense_kernel": mlm._intermediate_dense.kernel,
        "mlm_dense_bias": mlm._intermediate_dense.bias,
        "mlm_layer_norm_gamma": mlm._intermediate_layer_norm.gamma,
        "mlm_layer_norm_beta": mlm._intermediate_layer_norm.beta,
        "mlm_output_bias": mlm._bias,
        "nsp_kernel": nsp.kernel,
        "nsp_bias": nsp.bias,
    }
    return {k: keras.ops.convert_to_numpy(v) for k, v in arrays.items()}


def save_pretrained(model, directory, vocabulary_path, lowercase=True):
    """Writes the pretrained result as a keras-hub preset folder.

    `directory` gets the backbone (`backbone.save_to_preset`), a keras-hub
    `BertTokenizer` with the vocabulary (so it travels with the weights) and
    `pretraining_heads.weights.h5` (datasets named as in `head_weights`).
    `kerasbert.modeling.checkpoints.load_checkpoint(directory)` and
    `keras_hub.models.BertBackbone.from_preset(directory)` load it.

    Example:

    >>> save_pretrained(model, "out/pretrained", "vocab.txt")  # doctest: +SKIP
    """
    import h5py

    model.backbone.save_to_preset(directory)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=str(vocabulary_path), lowercase=bool(lowercase))
    tokenizer.save_to_preset(directory)
    with h5py.File(f"{directory}/pretraining_heads.weights.h5", "w") as f:
        for key, value in head_weights(model).items():
            f.create_dataset(key, data=value)


def load_head_weights(path):
    """Reads `pretraining_heads.weights.h5` into `{key: numpy array}`.

    Example:

    >>> heads = load_head_weights("out/pretrained/pretraining_heads.weights.h5")  # doctest: +SKIP
    """
    import h5py

    with h5py.File(path, "r") as f:
        return {key: f[key][()] for key in f.keys()}
