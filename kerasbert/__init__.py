"""kerasbert: BERT's whole life cycle on Keras 3 + TensorFlow.

Lifecycle stages, one sub-package each:

* ``kerasbert.preprocessing`` – in-graph WordPiece tokenization and packing.
* ``kerasbert.modeling``      – the BERT encoder (keras-hub ``BertBackbone``) and its sizes.
* ``kerasbert.tasks``         – task models (classification/regression heads, ...).
* ``kerasbert.data``          – reading TSV/CSV files into ``tf.data`` pipelines; sample data.
* ``kerasbert.training``      – optimisation, metrics and the fine-tuning loop.
* ``kerasbert.export``        – raw-string SavedModels in TF Serving's layout.
* ``kerasbert.serving``       – a TF Serving-compatible gRPC/REST server.
* ``kerasbert.client``        – a gRPC client for TF Serving / ``kerasbert.serve``.

Entry points: ``python -m kerasbert.train`` and ``python -m kerasbert.serve``.
"""

__version__ = "0.1.0"
