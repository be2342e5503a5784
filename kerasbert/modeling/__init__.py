"""The BERT encoder, its sizes, and importing pretrained checkpoints."""

from kerasbert.modeling.encoder import ENCODER_SIZES, EncoderSize, build_encoder, encoder_config
from kerasbert.modeling.gelu_backbone import GeluBertBackbone  # registers the class

# `kerasbert.modeling.checkpoints` (load_checkpoint, detect_format) is imported
# on use: it pulls in readers for three checkpoint formats.
