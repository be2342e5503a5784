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


@dataclasses.dataclass(frozen=True)
class EncoderSize:
    """Shape of a BERT encoder. Heads = hidden/64, intermediate = 4 x hidden."""

    num_layers: int
    hidden_dim: int

    @property
    def num_heads(self):
        return max(1, self.hidden_dim // 64)

    @property
    def intermediate_dim(self):
        return 4 * self.hidden_dim


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
            `num_segments`, `dtype`).

    Raises:
        ValueError: for an unknown size or inconsistent dimensions.
    """
    if size == "custom":
        missing = [k for k in ("num_layers", "hidden_dim") if k not in overrides]
        if missing:
            raise ValueError(f"size 'custom' needs {missing}")
        base = EncoderSize(overrides["num_layers"], overrides["hidden_dim"])
    elif size in ENCODER_SIZES:
        base = ENCODER_SIZES[size]
    else:
        raise ValueError(
            f"unknown encoder size {size!r}; choose one of "
            f"{', '.join(ENCODER_SIZES)} or 'custom'"
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
    config.update({k: v for k, v in overrides.items() if v is not None})
    if config["hidden_dim"] % config["num_heads"]:
        raise ValueError(
            f"hidden_dim {config['hidden_dim']} is not divisible by "
            f"num_heads {config['num_heads']}"
        )
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
