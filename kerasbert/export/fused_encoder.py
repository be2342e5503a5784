"""A BERT forward pass written for TF's CPU graph rewrites, for the embedding export's serving graph.

The Keras/keras-hub graph of a `BertBackbone` leaves oneDNN little to fuse: every `Dense` on a
`[batch, length, hidden]` tensor becomes Tensordot's Transpose + Reshape + MatMul + Reshape before its
BiasAdd, the exact GELU is five Eigen element-wise ops after it, attention is three separate Einsums
(query, key, value), and layer norm is eight element-wise ops. Profiled on MiniLM (STS-B sentences,
batch 64), GELU alone took 16% of the time and the Einsums/MatMuls ran unfused.

`FusedBertEncoder` computes the same function on `[batch * length, hidden]` rows:

- one MatMul + BiasAdd for query, key and value together (their kernels concatenated, the query's
  1/sqrt(head_dim) folded into its kernel and bias);
- the feed-forward MatMul + BiasAdd + exact GELU written as grappler's remapper pattern
  (`x * ((erf(x / sqrt(2)) + 1) * 0.5)`), which it replaces by one oneDNN `_MklFusedMatMul`
  with a `GeluExact` post-op;
- the attention mask as an additive bias (keys only, as keras-hub merges the padding mask).

`compute_dtype="bfloat16"` keeps bfloat16 copies of the matmul kernels and runs every MatMul / BatchMatMul
in bfloat16 (oneDNN uses AVX512_BF16 / AMX where the CPU has them), with the residual stream, layer norms,
softmax and pooling in float32. That is mixed precision inside the exported graph, so stock
`tensorflow_model_server` runs it without `--mixed_precision=bfloat16`. On a CPU without bf16 instructions
oneDNN emulates bfloat16 and is slower than float32.

Outputs agree with the Keras model to float32 rounding (tests: `tests/test_embedding_fused.py`).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

COMPUTE_DTYPES = ("float32", "bfloat16")
_SQRT_HALF = 0.7071067811865476


def _dense_weights(dense):
    kernel, bias = (np.asarray(w) for w in dense.get_weights())
    return kernel.reshape(kernel.shape[0], -1) if kernel.ndim == 3 else kernel, bias.reshape(-1)


def fused_activation_name(backbone) -> str:
    """The feed-forward activation's name as the fused graph knows it: 'gelu' (exact) or 'keras'."""
    return "gelu" if getattr(backbone, "hidden_activation", "gelu_approximate") == "gelu" else "keras"


class FusedBertEncoder(keras.layers.Layer):
    """BERT's hidden states from `token_ids`/`segment_ids`/`padding_mask`, computed on 2-D rows.

    Holds its own copies of the backbone's weights (fused QKV kernels; bfloat16 kernels for
    `compute_dtype="bfloat16"`), so an export tracks this layer instead of the backbone.

    Args:
        backbone: a `keras_hub.models.BertBackbone` (post-norm BERT, as every kerasbert checkpoint).
        compute_dtype: "float32" or "bfloat16" (the matmuls; see the module docstring).
        num_layers: how many transformer blocks to run (the pooled layer's index; default all).

    Example:

    >>> from kerasbert.modeling import build_encoder
    >>> backbone = build_encoder("tiny", 100)
    >>> enc = FusedBertEncoder(backbone)
    >>> states = enc({"token_ids": np.array([[2, 7, 3, 0]], "int32"),
    ...               "segment_ids": np.zeros((1, 4), "int32"),
    ...               "padding_mask": np.array([[1, 1, 1, 0]], bool)})
    >>> len(states), tuple(states[-1].shape)
    (3, (1, 4, 128))
    """

    def __init__(self, backbone, compute_dtype="float32", num_layers=None, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        if compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}")
        self.compute = compute_dtype
        self.activation = fused_activation_name(backbone)
        blocks = backbone.transformer_layers[: len(backbone.transformer_layers) if num_layers is None else num_layers]
        self.num_heads = int(backbone.num_heads)
        self.hidden = int(backbone.hidden_dim)
        self.head_dim = self.hidden // self.num_heads
        self._keras_activations = [b._feedforward_intermediate_dense.activation for b in blocks]
        mm = "bfloat16" if compute_dtype == "bfloat16" else "float32"

        def add(name, value, dtype="float32"):
            value = np.asarray(value, "float32")
            w = self.add_weight(name=name, shape=value.shape, dtype=dtype, trainable=False, initializer="zeros")
            w.assign(tf.cast(value, dtype))
            return w

        emb = backbone.embeddings_layer_norm
        self.token_table = add("token_embedding", backbone.token_embedding.embeddings)
        self.position_table = add("position_embedding", backbone.position_embedding.position_embeddings)
        self.segment_table = add("segment_embedding", backbone.segment_embedding.embeddings)
        self.embedding_norm = (add("embedding_gamma", emb.gamma), add("embedding_beta", emb.beta), float(emb.epsilon))
        self.blocks = []
        scale = 1.0 / math.sqrt(self.head_dim)
        for i, block in enumerate(blocks):
            att = block._self_attention_layer
            qkv = (att._query_dense, att._key_dense, att._value_dense)
            (wq, bq), (wk, bk), (wv, bv) = (_dense_weights(d) for d in qkv)
            wo, bo = att._output_dense.get_weights()
            wo = np.asarray(wo).reshape(self.hidden, -1)
            w1, b1 = _dense_weights(block._feedforward_intermediate_dense)
            w2, b2 = _dense_weights(block._feedforward_output_dense)
            ln1, ln2 = block._self_attention_layer_norm, block._feedforward_layer_norm
            self.blocks.append(
                {
                    "qkv_kernel": add(f"l{i}_qkv_kernel", np.concatenate([wq * scale, wk, wv], axis=1), mm),
                    "qkv_bias": add(f"l{i}_qkv_bias", np.concatenate([bq * scale, bk, bv]), mm),
                    "out_kernel": add(f"l{i}_out_kernel", wo, mm),
                    "out_bias": add(f"l{i}_out_bias", np.asarray(bo).reshape(-1), mm),
                    "norm1": (add(f"l{i}_ln1_gamma", ln1.gamma), add(f"l{i}_ln1_beta", ln1.beta), float(ln1.epsilon)),
                    "ffn_kernel": add(f"l{i}_ffn_kernel", w1, mm),
                    "ffn_bias": add(f"l{i}_ffn_bias", b1, mm),
                    "ffn_out_kernel": add(f"l{i}_ffn_out_kernel", w2, mm),
                    "ffn_out_bias": add(f"l{i}_ffn_out_bias", b2, mm),
                    "norm2": (add(f"l{i}_ln2_gamma", ln2.gamma), add(f"l{i}_ln2_beta", ln2.beta), float(ln2.epsilon)),
                }
            )
        self.built = True

    # --- pieces
    @staticmethod
    def _layer_norm(x, norm):
        gamma, beta, epsilon = norm
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        variance = tf.reduce_mean(tf.math.squared_difference(x, mean), axis=-1, keepdims=True)
        inv = tf.math.rsqrt(variance + epsilon) * gamma
        return x * inv + (beta - mean * inv)

    def _matmul(self, x, kernel, bias):
        """`x @ kernel + bias` as MatMul + BiasAdd (fused by oneDNN); x cast to the kernel's dtype."""
        return tf.nn.bias_add(tf.matmul(tf.cast(x, kernel.dtype), kernel), bias)

    def _feed_forward(self, x, block, index):
        y = self._matmul(x, block["ffn_kernel"], block["ffn_bias"])
        if self.activation == "gelu":
            # grappler's MatMul + BiasAdd + GeluExact pattern (remapper.cc), in this exact op order
            return tf.multiply(tf.multiply(tf.add(tf.math.erf(tf.multiply(y, _SQRT_HALF)), 1.0), 0.5), y)
        return tf.cast(self._keras_activations[index](tf.cast(y, "float32")), y.dtype)

    def call(self, inputs):
        token_ids = tf.cast(inputs["token_ids"], tf.int32)
        segment_ids = tf.cast(inputs["segment_ids"], tf.int32)
        mask = tf.cast(inputs["padding_mask"], tf.bool)
        shape = tf.shape(token_ids)
        batch, length = shape[0], shape[1]
        rows = batch * length
        x = (
            tf.gather(self.token_table, token_ids)
            + self.position_table[None, :length]
            + tf.gather(self.segment_table, segment_ids)
        )
        x = self._layer_norm(tf.reshape(x, [rows, self.hidden]), self.embedding_norm)
        states = [x]
        # keys that are padding get -inf-like scores (keras-hub masks keys only)
        bias = tf.where(mask, 0.0, -1e9)[:, None, None, :]
        heads, head_dim = self.num_heads, self.head_dim
        for index, block in enumerate(self.blocks):
            qkv = self._matmul(x, block["qkv_kernel"], block["qkv_bias"])
            qkv = tf.transpose(tf.reshape(qkv, [batch, length, 3, heads, head_dim]), [2, 0, 3, 1, 4])
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = tf.cast(tf.matmul(q, k, transpose_b=True), tf.float32) + bias
            probs = tf.cast(tf.nn.softmax(scores, axis=-1), v.dtype)
            context = tf.reshape(tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3]), [rows, self.hidden])
            attended = tf.cast(self._matmul(context, block["out_kernel"], block["out_bias"]), tf.float32)
            x = self._layer_norm(attended + x, block["norm1"])
            hidden = self._feed_forward(x, block, index)
            ffn = tf.cast(self._matmul(hidden, block["ffn_out_kernel"], block["ffn_out_bias"]), tf.float32)
            x = self._layer_norm(ffn + x, block["norm2"])
            states.append(x)
        return [tf.reshape(s, [batch, length, self.hidden]) for s in states]
