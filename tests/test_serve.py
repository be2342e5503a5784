"""`python -m kerasbert.serve` as a real subprocess, spoken to with TF Serving's own gRPC stubs and REST.

Small SavedModels are built here (raw-string inputs like kerasbert's exports, one using a TF-Text op so the
server must register TF-Text ops). Two server processes in all (module-scoped):

* `config_server`: `--model_config_file` with three models (version policy `all` + labels, a two-input
  model, a model that gets a new version while running) and `--rest_api_port`.
* `single_server`: `--model_base_path` (latest-version policy), batching flags, config reload, SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from serving_utils import REPO_ROOT, running_server

tf_text = pytest.importorskip("tensorflow_text")
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


# ------------------------------------------------------------------------------------------ models
class EchoModel(tf.Module):
    """serving_default(text) -> length (+offset), upper (+suffix), words (TF-Text); count(text) -> n."""

    def __init__(self, offset: int, suffix: str):
        super().__init__()
        self.offset = tf.constant(offset)
        self.suffix = tf.constant(suffix)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        return {
            "length": tf.strings.length(text, unit="UTF8_CHAR") + self.offset,
            "upper": tf.strings.join([tf.strings.upper(text, encoding="utf-8"), self.suffix]),
            "words": tf_text.WhitespaceTokenizer().tokenize(text).row_lengths(),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def count(self, text):
        return {"n": tf.shape(text, out_type=tf.int64)}


class PairModel(tf.Module):
    """serving_default(text, weight) -> joined, scaled = length * weight; negative weight -> model error."""

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="text"),
            tf.TensorSpec([None], tf.float32, name="weight"),
        ]
    )
    def serve(self, text, weight):
        checked = tf.debugging.assert_non_negative(weight, message="weight must be >= 0")
        with tf.control_dependencies([checked]):
            scaled = tf.cast(tf.strings.length(text), tf.float32) * weight
        return {"joined": tf.strings.join([text, "#"]), "scaled": scaled}


def save_version(base: Path, version: int, module: tf.Module, **signatures) -> Path:
    """Writes `<base>/<version>` atomically (temp folder + rename), like kerasbert's exports."""
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{version}"
    tf.saved_model.save(module, str(tmp), signatures=signatures or {"serving_default": module.serve})
    final = base / str(version)
    os.rename(tmp, final)
    return final


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    echo1, echo2 = EchoModel(0, ""), EchoModel(1000, "!")
    save_version(root / "echo", 1, echo1, serving_default=echo1.serve, count=echo1.count)
    save_version(root / "echo", 2, echo2)
    save_version(root / "pair", 1, PairModel())
    save_version(root / "growing", 1, echo1)
    # decoys the server must ignore: an unfinished export and a non-numeric folder
    shutil.copytree(root / "echo" / "2", root / "echo" / ".tmp-99")
    (root / "echo" / "notes").mkdir()
    (root / "echo" / "7").mkdir()  # an integer folder without saved_model.pb (yet)
    return root


@pytest.fixture(scope="module")
def config_server(models, tmp_path_factory):
    config = tmp_path_factory.mktemp("config") / "models.config"
    config.write_text(f"""
model_config_list {{
  config {{
    name: "echo" base_path: "{models / "echo"}" model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
  config {{ name: "pair" base_path: "{models / "pair"}" model_platform: "tensorflow" }}
  config {{ name: "growing" base_path: "{models / "growing"}" model_platform: "tensorflow" }}
}}
""")
    with running_server(
        model_config_file=config,
        rest_api=True,
        extra_args=["--file_system_poll_wait_seconds", "0.5", "--model_config_file_poll_wait_seconds", "0.5"],
    ) as server:
        server.config_path = config
        yield server


@pytest.fixture(scope="module")
def single_server(models):
    batching = REPO_ROOT / "serving" / "batching_parameters.txt"
    with running_server(
        model_base_path=models / "echo",
        model_name="default",
        extra_args=["--enable_batching", "--batching_parameters_file", str(batching), "--grpc_max_threads", "4"],
        env={"TF_CPP_MIN_LOG_LEVEL": ""},  # as from a user's shell (conftest sets a level for the tests)
    ) as server:
        yield server


# ----------------------------------------------------------------------------------------- helpers
def predict_request(model, inputs, version=None, label=None, signature="", output_filter=()):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    if signature:
        request.model_spec.signature_name = signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    request.output_filter.extend(output_filter)
    return request


def predict(server, *args, **kwargs):
    with server.channel() as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(predict_request(*args, **kwargs), timeout=30)
    return response, {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def status(server, model, version=None):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    with server.channel() as channel:
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
    return {s.version: s.state for s in response.model_version_status}


def rpc_error(fn, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kwargs)
    return info.value


def rest(server, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.rest_url + path, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def assert_echo_v1(outputs, texts):
    assert outputs["length"].tolist() == [len(t) for t in texts]
    assert [u.decode() for u in outputs["upper"]] == [t.upper() for t in texts]
    assert outputs["words"].tolist() == [len(t.split()) for t in texts]


# ----------------------------------------------------------------------------------- flags (no TF)
def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "kerasbert.serve", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )


def test_unknown_flag_is_one_line_error_exit_2():
    result = run_cli("--model_base_path", ".", "--no_such_flag=3")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["kerasbert.serve: error: unknown flag --no_such_flag (see --help)"]


def test_missing_base_path_names_the_flag(tmp_path):
    result = run_cli("--model_base_path", str(tmp_path / "nope"))
    assert result.returncode == 2 and "--model_base_path" in result.stderr
    result = run_cli()
    assert result.returncode == 2 and "--model_base_path" in result.stderr


# ------------------------------------------------------------------------------ gRPC: config server
def test_status_lists_every_version_and_ignores_decoys(config_server):
    assert status(config_server, "echo") == {1: AVAILABLE, 2: AVAILABLE}  # not .tmp-99, notes, 7
    assert status(config_server, "echo", version=2) == {2: AVAILABLE}
    assert status(config_server, "pair") == {1: AVAILABLE}
    assert rpc_error(status, config_server, "nope").code() == grpc.StatusCode.NOT_FOUND
    assert rpc_error(status, config_server, "echo", version=5).code() == grpc.StatusCode.NOT_FOUND


def test_predict_values_and_version_selection(config_server):
    texts = ["hello world", "héllo  tf text serving", ""]
    response, out = predict(config_server, "echo", {"text": texts}, version=1)
    assert_echo_v1(out, texts)
    assert (response.model_spec.name, response.model_spec.version.value) == ("echo", 1)
    assert response.model_spec.signature_name == "serving_default"
    # no version -> the newest; version 2 adds 1000 to lengths and "!" to upper
    response, out = predict(config_server, "echo", {"text": texts})
    assert response.model_spec.version.value == 2
    assert out["length"].tolist() == [len(t) + 1000 for t in texts]
    assert [u.decode() for u in out["upper"]] == [t.upper() + "!" for t in texts]
    # labels from the config
    assert predict(config_server, "echo", {"text": texts}, label="stable")[0].model_spec.version.value == 1
    assert predict(config_server, "echo", {"text": texts}, label="canary")[0].model_spec.version.value == 2


def test_output_filter_and_named_signature(config_server):
    _, out = predict(config_server, "echo", {"text": ["a b"]}, version=1, output_filter=["words"])
    assert list(out) == ["words"] and out["words"].tolist() == [2]
    response, out = predict(config_server, "echo", {"text": ["a", "b", "c"]}, version=1, signature="count")
    assert response.model_spec.signature_name == "count"
    assert out["n"].tolist() == [3]


def test_two_input_model(config_server):
    _, out = predict(config_server, "pair", {"text": ["ab", "abcd"], "weight": np.array([0.5, 2.0], np.float32)})
    assert [j.decode() for j in out["joined"]] == ["ab#", "abcd#"]
    np.testing.assert_allclose(out["scaled"], [1.0, 8.0])


def test_metadata_is_the_saved_model_signature_def(config_server, models):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "echo"
    request.model_spec.version.value = 1
    request.metadata_field.append("signature_def")
    with config_server.channel() as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(request, timeout=10)
    got = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(got)
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((models / "echo" / "1" / "saved_model.pb").read_bytes())
    assert dict(got.signature_def) == dict(saved.meta_graphs[0].signature_def)
    text_input = got.signature_def["serving_default"].inputs["text"]
    assert text_input.dtype == tf.string.as_datatype_enum
    assert [d.size for d in text_input.tensor_shape.dim] == [-1]
    assert set(got.signature_def["serving_default"].outputs) == {"length", "upper", "words"}
    assert (response.model_spec.name, response.model_spec.version.value) == ("echo", 1)


BAD_REQUESTS = {
    "unknown model": (dict(model="nope", inputs={"text": ["a"]}), grpc.StatusCode.NOT_FOUND, "nope"),
    "unknown version": (dict(model="echo", inputs={"text": ["a"]}, version=9), grpc.StatusCode.NOT_FOUND, "9"),
    "unknown label": (dict(model="echo", inputs={"text": ["a"]}, label="beta"), grpc.StatusCode.NOT_FOUND, "beta"),
    "unknown signature": (
        dict(model="echo", inputs={"text": ["a"]}, signature="nah"),
        grpc.StatusCode.NOT_FOUND,
        "nah",
    ),
    "missing input": (dict(model="pair", inputs={"text": ["a"]}), grpc.StatusCode.INVALID_ARGUMENT, "weight"),
    "extra input": (
        dict(model="echo", inputs={"text": ["a"], "text_pair": ["b"]}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "text_pair",
    ),
    "wrong dtype": (
        dict(model="echo", inputs={"text": np.array([1.0], np.float32)}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'text' expects dtype string but got float32",
    ),
    "wrong rank": (
        dict(model="echo", inputs={"text": [["a", "b"]]}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'text' expects rank 1",
    ),
    "batch mismatch": (
        dict(model="pair", inputs={"text": ["a", "b"], "weight": np.array([1.0], np.float32)}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "mismatched batch sizes",
    ),
    "model rejects value": (
        dict(model="pair", inputs={"text": ["a"], "weight": np.array([-1.0], np.float32)}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "weight must be >= 0",
    ),
    "unknown output": (
        dict(model="echo", inputs={"text": ["a"]}, output_filter=["logits"]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "logits",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_errors_have_the_right_code_and_server_keeps_serving(config_server, case):
    kwargs, code, needle = BAD_REQUESTS[case]
    model, inputs = kwargs.pop("model"), kwargs.pop("inputs")
    err = rpc_error(predict, config_server, model, inputs, **kwargs)
    assert err.code() == code, err.details()
    assert needle in err.details()
    _, out = predict(config_server, "echo", {"text": ["still here"]}, version=1)
    assert_echo_v1(out, ["still here"])


def test_classify_is_unimplemented(config_server):
    from tensorflow_serving.apis import classification_pb2

    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "echo"
    with config_server.channel() as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        assert rpc_error(stub.Classify, request, timeout=10).code() == grpc.StatusCode.UNIMPLEMENTED


def test_concurrent_predicts(config_server):
    texts = [[f"word {i} " * (i % 4 + 1)] for i in range(24)]

    def one(batch):
        return predict(config_server, "echo", {"text": batch}, version=1)[1]

    with ThreadPoolExecutor(8) as pool:
        for batch, out in zip(texts, pool.map(one, texts)):
            assert_echo_v1(out, batch)


def test_new_version_is_picked_up_and_old_one_unloaded(config_server, models):
    assert predict(config_server, "growing", {"text": ["x"]})[1]["length"].tolist() == [1]
    save_version(models / "growing", 2, EchoModel(1000, "!"))
    deadline = time.monotonic() + 30
    while status(config_server, "growing") != {1: END, 2: AVAILABLE}:
        assert time.monotonic() < deadline, status(config_server, "growing")
        time.sleep(0.2)
    response, out = predict(config_server, "growing", {"text": ["x"]})
    assert response.model_spec.version.value == 2 and out["length"].tolist() == [1001]
    assert rpc_error(predict, config_server, "growing", {"text": ["x"]}, version=1).code() == grpc.StatusCode.NOT_FOUND


# -------------------------------------------------------------------------------------------- REST
def test_rest_status_metadata_and_predict(config_server):
    code, body = rest(config_server, "/v1/models/echo/versions/1")
    assert code == 200
    assert body == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    code, body = rest(config_server, "/v1/models/echo/labels/canary/metadata")
    assert code == 200 and body["model_spec"]["version"] == "2"
    sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["text"]["dtype"] == "DT_STRING"

    texts = ["hello world", "ünï cödé"]
    code, body = rest(config_server, "/v1/models/echo/versions/1:predict", {"instances": texts})
    assert code == 200
    assert body == {"predictions": [{"length": len(t), "upper": t.upper(), "words": len(t.split())} for t in texts]}
    code, body = rest(
        config_server, "/v1/models/echo:predict", {"signature_name": "serving_default", "inputs": {"text": texts}}
    )
    assert code == 200 and body["outputs"]["length"] == [len(t) + 1000 for t in texts]
    code, body = rest(
        config_server,
        "/v1/models/pair:predict",
        {"instances": [{"text": "ab", "weight": 3}, {"text": {"b64": "YWJj"}, "weight": 0.5}]},
    )
    assert code == 200 and body["predictions"] == [{"joined": "ab#", "scaled": 6.0}, {"joined": "abc#", "scaled": 1.5}]


@pytest.mark.parametrize(
    "path, body, code, needle",
    [
        ("/v1/models/nope", None, 404, "nope"),
        ("/v1/models/echo/versions/9:predict", {"instances": ["a"]}, 404, "9"),
        ("/v1/models/echo:predict", {"instances": [1, 2]}, 400, "input 'text'"),
        ("/v1/models/pair:predict", {"inputs": {"text": ["a"]}}, 400, "weight"),
        ("/v1/models/pair:predict", {"instances": [{"text": "a", "weight": -1}]}, 400, "weight must be >= 0"),
        ("/v1/models/echo:predict", {"nothing": 1}, 400, "instances"),
        ("/v1/models/echo:classify", {"examples": []}, 501, "classify"),
    ],
)
def test_rest_errors(config_server, path, body, code, needle):
    got_code, got = rest(config_server, path, body)
    assert got_code == code and set(got) == {"error"} and needle in got["error"], got
    assert rest(config_server, "/v1/models/echo/versions/1:predict", {"instances": ["ok"]})[1] == {
        "predictions": [{"length": 2, "upper": "OK", "words": 1}]
    }


def test_edited_config_file_is_applied(config_server, models):
    text = config_server.config_path.read_text()
    config_server.config_path.write_text(
        text.rstrip().rstrip("}") + f'  config {{ name: "pair2" base_path: "{models / "pair"}" }}\n}}\n'
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if status(config_server, "pair2") == {1: AVAILABLE}:
                break
        except grpc.RpcError:
            pass
        assert time.monotonic() < deadline, config_server.log()
        time.sleep(0.2)
    assert status(config_server, "echo") == {1: AVAILABLE, 2: AVAILABLE}  # untouched models stay loaded


# ---------------------------------------------------------------------------- single-model server
def test_base_path_serves_latest_version_only(single_server):
    assert status(single_server, "default") == {2: AVAILABLE}
    response, out = predict(single_server, "default", {"text": ["abc"]})
    assert response.model_spec.version.value == 2 and out["length"].tolist() == [1003]
    assert rpc_error(predict, single_server, "default", {"text": ["a"]}, version=1).code() == grpc.StatusCode.NOT_FOUND
    assert "Batching enabled" in single_server.log()
    assert single_server.log().count("Running gRPC ModelServer at") == 1  # once, on stdout (issue 14)
    # No TensorFlow start-up noise (without --verbose), though TensorFlow was imported and ran the model.
    for noise in ("absl::InitializeLog", "oneDNN", "cuInit", "cuda drivers", "cpu_feature_guard"):
        assert noise not in single_server.log()


def test_reload_config_swaps_models_at_runtime(single_server, models):
    def reload(text):
        request = model_management_pb2.ReloadConfigRequest()
        text_format.Parse(text, request.config)
        with single_server.channel() as channel:
            return model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(request, timeout=60)

    response = reload(f'model_config_list {{ config {{ name: "pair" base_path: "{models / "pair"}" }} }}')
    assert response.status.error_code == 0
    _, out = predict(single_server, "pair", {"text": ["abc"], "weight": np.array([2.0], np.float32)})
    assert out["scaled"].tolist() == [6.0]
    assert rpc_error(status, single_server, "default").code() == grpc.StatusCode.NOT_FOUND
    err = rpc_error(reload, 'model_config_list { config { name: "x" base_path: "/does/not/exist" } }')
    # issue 11 defect 5: RPC reload errors never echo paths (see tests/test_serve_versions.py)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "/does/not/exist" not in err.details()
    assert status(single_server, "pair") == {1: AVAILABLE}  # a rejected config changes nothing
    reload(
        f'model_config_list {{ config {{ name: "default" base_path: "{models / "echo"}" '
        f"model_version_policy {{ specific {{ versions: 1 }} }} }} }}"
    )
    assert status(single_server, "default") == {1: AVAILABLE}


def test_sigterm_shuts_down_gracefully(single_server):
    single_server.proc.send_signal(signal.SIGTERM)
    assert single_server.proc.wait(timeout=20) == 0
    assert "Server stopped" in single_server.log()


# ------------------------------------------------------------------------------------ unit (fast)
def test_version_policies_and_layout(models):
    from kerasbert.serving.config import aspired_versions, list_versions

    assert list_versions(str(models / "echo")) == [1, 2]
    cfg = model_server_config_pb2.ModelConfig(name="m", base_path="/m")
    assert aspired_versions(cfg, [3, 1, 2]) == [3]
    cfg.model_version_policy.latest.num_versions = 2
    assert aspired_versions(cfg, [3, 1, 2]) == [2, 3]
    cfg.model_version_policy.specific.versions.extend([1, 5])
    assert aspired_versions(cfg, [3, 1, 2]) == [1]
    cfg.model_version_policy.all.SetInParent()
    assert aspired_versions(cfg, [3, 1, 2]) == [1, 2, 3]


def test_batching_parameters_file_parses():
    from kerasbert.serving.batching import BatchingOptions

    options = BatchingOptions.from_file(str(REPO_ROOT / "serving" / "batching_parameters.txt"))
    assert options.max_batch_size == 64 and options.num_batch_threads == 2
    assert options.batch_timeout_micros == 2000 and options.max_enqueued_batches == 100
