"""Task models built on the encoder (classification/regression, pretraining, ...)."""

from kerasbert.tasks.classification import TASK_KINDS
from kerasbert.tasks.classification import TaskSpec
from kerasbert.tasks.classification import build_classifier
from kerasbert.tasks.embedding import POOLING_STRATEGIES
from kerasbert.tasks.embedding import L2Normalize
from kerasbert.tasks.embedding import SequencePooling
from kerasbert.tasks.embedding import build_embedding_model
