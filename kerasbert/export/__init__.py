"""Raw-string SavedModel exports in TF Serving's versioned layout."""

from kerasbert.export.embedding import embedding_serving_fns, export_checkpoint_embedder, export_embedder
from kerasbert.export.layout import read_metadata, versions, write_versioned
from kerasbert.export.saved_model import ExportError, export_metadata, export_task, save_serving_archive
