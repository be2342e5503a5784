"""The whole thread: fine-tune → raw-string export → `python -m kerasbert.serve`
on a free loopback port → TF Serving's own gRPC stubs → the Streamlit UI."""

import grpc
import numpy as np
import pytest
import tensorflow as tf
from streamlit.testing.v1 import AppTest
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving_utils import running_server
from ui_utils import APP, chart_data

TEXTS = ["the food was really good", "the staff was awful", "wonderful service and it was perfect"]


@pytest.fixture(scope="module")
def served(trained_export):
    with running_server(model_base_path=trained_export["base"], model_name=trained_export["model_name"]) as srv:
        channel = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
        yield srv, channel, trained_export
        channel.close()


def _predict_request(name, **inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "serving_default"
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def test_predict_through_tf_serving_stubs_matches_the_trained_model(served):
    srv, channel, export = served
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    response = stub.Predict(_predict_request(export["model_name"], text=TEXTS), timeout=30)
    assert response.model_spec.version.value == 1
    labels = [s.decode() for s in tf.make_ndarray(response.outputs["labels"])]
    probabilities = tf.make_ndarray(response.outputs["probabilities"])
    assert labels == ["positive", "negative", "positive"]
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)

    # Same numbers as the in-memory model that was trained.
    results = export["results"]
    model, pre = results.model, results.preprocessor
    expected = tf.nn.softmax(model(pre(tf.constant(TEXTS)), training=False)).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


def test_metadata_status_and_errors_keep_the_server_serving(served):
    srv, channel, export = served
    name = export["model_name"]
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = name
    metadata = stub.GetModelMetadata(request, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signatures)
    signature = signatures.signature_def["serving_default"]
    assert set(signature.inputs) == {"text"}
    assert set(signature.outputs) == {"probabilities", "label_ids", "labels", "class_names"}

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = name
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status_request, timeout=30)
    assert [(s.version, s.state) for s in status.model_version_status] == [(1, 30)]  # 30 = AVAILABLE

    for bad, code in [
        (_predict_request(name, sentence=["wrong input name"]), grpc.StatusCode.INVALID_ARGUMENT),
        (_predict_request(name, text=[1.5, 2.5]), grpc.StatusCode.INVALID_ARGUMENT),
        (_predict_request("no_such_model", text=["x"]), grpc.StatusCode.NOT_FOUND),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(bad, timeout=30)
        assert err.value.code() == code, err.value.details()
    # Still serving.
    ok = stub.Predict(_predict_request(name, text=["really good"]), timeout=30)
    assert tf.make_ndarray(ok.outputs["labels"])[0] == b"positive"


def test_ui_shows_the_served_models_label(served, monkeypatch):
    srv, _, export = served
    monkeypatch.setenv("KERASBERT_SERVER", f"127.0.0.1:{srv.port}")
    monkeypatch.setenv("KERASBERT_MODEL", export["model_name"])
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception and not at.error
    assert [t.value for t in at.title] == ["Classify"]  # the page of the model's task
    at.text_area(key="text").input("the staff was terrible").run()
    at.button(key="run").click().run()
    assert not at.exception and not at.error
    assert at.metric[0].label == "Predicted label" and at.metric[0].value == "negative"
    [chart] = at.get("vega_lite_chart")
    table = chart_data(chart)
    assert table["class"].tolist() == ["negative", "positive"]
    assert table["probability"][0] > 0.5
