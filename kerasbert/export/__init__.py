"""Raw-string SavedModel exports in TF Serving's versioned layout.

The names below are imported on first use, so `python -m kerasbert.export` can
quieten TensorFlow (`kerasbert.cli.quiet_tensorflow`) before it is imported.
"""

import importlib

_EXPORTS = {
    "embedding_serving_fns": "kerasbert.export.embedding",
    "export_checkpoint_embedder": "kerasbert.export.embedding",
    "export_embedder": "kerasbert.export.embedding",
    "read_metadata": "kerasbert.export.layout",
    "versions": "kerasbert.export.layout",
    "write_versioned": "kerasbert.export.layout",
    "ExportError": "kerasbert.export.saved_model",
    "export_metadata": "kerasbert.export.saved_model",
    "export_task": "kerasbert.export.saved_model",
    "save_serving_archive": "kerasbert.export.saved_model",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return sorted([*globals(), *_EXPORTS])
