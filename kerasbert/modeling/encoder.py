"""The BERT encoder: keras-hub's `BertBackbone` with Google's named sizes.

We build on `keras_hub.models.BertBackbone` (token/position/segment
embeddings, post-LayerNorm transformer blocks, tanh pooler) so checkpoints
from Google, Hugging Face and keras-hub load into one class, and add what it
lacks: the size table from google-research/bert's README, and (through
`GeluBertBackbone`) a choice of GELU: keras-hub hard-codes the tanh
approximation, new models here use the exact erf GELU of the BERT paper and
Hugging Face's `BertModel`.
"""

import dataclasses

from kerasbert.modeling.gelu_backbone import GeluBertBackbone

# BERT's shape rule (google-research/bert's size table, Hugging Face's
# `BertConfig`): one attention head per 64 hidden units, a feed-forward layer
# 4x as wide as the hidden size. The one place it is written down.
HEAD_SIZE = 64
INTERMEDIATE_FACTOR = 4


def derived_dims(hidden_dim):
    """`(num_heads, intermediate_dim)` of BERT's rule for a hidden size.

    >>> derived_dims(768)
    (12, 3072)
    >>> derived_dims(32)  # at least one head
    (1, 128)
    """
    hidden_dim = int(hidden_dim)
    return max(1, hidden_dim // HEAD_SIZE), INTERMEDIATE_FACTOR * hidden_dim


@dataclasses.dataclass(frozen=True)
class EncoderSize:
    """Shape of a BERT encoder; heads and intermediate size by `derived_dims`."""

    num_layers: int
    hidden_dim: int

    @property
    def num_heads(self):
        return derived_dims(self.hidden_dim)[0]

    @property
    def intermediate_dim(self):
        return derived_dims(self.hidden_dim)[1]


# Google's table (google-research/bert, "BERT-Tiny" ... "BERT-Large").
ENCODER_SIZES = {
    "tiny": EncoderSize(2, 128),
    "mini": EncoderSize(4, 256),
    "small": EncoderSize(4, 512),
    "medium": EncoderSize(8, 512),
    "base": EncoderSize(12, 768),
    "large": EncoderSize(24, 1024),
}


def encoder_config(size="tiny", vocabulary_size=30522, **overrides):
    """Keyword arguments for `BertBackbone` for a named size plus overrides.

    Args:
        size: one of `ENCODER_SIZES`, or "custom" (then `num_layers` and
            `hidden_dim` must be given).
        vocabulary_size: rows of the token embedding (len of vocab.txt).
        **overrides: any `BertBackbone` argument (`num_layers`, `hidden_dim`,
            `num_heads`, `intermediate_dim`, `dropout`, `max_sequence_length`,
            `num_segments`, `dtype`); `None` values are ignored. Overriding
            `hidden_dim` re-derives `num_heads` and `intermediate_dim`
            (`derived_dims`) unless they are given too.

    Example:

    >>> config = encoder_config("tiny", hidden_dim=256)
    >>> config["num_layers"], config["num_heads"], config["intermediate_dim"]
    (2, 4, 1024)
    >>> encoder_config("tiny", hidden_dim=256, num_heads=8)["num_heads"]
    8

    Raises:
        ValueError: for an unknown size or inconsistent dimensions.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if size == "custom":
        missing = [k for k in ("num_layers", "hidden_dim") if k not in overrides]
        if missing:
            raise ValueError(f"size 'custom' needs {missing}")
        base = EncoderSize(overrides["num_layers"], overrides["hidden_dim"])
    elif size in ENCODER_SIZES:
        base = ENCODER_SIZES[size]
    else:
        raise ValueError(f"unknown encoder size {size!r}; choose one of {', '.join(ENCODER_SIZES)} or 'custom'")
    base = EncoderSize(
        overrides.get("num_layers", base.num_layers),
        overrides.get("hidden_dim", base.hidden_dim),
    )
    config = dict(
        vocabulary_size=int(vocabulary_size),
        num_layers=base.num_layers,
        hidden_dim=base.hidden_dim,
        num_heads=base.num_heads,
        intermediate_dim=base.intermediate_dim,
        dropout=0.1,
        max_sequence_length=512,
        num_segments=2,
    )
    config.update(overrides)
    if config["hidden_dim"] % config["num_heads"]:
        hint = (
            "" if "num_heads" in overrides else (f" (num_heads defaults to hidden_dim // {HEAD_SIZE}; give num_heads)")
        )
        raise ValueError(f"hidden_dim {config['hidden_dim']} is not divisible by num_heads {config['num_heads']}{hint}")
    return config


def build_encoder(size="tiny", vocabulary_size=30522, hidden_activation="gelu", **overrides):
    """Builds a randomly initialised BERT encoder.

    Args:
        size, vocabulary_size, **overrides: as `encoder_config`.
        hidden_activation: "gelu" (exact, default), "gelu_approximate"
            (tanh, Google's TF1 code and keras-hub) or "relu".

    Example:

    >>> encoder = build_encoder("tiny", vocabulary_size=1000)
    >>> encoder.num_layers, encoder.hidden_dim, encoder.num_heads
    (2, 128, 2)

    Returns:
        A `GeluBertBackbone` (a `keras_hub.models.BertBackbone`) taking
        `token_ids`, `segment_ids`, `padding_mask` and returning
        `sequence_output` and `pooled_output`.
    """
    return GeluBertBackbone(
        hidden_activation=hidden_activation,
        **encoder_config(size, vocabulary_size, **overrides),
    )
