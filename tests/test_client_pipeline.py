"""The client at bert-as-service's level, against a real `python -m kerasbert.serve` (gRPC and REST):
pipelined batches (several requests in flight, answers in input order), the futures API
(``encode_async``...), ``show_tokens``, the progress line, ``InvalidInput`` for non-strings, and the REST
transport's methods and errors.

The server runs the toy embedding model of tests/test_client_embeddings.py (a tf.Module: no training),
whose every answer is computed here in Python (letter counts).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import socket
import threading
import time

import numpy as np
import pytest

from kerasbert.client import (
    Client,
    InvalidInput,
    ModelNotFound,
    NotAString,
    RequestTimeout,
    ServerUnavailable,
    SignatureNotFound,
    WrongTask,
)
from kerasbert.client.progress import Progress
from serving_utils import free_port, running_server
from test_client_embeddings import MODEL_NAME, build_toy_embedder, letter_counts

RNG = np.random.default_rng(7)
# 203 texts of 1-40 characters: with batch_size 5, 41 requests.
TEXTS = ["".join(RNG.choice(list("abcdefxyz  "), size=n)).strip() or "q" for n in RNG.integers(1, 41, size=203)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("toy_embedder_rest") / MODEL_NAME
    build_toy_embedder(base)
    with running_server(model_base_path=str(base), model_name=MODEL_NAME, rest_api=True) as srv:
        yield srv


@pytest.fixture(params=["grpc", "rest"])
def target(request, server):
    return server.address if request.param == "grpc" else server.rest_url


def expected(texts):
    return np.stack([letter_counts(t) for t in texts])


class InFlight:
    """Counts the client's requests between `_start_request` and `_finish`: the most at once, and the order."""

    def __init__(self, client, monkeypatch):
        self.now = self.most = 0
        self.sent = []
        start, finish = client._start_request, client._finish

        def spy_start(arrays, output_filter, signature_name):
            self.now += 1
            self.most = max(self.most, self.now)
            self.sent.append(list(next(iter(arrays.values()))))
            return start(arrays, output_filter, signature_name)

        def spy_finish(pending, signature_name):
            try:
                return finish(pending, signature_name)
            finally:
                self.now -= 1

        monkeypatch.setattr(client, "_start_request", spy_start)
        monkeypatch.setattr(client, "_finish", spy_finish)


# --- pipelining -------------------------------------------------------------------------------------


def test_pipelined_encode_equals_sequential_and_keeps_order(target, monkeypatch):
    """41 requests of 5 texts, 4 in flight: the same vectors as one request at a time, in input order."""
    with (
        Client(target, model_name=MODEL_NAME, max_in_flight=4) as piped,
        Client(target, model_name=MODEL_NAME, max_in_flight=1) as sequential,
    ):
        seen_piped, seen_sequential = InFlight(piped, monkeypatch), InFlight(sequential, monkeypatch)
        got = piped.encode(TEXTS, batch_size=5, sort_by_length=False)
        np.testing.assert_array_equal(got, sequential.encode(TEXTS, batch_size=5, sort_by_length=False))
        np.testing.assert_array_equal(got, expected(TEXTS))
        assert seen_piped.most == 4 and seen_sequential.most == 1
        assert len(seen_piped.sent) == 41 and [t for batch in seen_piped.sent for t in batch] == TEXTS
        # sorted by length (the default): requests leave shortest first, rows still come back in input order
        np.testing.assert_array_equal(piped.encode(TEXTS, batch_size=5), expected(TEXTS))
        # the other batched methods share the pipeline
        tokens = piped.encode_tokens(TEXTS[:23], batch_size=2)
        assert [row["tokens"] for row in tokens] == [t.split() for t in TEXTS[:23]]
        raw = piped.predict({"text": TEXTS}, batch_size=5)
        np.testing.assert_array_equal(raw["embeddings"], expected(TEXTS))


def test_a_failed_request_raises_and_stops_the_pipeline(server, monkeypatch):
    """The 3rd request of 10 goes to a signature the model lacks: its error is raised, nothing after it is sent."""
    with Client(server.address, model_name=MODEL_NAME, max_in_flight=3) as client:
        start, calls = client._start_request, []

        def failing_third(arrays, output_filter, signature_name):
            calls.append(signature_name)
            return start(arrays, output_filter, "nope" if len(calls) == 3 else signature_name)

        monkeypatch.setattr(client, "_start_request", failing_third)
        with pytest.raises(SignatureNotFound, match="no signature"):
            client.encode(TEXTS[:50], batch_size=5)
        # 3 in flight when the 3rd is collected, 2 more started before it (then the error asks for metadata)
        assert calls.count("serving_default") == 5 and len(calls) <= 6


# --- futures ----------------------------------------------------------------------------------------


def test_async_methods_return_futures(target):
    with Client(target, model_name=MODEL_NAME) as client:
        chunks = [TEXTS[i : i + 50] for i in range(0, len(TEXTS), 50)]
        futures = [client.encode_async(chunk, batch_size=8) for chunk in chunks]
        assert all(isinstance(f, concurrent.futures.Future) for f in futures)
        np.testing.assert_array_equal(np.concatenate([f.result(timeout=60) for f in futures]), expected(TEXTS))
        similarity = client.similarity_async("abc", "cba").result(timeout=60)
        assert similarity == pytest.approx(1.0)
        hits = client.search_async("zzz", ["abc", "zz", "z a"], k=1).result(timeout=60)
        assert hits == [{"corpus_id": 1, "score": pytest.approx(1.0), "text": "zz"}]
        # errors come out of result(), typed
        assert isinstance(client.encode_async(["a", None]).exception(timeout=60), NotAString)
        with pytest.raises(WrongTask):
            client.classify_async("abc").result(timeout=60)
        # one client shared by threads, like bert-as-service's ConcurrentBertClient
        results = {}

        def work(i):
            results[i] = client.encode(chunks[i], batch_size=7)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(chunks))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        np.testing.assert_array_equal(np.concatenate([results[i] for i in range(len(chunks))]), expected(TEXTS))


# --- show_tokens, tokens ----------------------------------------------------------------------------


def test_show_tokens(target):
    with Client(target, model_name=MODEL_NAME) as client:
        texts = ["hello big world", "a", "Ünïcode façade x"]
        vectors, tokens = client.encode(texts, show_tokens=True)
        np.testing.assert_array_equal(vectors, expected(texts))
        assert tokens == [t.split() for t in texts]
        assert client.tokens("hello big world") == [{"token": w, "start": None, "end": None} for w in texts[0].split()]


# --- progress ---------------------------------------------------------------------------------------


def test_progress_line(server, capsys):
    with Client(server.address, model_name=MODEL_NAME) as client:
        client.encode(TEXTS, batch_size=10)
        assert capsys.readouterr().err == ""  # stderr is not a terminal here: off by default
        client.encode(TEXTS, batch_size=10, progress=True)
        err = capsys.readouterr().err
        assert err.endswith("\n") and f"rows {len(TEXTS)}/{len(TEXTS)} (100%)" in err.split("\r")[-1]
    with Client(server.address, model_name=MODEL_NAME, progress=True) as client:
        client.encode(["one request"])  # the client's setting; one request is shown too when forced
        assert "rows 1/1 (100%)" in capsys.readouterr().err


def test_progress_is_on_for_a_terminal_only_with_several_requests():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert Progress(100, stream=Terminal(), requests=3).enabled
    assert not Progress(100, stream=Terminal(), requests=1).enabled
    assert not Progress(100, stream=io.StringIO(), requests=3).enabled
    assert not Progress(100, enabled=False, stream=Terminal(), requests=3).enabled


# --- input checks -----------------------------------------------------------------------------------


def test_non_strings_are_invalid_input_naming_the_index(target, monkeypatch):
    with Client(target, model_name=MODEL_NAME) as client:
        sent = InFlight(client, monkeypatch).sent
        for bad, where in ((["a", None], r"texts\[1\] is None \(NoneType\)"), ([b"x", "y", 3.5], r"texts\[2\] is 3.5")):
            with pytest.raises(InvalidInput, match=where) as info:
                client.encode(bad)
            assert isinstance(info.value, TypeError)  # as before, for code catching TypeError
        with pytest.raises(InvalidInput, match="got NoneType"):
            client.encode(None)
        with pytest.raises(InvalidInput, match=r"input 'text': element \[0\] is None"):
            client.predict({"text": [None]})
        assert sent == []  # nothing reached the server


# --- REST: the same methods and errors as gRPC ------------------------------------------------------


def test_rest_answers_equal_grpc(server):
    with (
        Client(server.address, model_name=MODEL_NAME) as grpc_client,
        Client(server.rest_url, model_name=MODEL_NAME) as rest,
    ):
        assert rest.rest and not grpc_client.rest
        texts = ["abba", "The quick brown fox", "", "Ünïcode façade 東京"]
        np.testing.assert_array_equal(rest.encode(texts), grpc_client.encode(texts))
        for by_rest, by_grpc in zip(rest.encode_tokens(texts), grpc_client.encode_tokens(texts), strict=True):
            assert by_rest["tokens"] == by_grpc["tokens"]
            np.testing.assert_array_equal(by_rest["embeddings"], by_grpc["embeddings"])
        np.testing.assert_allclose(rest.similarity(texts), grpc_client.similarity(texts), atol=1e-12)
        assert rest.search("fox", texts, k=2) == grpc_client.search("fox", texts, k=2)
        assert rest.tokens(texts) == grpc_client.tokens(texts)
        score = {"text": texts}
        with Client(server.rest_url, model_name=MODEL_NAME, signature_name="score") as rest_score:
            np.testing.assert_array_equal(rest_score.predict(score)["score"], [len(t.encode()) for t in texts])  # bytes
        assert rest.metadata() == grpc_client.metadata()
        assert rest.status() == grpc_client.status() == [(1, "AVAILABLE")]
        assert rest.task is None  # the toy model has no metadata signature, over either protocol
        # a version number and the output filter, as over gRPC
        with Client(server.rest_url, model_name=MODEL_NAME, version=1, signature_name="tokens") as pinned:
            assert set(pinned.predict({"text": ["a b"]}, output_filter=["tokens"])) == {"tokens"}


def test_rest_errors(server):
    port = free_port()
    with Client(f"http://127.0.0.1:{port}", model_name=MODEL_NAME, timeout=5) as down:
        for call in (lambda: down.encode("abc"), down.status, down.metadata):
            with pytest.raises(
                ServerUnavailable, match=f"no TF Serving REST API at http://127.0.0.1:{port}.*--rest_api_port"
            ):
                call()
    with Client(server.rest_url, model_name="no_such_model") as missing:
        for call in (lambda: missing.encode("abc"), missing.status, missing.metadata):
            with pytest.raises(ModelNotFound, match="model 'no_such_model' is not served") as info:
                call()
            assert info.value.code == "NOT_FOUND"
    with Client(server.rest_url, model_name=MODEL_NAME, signature_name="nope") as wrong_signature:
        with pytest.raises(SignatureNotFound, match="no signature 'nope'"):
            wrong_signature.encode("abc")
    with Client(server.rest_url, model_name=MODEL_NAME) as rest:
        with pytest.raises(InvalidInput, match="rejected") as info:
            rest.predict({"txt": ["abc"]})
        assert info.value.code == "INVALID_ARGUMENT"
        with pytest.raises(WrongTask, match="no 'probabilities' output"):
            rest.classify("abc")
    with Client(server.rest_url, model_name=MODEL_NAME, version=7) as gone:
        with pytest.raises(ModelNotFound):
            gone.encode("abc")


def test_rest_timeout():
    """A socket that accepts connections but never answers: RequestTimeout after the client's timeout."""
    with contextlib.closing(socket.socket()) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        with Client(f"http://127.0.0.1:{listener.getsockname()[1]}", model_name="x", timeout=0.5) as c:
            start = time.monotonic()
            with pytest.raises(RequestTimeout, match="did not answer within 0.5 s") as info:
                c.encode("abc")
            assert time.monotonic() - start < 5 and info.value.code == "DEADLINE_EXCEEDED"


def test_rest_keeps_the_connection_alive(server, monkeypatch):
    """40 requests over one connection per worker thread, not one connection each."""
    import http.client

    opened = []
    connect = http.client.HTTPConnection.connect

    def counting_connect(self):
        opened.append(self)
        return connect(self)

    monkeypatch.setattr(http.client.HTTPConnection, "connect", counting_connect)
    with Client(server.rest_url, model_name=MODEL_NAME, max_in_flight=2) as rest:
        np.testing.assert_array_equal(rest.encode(TEXTS[:200], batch_size=5), expected(TEXTS[:200]))
    assert 1 <= len(opened) <= 2


# --- command line -----------------------------------------------------------------------------------


def test_command_line_help_has_no_markup_and_speaks_rest(server, capsys):
    import subprocess
    import sys

    from serving_utils import REPO_ROOT

    shown = subprocess.run(
        [sys.executable, "-m", "kerasbert.client", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "``" not in shown and "http://host:port" in shown and "--max-in-flight" in shown
    from kerasbert.client import main

    assert main(["--server", server.rest_url, "--model", MODEL_NAME, "--encode", "--batch-size", "1", "ab", "c"]) == 0
    assert json.loads(capsys.readouterr().out) == [letter_counts("ab").tolist(), letter_counts("c").tolist()]
    assert main(["--server", server.rest_url, "--model", MODEL_NAME, "--tokens", "hello world"]) == 0
    assert [t["token"] for t in json.loads(capsys.readouterr().out)[0]] == ["hello", "world"]
    assert main(["--server", server.rest_url, "--model", "nope", "--status"]) == 1
    assert "model 'nope' is not served" in capsys.readouterr().err
