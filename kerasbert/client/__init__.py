"""A gRPC (or REST) client for raw-string kerasbert SavedModels.

Talks the standard TensorFlow Serving protocol only (``PredictionService.Predict``,
``PredictionService.GetModelMetadata`` and ``ModelService.GetModelStatus``; or, for an
``http://host:port`` address, TF Serving's REST API ``/v1/models/<name>:predict``, ``/metadata`` and
status), so it works unchanged against stock ``tensorflow_model_server`` and against
``python -m kerasbert.serve``. Long lists go in pipelined requests (``max_in_flight`` at once), every
method has a ``*_async`` twin returning a ``concurrent.futures.Future``, and ``encode(...,
show_tokens=True)`` / ``tokens()`` show the WordPieces the model sees.

Importing this package does NOT import TensorFlow: the TF Serving protobuf modules are
loaded without running ``tensorflow/__init__.py`` (0.3 s instead of 5-9 s), and tensors
are converted to/from ``TensorProto`` with numpy. That keeps the Streamlit UI and the
command line quick to start.

Layout: :mod:`~kerasbert.client.transport` (channel, Predict / GetModelMetadata /
GetModelStatus, gRPC errors -> :mod:`~kerasbert.client.errors`), :mod:`~kerasbert.client.tensors`
(numpy <-> ``TensorProto``), :mod:`~kerasbert.client.protos` (the TF-free proto import),
:mod:`~kerasbert.client.decoders` (per-task outputs -> Python), :mod:`~kerasbert.client.api`
(:class:`Client`), :mod:`~kerasbert.client.rest` (the REST wire), :mod:`~kerasbert.client.progress`
(the stderr progress line) and :mod:`~kerasbert.client.cli` (``python -m kerasbert.client``).

Example:

```python
from kerasbert.client import Client

with Client("localhost:8500", model_name="sst2") as client:
    client.classify("a gripping, funny film")
    # [{'label': 'positive', 'label_id': 1,
    #   'probabilities': {'negative': 0.03, 'positive': 0.97}}]

with Client("localhost:8500", model_name="minilm") as client:   # an embedding export
    vectors = client.encode(["A man plays guitar.", "A cat sleeps."])   # float32 [2, 384]
    client.similarity("A man plays guitar.", "Someone plays an instrument.")   # cosine, 0.687
    client.search("a sleeping pet", ["A man plays guitar.", "A cat sleeps."], k=1)
    # [{'corpus_id': 1, 'score': 0.659, 'text': 'A cat sleeps.'}]

with Client("localhost:8500", model_name="conll") as client:   # a token-classification export
    client.task                        # 'token_classification' (from the model's `metadata` signature)
    client.entities("Angela Merkel visited Paris.")
    # [{'label': 'PER', 'start': 0, 'end': 13, 'text': 'Angela Merkel', 'score': 0.98}, ...]
```

Command line: ``python -m kerasbert.client --server localhost:8500 --model sst2 "a fine film"``
(``--encode`` prints embeddings, ``--regress`` scores, ``--entities`` entities instead).
"""

from kerasbert.client.api import Client, cosine_similarity
from kerasbert.client.cli import main  # noqa: F401  (python -m kerasbert.client)
from kerasbert.client.errors import (
    InvalidInput,
    KerasBertClientError,
    ModelNotFound,
    NoExportMetadata,
    NotAString,
    RequestTimeout,
    ServerUnavailable,
    SignatureNotFound,
    WrongTask,
)
from kerasbert.client.protos import (  # noqa: F401  (module attributes of the former client.py)
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    tensor_pb2,
    types_pb2,
)
from kerasbert.client.tensors import from_tensor_proto, to_tensor_proto
from kerasbert.client.transport import Transport, default_model, default_server

__all__ = [
    "Client",
    "InvalidInput",
    "KerasBertClientError",
    "ModelNotFound",
    "NoExportMetadata",
    "NotAString",
    "RequestTimeout",
    "ServerUnavailable",
    "SignatureNotFound",
    "Transport",
    "WrongTask",
    "cosine_similarity",
    "default_model",
    "default_server",
    "from_tensor_proto",
    "to_tensor_proto",
]
