"""Raw-string SavedModel exports in TF Serving's versioned layout."""

from kerasbert.export.layout import read_metadata
from kerasbert.export.layout import versions
from kerasbert.export.layout import write_versioned
from kerasbert.export.saved_model import ExportError
from kerasbert.export.saved_model import export_metadata
from kerasbert.export.saved_model import export_task
from kerasbert.export.saved_model import save_serving_archive
from kerasbert.export.embedding import embedding_serving_fns
from kerasbert.export.embedding import export_checkpoint_embedder
from kerasbert.export.embedding import export_embedder
