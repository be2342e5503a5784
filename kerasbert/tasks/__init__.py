"""Tasks: one module per BERT job, registered by name (see `kerasbert.tasks.base`).

`get_task(name)` returns a registered `Task` class; `task_names()` lists
them. Classification and regression live in `kerasbert.tasks.classification`,
sentence embeddings in `kerasbert.tasks.embedding`.
"""

from kerasbert.tasks.base import Task, TaskDataError, get_task, register, task_names
from kerasbert.tasks.classification import TASK_KINDS, ClassificationTask, RegressionTask, TaskSpec, build_classifier
from kerasbert.tasks.embedding import (
    POOLING_STRATEGIES,
    EmbeddingTask,
    L2Normalize,
    SequencePooling,
    build_embedding_model,
)
