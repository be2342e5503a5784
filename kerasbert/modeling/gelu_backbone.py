"""A `keras_hub.models.BertBackbone` whose feed-forward activation is selectable.

keras-hub 0.32's `BertBackbone` hard-codes the tanh approximation of GELU in
every transformer block (`keras_hub.src.utils.keras_utils.gelu_approximate`).
That is what Google's original TF1 BERT code computed, so Google checkpoints
(and keras-hub's own presets converted from them) are right with it. Hugging
Face's `BertModel` with `"hidden_act": "gelu"` (all-MiniLM, bert-base-* on the
Hub) uses the exact erf GELU instead; running those weights with the tanh
approximation moves all-MiniLM-L6-v2's `sequence_output` by ~1e-2, with the
exact GELU it matches transformers to ~5e-6.

`GeluBertBackbone` is a `BertBackbone` subclass (so every `BertBackbone`
consumer keeps working) with one extra, serialised argument:
`hidden_activation`. It survives `.keras` / `save_to_preset()` round trips and
is traced into exported SavedModels like any other op.
"""

import keras
import keras_hub
from keras_hub.src.utils.keras_utils import gelu_approximate

# Our names -> Keras activation functions.
HIDDEN_ACTIVATIONS = {
    # Exact GELU, x * Phi(x) with the erf. HF "gelu".
    "gelu": keras.activations.gelu,  # approximate=False by default
    # Tanh approximation: Google TF1 BERT's `gelu`, HF "gelu_new" /
    # "gelu_pytorch_tanh", keras-hub's BertBackbone default.
    "gelu_approximate": gelu_approximate,
    "relu": keras.activations.relu,
}

# Hugging Face `hidden_act` values -> our names.
HF_HIDDEN_ACT = {
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_new": "gelu_approximate",
    "gelu_pytorch_tanh": "gelu_approximate",
    "gelu_approximate": "gelu_approximate",
    "relu": "relu",
}


def set_hidden_activation(backbone, hidden_activation):
    """Replaces the feed-forward activation of every block of a built backbone.

    The functional graph calls each layer again at run time, so swapping the
    `Dense` layer's `activation` changes what the model computes (weights are
    untouched).

    Args:
        backbone: a `keras_hub.models.BertBackbone`.
        hidden_activation: a key of `HIDDEN_ACTIVATIONS`.

    Example:

    >>> bb = keras_hub.models.BertBackbone(100, 1, 2, 8, 16)
    >>> set_hidden_activation(bb, "gelu")
    """
    if hidden_activation not in HIDDEN_ACTIVATIONS:
        raise ValueError(f"hidden_activation must be one of {sorted(HIDDEN_ACTIVATIONS)}, got {hidden_activation!r}")
    fn = HIDDEN_ACTIVATIONS[hidden_activation]
    for block in backbone.transformer_layers:
        block.activation = fn
        block._feedforward_intermediate_dense.activation = fn


@keras.saving.register_keras_serializable(package="kerasbert")
class GeluBertBackbone(keras_hub.models.BertBackbone):
    """`BertBackbone` with a choice of feed-forward activation.

    Args:
        hidden_activation: "gelu" (exact, erf; Hugging Face BERT, the
            default), "gelu_approximate" (tanh; Google TF1 BERT and stock
            keras-hub) or "relu".
        **kwargs: the arguments of `keras_hub.models.BertBackbone`
            (`vocabulary_size`, `num_layers`, `num_heads`, `hidden_dim`,
            `intermediate_dim`, `dropout`, `max_sequence_length`,
            `num_segments`, `dtype`, ...).

    Example:

    >>> import numpy as np
    >>> bb = GeluBertBackbone(vocabulary_size=100, num_layers=1, num_heads=2,
    ...                       hidden_dim=8, intermediate_dim=16)
    >>> out = bb({"token_ids": np.ones((1, 4), "int32"),
    ...           "segment_ids": np.zeros((1, 4), "int32"),
    ...           "padding_mask": np.ones((1, 4), "int32")})
    >>> tuple(out["sequence_output"].shape)
    (1, 4, 8)
    """

    def __init__(self, hidden_activation="gelu", **kwargs):
        super().__init__(**kwargs)
        set_hidden_activation(self, hidden_activation)
        self.hidden_activation = hidden_activation

    def get_config(self):
        config = super().get_config()
        config["hidden_activation"] = self.hidden_activation
        return config
