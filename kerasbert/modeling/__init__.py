"""The BERT encoder and its sizes (and, in `checkpoints`, weight import)."""

from kerasbert.modeling.encoder import ENCODER_SIZES
from kerasbert.modeling.encoder import EncoderSize
from kerasbert.modeling.encoder import build_encoder
from kerasbert.modeling.encoder import encoder_config
