"""Client.encode / encode_tokens / similarity / search against a real `python -m kerasbert.serve`.

The toy embedding model ("toy_embedder") is deterministic, so every expected number is computed
here in Python: ``serving_default`` maps each text to its letter counts (26 floats, a..z,
case-insensitive); ``tokens`` splits on whitespace and gives each word its letter counts
(``token_embeddings`` [batch, L, 26], ``tokens`` [batch, L] with "" at padding, ``mask``);
``score`` returns only a ``score`` (a model without embeddings). The helpers (``letter_counts``,
``shared_embedding_server``) are shared with tests/ui_utils.py (the UI tests).
"""

from __future__ import annotations

import contextlib
import json
import os
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kerasbert.client import Client, KerasBertClientError, ServerUnavailable, cosine_similarity
from serving_utils import free_port, running_server

MODEL_NAME = "toy_embedder"
LETTERS = string.ascii_lowercase


def letter_counts(text: str) -> np.ndarray:
    """The toy model's embedding of ``text``: how often each of a..z occurs (case-insensitive)."""
    lower = text.lower()
    return np.array([lower.count(c) for c in LETTERS], dtype=np.float32)


def build_toy_embedder(base_path: Path) -> Path:
    """Writes the toy embedding SavedModel as version 1 under ``base_path`` (TF Serving layout)."""
    import tensorflow as tf

    def counts(text):  # any shape of strings -> [..., 26]
        lower = tf.strings.lower(text, encoding="utf-8")
        per_letter = [tf.strings.length(tf.strings.regex_replace(lower, f"[^{c}]", "")) for c in LETTERS]
        return tf.cast(tf.stack(per_letter, axis=-1), tf.float32)

    class ToyEmbedder(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            return {"embeddings": counts(text)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve_tokens(self, text):
            tokens = tf.strings.split(text).to_tensor(default_value="")
            mask = tf.cast(tokens != "", tf.int32)
            return {"token_embeddings": counts(tokens), "tokens": tokens, "mask": mask}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve_score(self, text):
            return {"score": tf.cast(tf.strings.length(text), tf.float32)}

    module = ToyEmbedder()
    export_dir = base_path / "1"
    signatures = {"serving_default": module.serve, "tokens": module.serve_tokens, "score": module.serve_score}
    tf.saved_model.save(module, str(export_dir), signatures=signatures)
    return export_dir


_SHARED_SERVER: list = []


def shared_embedding_server(request, tmp_path_factory):
    """One toy embedding server for the session (this file)."""
    if not _SHARED_SERVER:
        stack = contextlib.ExitStack()
        base_path = tmp_path_factory.mktemp("toy_embedder") / MODEL_NAME
        build_toy_embedder(base_path)
        server = stack.enter_context(running_server(model_base_path=str(base_path), model_name=MODEL_NAME))
        _SHARED_SERVER.append(server)
        request.config.add_cleanup(stack.close)
    return _SHARED_SERVER[0]


@pytest.fixture(scope="module")
def client(request, tmp_path_factory):
    """A client of the shared toy server (``client.target`` is its address)."""
    with Client(target=shared_embedding_server(request, tmp_path_factory).address, model_name=MODEL_NAME) as c:
        yield c


TEXTS = ["abba", "The quick brown fox", "zzz", "Ünïcode façade", "", "cab", "a much longer sentence than the rest"]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


# --- cosine_similarity (no server) -----------------------------------------------------------------


def test_cosine_similarity_by_hand():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [-2.0, 0.0]])
    b = np.array([[3.0, 0.0], [0.0, 0.5]])
    expected = [[1.0, 0.0], [np.sqrt(0.5), np.sqrt(0.5)], [0.0, 0.0], [-1.0, 0.0]]  # zero vector -> 0, not NaN
    np.testing.assert_allclose(cosine_similarity(a, b), expected, atol=1e-12)
    square = cosine_similarity(a)
    assert square.shape == (4, 4) and np.allclose(square, square.T)
    np.testing.assert_allclose(np.diag(square), [1, 1, 0, 1])
    assert cosine_similarity([1.0, 2.0], [2.0, 4.0]).shape == (1, 1)
    with pytest.raises(ValueError, match="dimensions differ"):
        cosine_similarity(a, np.ones((2, 3)))


# --- encode -----------------------------------------------------------------------------------------


def test_encode_values_shape_and_order(client):
    out = client.encode(TEXTS)
    assert out.dtype == np.float32 and out.shape == (len(TEXTS), 26)
    np.testing.assert_array_equal(out, np.stack([letter_counts(t) for t in TEXTS]))
    single = client.encode("Hello")
    assert single.shape == (1, 26)
    np.testing.assert_array_equal(single[0], letter_counts("hello"))


def test_encode_batches_by_length_and_keeps_the_callers_order(client, monkeypatch):
    """17 texts, batch_size 5 -> 4 requests of similar-length texts; rows come back in input order."""
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(list("abcxyz "), size=n)) for n in rng.permutation(np.arange(1, 18) * 3)]
    sent = []
    send = client._start_request

    def spy(arrays, output_filter, signature_name):
        sent.append(list(arrays["text"]))
        return send(arrays, output_filter, signature_name)

    monkeypatch.setattr(client, "_start_request", spy)
    out = client.encode(texts, batch_size=5)
    assert [len(batch) for batch in sent] == [5, 5, 5, 2]
    lengths = [len(t) for batch in sent for t in batch]
    assert lengths == sorted(lengths)  # shortest first, so each request pads little
    np.testing.assert_array_equal(out, np.stack([letter_counts(t) for t in texts]))
    sent.clear()
    unsorted = client.encode(texts, batch_size=5, sort_by_length=False)
    assert [t for batch in sent for t in batch] == texts
    np.testing.assert_array_equal(unsorted, out)


def test_encode_errors(client):
    for empty in ([], (t for t in []), np.array([], dtype=str)):
        with pytest.raises(ValueError, match="texts is empty"):
            client.encode(empty)
    with Client(target=client.target, model_name=MODEL_NAME, signature_name="score") as c:
        with pytest.raises(KerasBertClientError, match=r"no 'embeddings' output \(outputs: score\).*--mode embedding"):
            c.encode(["abc"])
    port = free_port()  # nothing listens there
    with Client(target=f"127.0.0.1:{port}", model_name=MODEL_NAME, timeout=5) as c:
        with pytest.raises(ServerUnavailable, match=f"no TF Serving server at 127.0.0.1:{port}"):
            c.encode(["abc"])


def test_encode_tokens_strips_padding(client):
    rows = client.encode_tokens(["ab  cab", "zz", "Hello big world"])
    assert [r["tokens"] for r in rows] == [["ab", "cab"], ["zz"], ["Hello", "big", "world"]]
    for row in rows:
        assert row["embeddings"].shape == (len(row["tokens"]), 26)
        np.testing.assert_array_equal(row["embeddings"], np.stack([letter_counts(t) for t in row["tokens"]]))


# --- similarity and search --------------------------------------------------------------------------


def test_similarity_of_texts_and_embeddings(client):
    a, b = "abc", "aabbcc zz"
    expected = float(unit(letter_counts(a)) @ unit(letter_counts(b)))  # (2+2+2) / (sqrt 3 * sqrt 16)
    assert expected == pytest.approx(6 / (np.sqrt(3) * 4))
    value = client.similarity(a, b)
    assert isinstance(value, float) and value == pytest.approx(expected, abs=1e-6)

    matrix = client.similarity(TEXTS[:3], ["abba", "xyz", "123"])
    assert matrix.shape == (3, 3)
    assert matrix[0, 0] == pytest.approx(1.0)  # same text
    assert matrix[2, 1] == pytest.approx(1 / np.sqrt(3))  # "zzz" vs "xyz"
    assert matrix[0, 2] == 0.0  # "123" has no letters: a zero vector, similarity 0 (not NaN)

    square = client.similarity(TEXTS)  # a list with itself
    np.testing.assert_allclose(square, cosine_similarity(np.stack([letter_counts(t) for t in TEXTS])), atol=1e-6)

    vectors = client.encode(["abc", "xyz"])
    mixed = client.similarity("cab", vectors)  # text vs precomputed embeddings
    np.testing.assert_allclose(mixed, [[1.0, 0.0]], atol=1e-6)
    assert client.similarity(vectors[0], [1.0, 1.0, 1.0] + [0.0] * 23) == pytest.approx(1.0)


def test_similarity_sends_all_texts_in_one_request(client, monkeypatch):
    calls = []
    send = client._start_request
    monkeypatch.setattr(
        client, "_start_request", lambda arrays, f, sig: calls.append(len(arrays["text"])) or send(arrays, f, sig)
    )
    client.similarity(["a", "b"], ["c", "d", "e"])
    assert calls == [5]


def test_search_ranks_by_cosine(client):
    corpus = ["zzz", "abc abc", "xyz", "aaab", "cba"]
    hits = client.search("abc", corpus, k=3)
    # cosines: "abc abc" and "cba" are 1.0 (ties keep corpus order), then "aaab" (4/sqrt(30)), "xyz"/"zzz" 0
    assert [h["corpus_id"] for h in hits] == [1, 4, 3]
    assert [h["text"] for h in hits] == ["abc abc", "cba", "aaab"]
    np.testing.assert_allclose([h["score"] for h in hits], [1.0, 1.0, 4 / np.sqrt(30)], atol=1e-6)

    everything = client.search("zx", corpus, k=50)  # k larger than the corpus: all, ranked
    assert [h["corpus_id"] for h in everything] == [2, 0, 1, 3, 4]

    embeddings = client.encode(corpus)  # embed the corpus once, search it many times
    per_query = client.search(["yzx", "b"], embeddings, k=2)
    # "b": "abc abc" and "cba" both 1/sqrt(3) (tie: corpus order), "aaab" 1/sqrt(10)
    assert [[h["corpus_id"] for h in q] for q in per_query] == [[2, 0], [1, 4]]
    assert not any("text" in h for q in per_query for h in q)  # no texts to give back
    np.testing.assert_allclose([h["score"] for h in per_query[1]], [1 / np.sqrt(3)] * 2, atol=1e-6)

    for bad_k in (0, -1):
        with pytest.raises(ValueError, match="k must be >= 1"):
            client.search("abc", corpus, k=bad_k)
    with pytest.raises(ValueError, match="corpus is empty"):
        client.search("abc", [])
    with pytest.raises(ValueError, match="dimensions differ"):
        client.search("abc", np.ones((2, 5)))


def test_command_line_encode(client):
    env = dict(os.environ, KERASBERT_SERVER=client.target, KERASBERT_MODEL=MODEL_NAME)
    done = subprocess.run(
        [sys.executable, "-m", "kerasbert.client", "--encode", "abc", "zoo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(json.loads(done.stdout), [letter_counts("abc"), letter_counts("zoo")])


# --- a real embedding export ------------------------------------------------------------------------

REAL_TEXTS = [
    "The food was really good.",
    "quick",
    "the staff was awful and rude, the room was broken and the service was terrible",
    "",
    "The food was really good.",
    "good food",
]


@pytest.mark.slow
def test_real_embedding_export_through_the_client(tmp_path):
    """A tiny random encoder exported by `export_embedder` (mean pooling, no L2) and served:
    length-sorted small batches give the vectors of one unsorted batch (padding never leaks),
    each embedding is the mean of its token vectors from the `tokens` signature ([CLS]/[SEP]
    included), and a sentence finds its own copy first."""
    import keras

    from kerasbert.export.embedding import export_embedder
    from kerasbert.modeling import build_encoder
    from kerasbert.preprocessing.bert_preprocessor import BertPreprocessor

    vocab = Path(__file__).resolve().parents[1] / "kerasbert" / "data" / "sample" / "vocab.txt"
    preprocessor = BertPreprocessor(str(vocab), lowercase=True, sequence_length=32)
    keras.utils.set_random_seed(3)
    encoder = build_encoder(
        "custom",
        vocabulary_size=preprocessor.vocabulary_size,
        num_layers=2,
        hidden_dim=16,
        num_heads=2,
        intermediate_dim=32,
        dropout=0.0,
        max_sequence_length=32,
    )
    export_embedder(encoder, preprocessor, tmp_path, "tiny", pooling="mean", layer=-1)
    with running_server(model_base_path=tmp_path / "tiny", model_name="tiny") as srv:
        with Client(target=srv.address, model_name="tiny", timeout=60) as c:
            batched = c.encode(REAL_TEXTS, batch_size=2)  # 3 requests, each padded to its own longest
            whole = c.encode(REAL_TEXTS, batch_size=len(REAL_TEXTS), sort_by_length=False)
            rows = c.encode_tokens(REAL_TEXTS)
            hits = c.search(REAL_TEXTS[0], REAL_TEXTS[1:], k=2)
            meta = c.metadata()
    assert batched.shape == (len(REAL_TEXTS), 16) and meta["outputs"]["embeddings"]["shape"] == [None, 16]
    np.testing.assert_allclose(batched, whole, atol=1e-5)
    np.testing.assert_allclose(batched[0], batched[4], atol=1e-6)  # same text, other batch neighbours
    assert rows[0]["tokens"] == ["[CLS]", "the", "food", "was", "really", "good", ".", "[SEP]"]
    assert rows[3]["tokens"] == ["[CLS]", "[SEP]"]
    means = np.stack([row["embeddings"].mean(axis=0) for row in rows])
    np.testing.assert_allclose(means, whole, atol=1e-5)
    assert hits[0]["corpus_id"] == 3 and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
