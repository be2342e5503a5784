"""kerasbert.client against a real gRPC server process serving a small raw-string SavedModel.

The toy model ("toy") is deterministic: P(positive) = fraction of the text's characters that
are vowels (aeiou, case-insensitive), so every expected number is computed here in Python.
Signatures: ``serving_default`` (text), ``pair`` (text, text_pair: the two strings
concatenated) and ``regress`` (text -> score = 5 * vowel fraction).

The server is the real ``python -m kerasbert.serve`` (tests/serving_utils.py). The helpers
(``build_toy_model``, ``toy_server``, ``expected_positive``) are shared with tests/test_ui.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kerasbert import client as client_lib
from kerasbert.client import (
    Client,
    InvalidInput,
    KerasBertClientError,
    ModelNotFound,
    RequestTimeout,
    ServerUnavailable,
    SignatureNotFound,
)
from serving_utils import free_port, running_server

MODEL_NAME = "toy"
CLASS_NAMES = ["negative", "positive"]
VOWELS = set("aeiou")


def expected_positive(text: str) -> float:
    """P(positive) of the toy model: vowel fraction of the characters (0 for an empty text)."""
    return sum(c in VOWELS for c in text.lower()) / max(len(text), 1)


def build_toy_model(base_path: Path) -> Path:
    """Writes the toy SavedModel as version 1 under ``base_path`` (TF Serving layout)."""
    import tensorflow as tf

    class ToyClassifier(tf.Module):
        def _positive(self, text):
            lower = tf.strings.lower(text, encoding="utf-8")
            vowels = tf.strings.length(tf.strings.regex_replace(lower, "[^aeiou]", ""), unit="UTF8_CHAR")
            chars = tf.strings.length(text, unit="UTF8_CHAR")
            return tf.cast(vowels, tf.float32) / tf.cast(tf.maximum(chars, 1), tf.float32)

        def _classification(self, text):
            p = self._positive(text)
            probabilities = tf.stack([1.0 - p, p], axis=-1)
            label_ids = tf.argmax(probabilities, axis=-1)
            names = tf.constant(CLASS_NAMES)
            return {
                "probabilities": probabilities,
                "label_ids": label_ids,
                "labels": tf.gather(names, label_ids),
                "class_names": tf.tile(names[tf.newaxis], [tf.shape(text)[0], 1]),
            }

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            return self._classification(text)

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.string, name="text"),
                tf.TensorSpec([None], tf.string, name="text_pair"),
            ]
        )
        def serve_pair(self, text, text_pair):
            return self._classification(text + text_pair)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve_regress(self, text):
            return {"score": 5.0 * self._positive(text)}

    module = ToyClassifier()
    export_dir = base_path / "1"
    tf.saved_model.save(
        module,
        str(export_dir),
        signatures={"serving_default": module.serve, "pair": module.serve_pair, "regress": module.serve_regress},
    )
    return export_dir


@contextlib.contextmanager
def toy_server(tmp_root: Path):
    """Builds the toy model under ``tmp_root`` and serves it as "toy"; yields the server."""
    base_path = tmp_root / MODEL_NAME
    build_toy_model(base_path)
    with running_server(model_base_path=str(base_path), model_name=MODEL_NAME) as server:
        yield server


# --- fixtures --------------------------------------------------------------------------------------


_SHARED_SERVER: list = []


def shared_toy_server(request, tmp_path_factory):
    """One toy server for the whole session (this file and test_ui.py), stopped at the end."""
    if not _SHARED_SERVER:
        stack = contextlib.ExitStack()
        _SHARED_SERVER.append(stack.enter_context(toy_server(tmp_path_factory.mktemp("toy_models"))))
        request.config.add_cleanup(stack.close)
    return _SHARED_SERVER[0]


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    return shared_toy_server(request, tmp_path_factory)


@pytest.fixture()
def client(server):
    with Client(target=f"127.0.0.1:{server.port}", model_name=MODEL_NAME) as c:
        yield c


TEXTS = ["aaa", "xyz", "A quiet evening", "Ünïcode ÀÉÎ façade", "", "e"]


# --- TensorProto conversion ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        ["great", "héllo wörld", ""],
        np.array([[0.25, 0.75], [1.0, -2.5]], np.float32),
        [1, 2, 3],
        [0.5, 1.5],
        np.array([True, False]),
        np.arange(6, dtype=np.int64).reshape(2, 3),
        np.array([1.5, -2.0], np.float16),
        np.array(3.0),
    ],
)
def test_tensor_proto_conversion_matches_tensorflow(value):
    import tensorflow as tf

    ours, theirs = client_lib.to_tensor_proto(value), tf.make_tensor_proto(value)
    assert ours.dtype == theirs.dtype
    assert [d.size for d in ours.tensor_shape.dim] == [d.size for d in theirs.tensor_shape.dim]
    expected = tf.make_ndarray(theirs)
    if expected.dtype == object:  # TF gives bytes, we decode to str
        expected = np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(expected)
    for array in (client_lib.from_tensor_proto(theirs), client_lib.from_tensor_proto(ours)):
        assert array.dtype == expected.dtype and array.shape == expected.shape
        np.testing.assert_array_equal(array, expected)


def test_from_tensor_proto_fills_with_last_value_like_tensorflow():
    import tensorflow as tf

    proto = tf.make_tensor_proto(0.5, shape=[2, 3])  # one float_val for six elements
    np.testing.assert_array_equal(client_lib.from_tensor_proto(proto), tf.make_ndarray(proto))


def test_import_is_light_and_tensorflow_still_imports_afterwards(tmp_path):
    """The client loads TF Serving's protos without tensorflow/__init__; a later real
    `import tensorflow` must still work and share the same TensorProto class."""
    code = (
        "import sys, time; t = time.time(); import kerasbert.client as c; "
        "light = time.time() - t; assert 'tensorflow.python' not in sys.modules, 'TF was imported'; "
        "assert 'tensorflow' not in sys.modules; "
        "import tensorflow as tf; assert type(tf.make_tensor_proto(['a'])) is c.tensor_pb2.TensorProto; "
        "assert float(tf.reduce_sum(tf.constant([1.0, 2.0]))) == 3.0; print(light)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.split()[-1]) < 3.0  # typically 0.2-0.4 s; importing TF takes 5-9 s


# --- against the server ----------------------------------------------------------------------------


def test_classify_values(client):
    results = client.classify(TEXTS)
    assert len(results) == len(TEXTS)
    for text, result in zip(TEXTS, results):
        p = expected_positive(text)
        assert result["probabilities"] == pytest.approx({"negative": 1 - p, "positive": p}, abs=1e-6)
        assert result["label"] == ("positive" if p > 0.5 else "negative")
        assert result["label_id"] == CLASS_NAMES.index(result["label"])
        assert isinstance(result["label"], str) and isinstance(result["label_id"], int)


def test_single_string_is_one_row(client):
    [result] = client.classify("aei")
    assert result["label"] == "positive" and result["probabilities"]["positive"] == pytest.approx(1.0)


def test_predict_raw_outputs_and_output_filter(client):
    out = client.predict({"text": np.array(["aab", "bbb"])})
    assert set(out) == {"probabilities", "label_ids", "labels", "class_names"}
    assert out["probabilities"].dtype == np.float32 and out["probabilities"].shape == (2, 2)
    assert out["label_ids"].dtype == np.int64 and out["label_ids"].tolist() == [1, 0]
    assert out["labels"].tolist() == ["positive", "negative"]
    assert out["class_names"].tolist() == [CLASS_NAMES, CLASS_NAMES]
    filtered = client.predict({"text": "aab"}, output_filter=["labels"])
    assert list(filtered) == ["labels"] and filtered["labels"].tolist() == ["positive"]


def test_text_pair_signature(server):
    with Client(target=f"127.0.0.1:{server.port}", model_name=MODEL_NAME, signature_name="pair") as c:
        results = c.classify(["bcd", "xyz"], text_pairs=["aaaaa", "q"])
        assert results[0]["probabilities"]["positive"] == pytest.approx(expected_positive("bcdaaaaa"), abs=1e-6)
        assert [r["label"] for r in results] == ["positive", "negative"]
        with pytest.raises(ValueError, match="must match"):
            c.classify(["a", "b"], text_pairs=["c"])


def test_regress(server):
    with Client(target=f"127.0.0.1:{server.port}", model_name=MODEL_NAME, signature_name="regress") as c:
        scores = c.regress(TEXTS)
        assert scores.dtype == np.float32 and scores.shape == (len(TEXTS),)
        np.testing.assert_allclose(scores, [5 * expected_positive(t) for t in TEXTS], atol=1e-5)
        with pytest.raises(KerasBertClientError, match="no 'probabilities' output"):
            c.classify("abc")


def test_batching_splits_long_lists_below_message_limits(client, monkeypatch):
    """8 MB of text (twice gRPC's default 4 MB message limit) in requests of <= batch_size rows."""
    texts = ["ab" * 1000 + "e" * (i % 7) for i in range(4000)]
    sizes = []
    send = client._start_request

    def spy(arrays, output_filter, signature_name):
        sizes.append(sum(len(client_lib.to_tensor_proto(a).SerializeToString()) for a in arrays.values()))
        return send(arrays, output_filter, signature_name)

    monkeypatch.setattr(client, "_start_request", spy)
    out = client.predict({"text": texts}, batch_size=500)
    assert len(sizes) == 8 and max(sizes) < 4 * 1024 * 1024 < sum(sizes)
    np.testing.assert_allclose(out["probabilities"][:, 1], [expected_positive(t) for t in texts], atol=1e-6)
    sizes.clear()
    small = client.classify(TEXTS, batch_size=4)  # 6 texts -> 2 requests, same answers as one request
    assert len(sizes) == 2 and small == client.classify(TEXTS)


def test_metadata(client):
    meta = client.metadata()
    assert meta["model_name"] == MODEL_NAME and meta["version"] == 1
    assert meta["inputs"] == {"text": {"dtype": "string", "shape": [None]}}
    assert meta["outputs"]["probabilities"] == {"dtype": "float32", "shape": [None, 2]}
    assert meta["outputs"]["label_ids"]["dtype"] == "int64"
    assert meta["outputs"]["labels"] == {"dtype": "string", "shape": [None]}
    assert set(meta["signatures"]) >= {"serving_default", "pair", "regress"}
    assert set(meta["signatures"]["pair"]["inputs"]) == {"text", "text_pair"}
    assert meta["signatures"]["regress"]["outputs"] == {"score": {"dtype": "float32", "shape": [None]}}


def test_status(client):
    assert client.status() == [(1, "AVAILABLE")]


def test_env_defaults(server, monkeypatch):
    monkeypatch.setenv("KERASBERT_SERVER", f"127.0.0.1:{server.port}")
    monkeypatch.setenv("KERASBERT_MODEL", MODEL_NAME)
    with Client() as c:
        assert (c.target, c.model_name) == (f"127.0.0.1:{server.port}", MODEL_NAME)
        assert c.classify("ooo")[0]["label"] == "positive"
    assert Client("127.0.0.1", server.port).target == f"127.0.0.1:{server.port}"
    assert Client(f"127.0.0.1:{server.port}").target == f"127.0.0.1:{server.port}"
    monkeypatch.delenv("KERASBERT_SERVER")
    monkeypatch.delenv("KERASBERT_MODEL")
    assert (Client().target, Client().model_name) == ("localhost:8500", "kerasbert")
    assert Client("::1", 9000).target == Client("[::1]:9000").target == "[::1]:9000"
    monkeypatch.setenv("KERASBERT_SERVER", "serving-host")  # no port: TF Serving's 8500
    assert Client().target == "serving-host:8500"


# --- errors ----------------------------------------------------------------------------------------


def test_server_down_raises_server_unavailable():
    port = free_port()  # nothing listens there
    with Client(target=f"127.0.0.1:{port}", model_name=MODEL_NAME, timeout=5) as c:
        for call in (lambda: c.classify("abc"), c.status, c.metadata):
            with pytest.raises(ServerUnavailable) as info:
                call()
            assert f"no TF Serving server at 127.0.0.1:{port}" in str(info.value)
            assert "python -m kerasbert.serve --model_base_path" in str(info.value)
            assert info.value.code == "UNAVAILABLE"


def test_wrong_model_raises_model_not_found(server):
    with Client(target=f"127.0.0.1:{server.port}", model_name="no_such_model") as c:
        for call in (lambda: c.classify("abc"), c.status, c.metadata):
            with pytest.raises(ModelNotFound, match="model 'no_such_model' is not served"):
                call()


def test_bad_input_raises_invalid_input(client, server):
    with pytest.raises(InvalidInput, match="rejected") as info:
        client.predict({"txt": ["abc"]})  # wrong input name
    assert info.value.code == "INVALID_ARGUMENT" and info.value.details
    with pytest.raises(InvalidInput):
        client.predict({"text": [1.5, 2.5]})  # float where a string is expected
    with Client(target=f"127.0.0.1:{server.port}", model_name=MODEL_NAME, signature_name="nope") as c:
        with pytest.raises(SignatureNotFound, match="no signature 'nope'"):
            c.classify("abc")


def test_empty_input_raises_value_error(client):
    for call in (lambda: client.classify([]), lambda: client.regress([]), lambda: client.predict({})):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(ValueError, match="different numbers of rows"):
        client.predict({"text": ["a", "b"], "text_pair": ["c"]})


def test_silent_server_raises_timeout():
    """A socket that accepts connections but never speaks HTTP/2: the call must time out."""
    with contextlib.closing(socket.socket()) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        with Client(target=f"127.0.0.1:{port}", model_name=MODEL_NAME, timeout=1.0) as c:
            start = time.time()
            with pytest.raises(RequestTimeout, match="did not answer within 1 s") as info:
                c.classify("abc")
            assert time.time() - start < 10 and info.value.code == "DEADLINE_EXCEEDED"


def test_command_line(server):
    env = dict(os.environ, KERASBERT_SERVER=f"127.0.0.1:{server.port}", KERASBERT_MODEL=MODEL_NAME)
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "kerasbert.client", *args], capture_output=True, text=True, env=env, timeout=60
    )
    done = run("aeiou", "xyz")
    assert done.returncode == 0, done.stderr
    assert [r["label"] for r in json.loads(done.stdout)] == ["positive", "negative"]
    done = run("--status")
    assert json.loads(done.stdout) == {"model": MODEL_NAME, "versions": [[1, "AVAILABLE"]]}
    done = run("--model", "missing", "abc")
    assert done.returncode == 1 and "model 'missing' is not served" in done.stderr


@pytest.mark.slow
def test_real_finetuned_export_matches_the_saved_model(trained_export):
    """A real kerasbert export (tiny fine-tuned classifier) served by kerasbert.serve gives,
    through the client, what the SavedModel gives when called in-process."""
    import tensorflow as tf

    texts = ["a gripping, beautifully acted film", "dull and far too long", "ok", "Ça ne va pas du tout"]
    direct = tf.saved_model.load(trained_export["export"]).signatures["serving_default"](text=tf.constant(texts))
    class_names = [n.decode() for n in direct["class_names"].numpy()[0]]
    loaded_tokens = tf.saved_model.load(trained_export["export"]).signatures["tokens"](text=tf.constant(texts))
    name = trained_export["model_name"]
    with running_server(model_base_path=trained_export["base"], model_name=name, rest_api=True) as srv:
        with Client(target=f"127.0.0.1:{srv.port}", model_name=name) as c:
            results = c.classify(texts, batch_size=3)
            meta = c.metadata()
            tokens = c.tokens(texts, batch_size=3)
        with Client(srv.rest_url, model_name=name) as rest:  # REST: the same answers
            assert rest.classify(texts, batch_size=3) == results and rest.tokens(texts) == tokens
    assert meta["inputs"] == {"text": {"dtype": "string", "shape": [None]}}
    # the classification export's `tokens` signature: WordPieces with offsets into the raw text
    strings, starts = loaded_tokens["tokens"].numpy().astype(str), loaded_tokens["token_starts"].numpy()
    for text, row, expected, offsets in zip(texts, tokens, strings, starts):
        assert [t["token"] for t in row] == [t for t in expected if t]
        assert [t["start"] for t in row] == [int(o) for o in offsets if o >= 0]
        assert all(text[t["start"] : t["end"]] for t in row)
    assert [(t["token"], t["start"], t["end"]) for t in tokens[1]] == [
        ("dull", 0, 4),
        ("and", 5, 8),
        ("far", 9, 12),
        ("too", 13, 16),
        ("long", 17, 21),
    ]
    assert [(t["token"], t["start"], t["end"]) for t in tokens[2]] == [("o", 0, 1), ("##k", 1, 2)]
    assert [r["label"] for r in results] == [n.decode() for n in direct["labels"].numpy()]
    probabilities = [[r["probabilities"][n] for n in class_names] for r in results]
    np.testing.assert_allclose(probabilities, direct["probabilities"].numpy(), atol=1e-5)
