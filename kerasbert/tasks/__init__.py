"""Task models built on the encoder (classification/regression, pretraining, ...)."""

from kerasbert.tasks.classification import TASK_KINDS
from kerasbert.tasks.classification import TaskSpec
from kerasbert.tasks.classification import build_classifier
