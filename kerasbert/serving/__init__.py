"""A TF Serving-compatible model server in Python (`python -m kerasbert.serve`).

Implements `tensorflow.serving.PredictionService` (Predict, GetModelMetadata) and `ModelService`
(GetModelStatus, HandleReloadConfigRequest) with the protos of `tensorflow-serving-api`, plus TF Serving's
REST API, over `<base_path>/<integer version>/saved_model.pb` folders.

Modules (imported lazily: importing this package does not import TensorFlow):

* `model_manager` – `ModelManager`: config, version policies/labels, polling, loads with retries and warmup.
* `servable`      – `Servable`: one loaded version; checked, chunked signature calls.
* `batching`      – `Batcher`: merges concurrent Predict calls (`--enable_batching`).
* `limits`        – request caps checked before any tensor is built.
* `warmup`        – `assets.extra/tf_serving_warmup_requests` reading and replay.
* `grpc_service`  – the gRPC services; `rest` – the REST API; `http_extras` – CORS and the Host check.
* `metrics`, `monitoring` – Prometheus metrics under TF Serving's names; `health` – gRPC health, readiness.
* `tls` – `--ssl_config_file`; `protos` – TF Serving config messages the wheel lacks; `arrays` – output joins.
* `server`        – flags and `main()`.

Example:

>>> from kerasbert.serving import ModelManager, single_model_config    # doctest: +SKIP
>>> manager = ModelManager()                                             # doctest: +SKIP
>>> manager.reload_config(single_model_config("sst2", "exports/sst2"))   # doctest: +SKIP
"""

import importlib

_EXPORTS = {
    "ModelManager": "kerasbert.serving.model_manager",
    "single_model_config": "kerasbert.serving.config",
    "Servable": "kerasbert.serving.servable",
    "ServingError": "kerasbert.serving.errors",
    "PredictionService": "kerasbert.serving.grpc_service",
    "ModelService": "kerasbert.serving.grpc_service",
    "RestApi": "kerasbert.serving.rest",
    "main": "kerasbert.serving.server",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'kerasbert.serving' has no attribute {name!r}")
