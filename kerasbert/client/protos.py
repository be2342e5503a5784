"""TF Serving's protobuf modules, imported without running ``tensorflow/__init__.py``.

The generated ``*_pb2`` modules live inside the ``tensorflow`` package, so a plain import
first runs TensorFlow's ``__init__`` (5-9 s). When TensorFlow is not imported yet, a bare
placeholder package with TensorFlow's ``__path__`` stands in for it just while the
``*_pb2`` files load, and is removed afterwards. The real, unchanged modules stay cached
in ``sys.modules``, so a later ``import tensorflow`` reuses them (and ``TensorProto`` is
the same class on both sides). Any problem falls back to the plain import.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types

_PROTO_MODULES = (
    "tensorflow.core.framework.tensor_pb2",
    "tensorflow.core.framework.types_pb2",
    "tensorflow_serving.apis.predict_pb2",
    "tensorflow_serving.apis.get_model_metadata_pb2",
    "tensorflow_serving.apis.get_model_status_pb2",
    "tensorflow_serving.apis.prediction_service_pb2_grpc",
    "tensorflow_serving.apis.model_service_pb2_grpc",
)
_proto_lock = threading.Lock()


def _import_protos() -> dict[str, types.ModuleType]:
    with _proto_lock:
        if "tensorflow" not in sys.modules:
            spec = importlib.util.find_spec("tensorflow")
            if spec is not None and spec.submodule_search_locations:
                before = set(sys.modules)
                placeholder = types.ModuleType("tensorflow")
                placeholder.__path__ = list(spec.submodule_search_locations)
                sys.modules["tensorflow"] = placeholder
                try:
                    return {name: importlib.import_module(name) for name in _PROTO_MODULES}
                except Exception:  # noqa: BLE001  # pragma: no cover - unusual installs: use the plain import
                    for name in set(sys.modules) - before:
                        if name.startswith(("tensorflow.", "tensorflow_serving")):
                            del sys.modules[name]
                finally:
                    if sys.modules.get("tensorflow") is placeholder:
                        del sys.modules["tensorflow"]
        return {name: importlib.import_module(name) for name in _PROTO_MODULES}


_protos = _import_protos()
tensor_pb2 = _protos["tensorflow.core.framework.tensor_pb2"]
types_pb2 = _protos["tensorflow.core.framework.types_pb2"]
predict_pb2 = _protos["tensorflow_serving.apis.predict_pb2"]
get_model_metadata_pb2 = _protos["tensorflow_serving.apis.get_model_metadata_pb2"]
get_model_status_pb2 = _protos["tensorflow_serving.apis.get_model_status_pb2"]
prediction_service_pb2_grpc = _protos["tensorflow_serving.apis.prediction_service_pb2_grpc"]
model_service_pb2_grpc = _protos["tensorflow_serving.apis.model_service_pb2_grpc"]
