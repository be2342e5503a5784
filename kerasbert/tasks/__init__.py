"""Tasks: one module per BERT job, registered by name (see `kerasbert.tasks.base`).

`get_task(name)` returns a registered `Task` class; `task_names()` lists
them. Classification and regression live in `kerasbert.tasks.classification`,
sentence embeddings in `kerasbert.tasks.embedding`.
"""

from kerasbert.tasks.base import Task
from kerasbert.tasks.base import TaskDataError
from kerasbert.tasks.base import get_task
from kerasbert.tasks.base import register
from kerasbert.tasks.base import task_names
from kerasbert.tasks.classification import TASK_KINDS
from kerasbert.tasks.classification import ClassificationTask
from kerasbert.tasks.classification import RegressionTask
from kerasbert.tasks.classification import TaskSpec
from kerasbert.tasks.classification import build_classifier
from kerasbert.tasks.embedding import POOLING_STRATEGIES
from kerasbert.tasks.embedding import EmbeddingTask
from kerasbert.tasks.embedding import L2Normalize
from kerasbert.tasks.embedding import SequencePooling
from kerasbert.tasks.embedding import build_embedding_model
