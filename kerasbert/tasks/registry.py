"""Which modules define tasks. Importing one registers its `Task` classes."""

import importlib

# In `--task` order (the first is the default).
TASK_MODULES = (
    "kerasbert.tasks.classification",  # classification, regression
    "kerasbert.tasks.embedding",
    "kerasbert.tasks.token_classification",
    "kerasbert.tasks.question_answering",
)

_loaded = False


def load_all():
    """Imports every task module once (idempotent)."""
    global _loaded
    if not _loaded:
        for module in TASK_MODULES:
            importlib.import_module(module)
        _loaded = True
