"""Hostile and oversized input against `python -m kerasbert.serve` (issue 11, defects 1-4).

One server process (module-scoped) runs under an address-space cap (`RLIMIT_AS` set with `prlimit` once it
serves), so a regression that materialises a huge request fails the test instead of eating the machine.
Every bad request is followed by a good one: the server must keep answering.

Models are tiny and built here: `echo` (strings in, row-wise outputs of varying width, plus a `count`
signature that is not row-wise), `pair` (string + float inputs), `slow` (a few ms of matmuls per row, and a
`wide` signature allocating 256 KiB per row) and `broken` (version 2 lacks its variables).
"""

from __future__ import annotations

import http.client
import json
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from unittest import mock

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving_utils import REPO_ROOT, running_server

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
AS_HEADROOM = 3 << 30  # address space the test server may grow by (it has ~23 GB to eat otherwise)
RSS_BOUND_MB = 300  # resident growth allowed after all the big requests, against the warm baseline


# ------------------------------------------------------------------------------------------ models
class Echo(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        words = tf.strings.split(text)
        return {
            "length": tf.strings.length(text),
            "words": words.to_tensor(default_value=""),  # width = most words in the call
            "word_lengths": tf.strings.length(words).to_tensor(default_value=0),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def count(self, text):
        return {"n": tf.shape(text, out_type=tf.int64)}  # one value per call, not per row


class Pair(tf.Module):
    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name="text"), tf.TensorSpec([None], tf.float32, name="w")]
    )
    def serve(self, text, w):
        return {"scaled": tf.cast(tf.strings.length(text), tf.float32) * w}


class Slow(tf.Module):
    def __init__(self):
        super().__init__()
        self.scale = tf.Variable(1e-3)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):  # ~1.4 ms of matmuls per row here: 3,000 rows take ~4 s in 64-row chunks, ~8 s in one call
        n = tf.shape(text)[0]
        x = tf.fill([n, 128, 128], 0.01) + tf.reshape(tf.cast(tf.strings.length(text), tf.float32), [-1, 1, 1])
        x = x * self.scale
        for _ in range(64):
            x = tf.tanh(tf.matmul(x, x))
        return {"score": tf.reduce_sum(x, axis=[1, 2])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def wide(self, text):  # 256 KiB of floats per row: 10,000 rows are 2.6 GB in one call
        n = tf.shape(text)[0]
        x = tf.fill([n, 256, 256], 1.0) * tf.reshape(tf.cast(tf.strings.length(text), tf.float32), [-1, 1, 1])
        return {"total": tf.reduce_sum(x, axis=[1, 2])}


def _save(path, module, **signatures):
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-models")
    echo = Echo()
    _save(root / "echo" / "1", echo, serving_default=echo.serve, count=echo.count)
    pair = Pair()
    _save(root / "pair" / "1", pair, serving_default=pair.serve)
    slow = Slow()
    _save(root / "slow" / "1", slow, serving_default=slow.serve, wide=slow.wide)
    shutil.copytree(root / "slow" / "1", root / "broken" / "1")
    shutil.copytree(root / "slow" / "1", root / "broken" / "2")
    for f in (root / "broken" / "2" / "variables").iterdir():
        f.unlink()  # "Failed to find any matching files for /<tmp>/broken/2/variables/variables"
    config = root / "models.config"
    config.write_text(
        "model_config_list {\n"
        + "".join(
            f'  config {{ name: "{m}" base_path: "{root / m}" model_platform: "tensorflow" }}\n'
            for m in ("echo", "pair", "slow")
        )
        + f'  config {{ name: "broken" base_path: "{root / "broken"}" model_platform: "tensorflow" '
        "model_version_policy { all {} } }\n}\n"
    )
    return root


def vm_kb(pid: int, field: str) -> int:
    """A `/proc/<pid>/status` size field (VmRSS, VmSize, VmHWM) in kB."""
    text = open(f"/proc/{pid}/status").read()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime, stime in clock ticks (USER_HZ = 100)


@pytest.fixture(scope="module")
def server(models):
    with running_server(
        model_config_file=models / "models.config",
        rest_api=True,
        extra_args=[
            "--file_system_poll_wait_seconds",
            "0",
            "--rest_api_read_timeout_in_ms",
            "1000",
            "--rest_api_max_body_bytes",
            str(1 << 20),
            "--rest_api_timeout_in_ms",
            "1000",
        ],
    ) as srv:
        pid = srv.proc.pid
        cap = vm_kb(pid, "VmSize") * 1024 + AS_HEADROOM
        resource.prlimit(pid, resource.RLIMIT_AS, (cap, cap))
        # warm every signature once, then take the resident baseline
        for sig in ("", "wide"):
            grpc_predict(srv, "slow", {"text": ["warm"] * 64}, signature=sig)
        grpc_predict(srv, "echo", {"text": ["warm up"] * 64})
        rest(srv, "/v1/models/echo:predict", {"instances": ["warm"]})
        srv.baseline_rss_mb = vm_kb(pid, "VmRSS") / 1024
        yield srv


# ----------------------------------------------------------------------------------------- helpers
def grpc_call(srv, request, timeout=30):
    with srv.channel() as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=timeout)


def make_request(model, inputs, signature=""):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(
            value if isinstance(value, tensor_pb2.TensorProto) else tf.make_tensor_proto(value)
        )
    return request


def grpc_predict(srv, model, inputs, signature="", timeout=30):
    response = grpc_call(srv, make_request(model, inputs, signature), timeout)
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def grpc_error(srv, request, timeout=30) -> tuple[grpc.RpcError, float]:
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        grpc_call(srv, request, timeout)
    return info.value, time.monotonic() - start


def rest(srv, path, body=None, timeout=30):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(srv.rest_url + path, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), err.headers


def raw_http(srv, head: bytes, body: bytes = b"", pause: float = 0, timeout: float = 10):
    """Sends raw bytes (then `pause`s with the connection open) and parses the answer: (status, json, seconds)."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", srv.rest_port), timeout=timeout) as sock:
        sock.sendall(head + body)
        if pause:
            time.sleep(pause)
        response = http.client.HTTPResponse(sock)
        response.begin()
        payload = json.loads(response.read() or b"null")
        return response.status, payload, time.monotonic() - start


def assert_serving(srv):
    """A good gRPC and a good REST request both answer correctly."""
    out = grpc_predict(srv, "echo", {"text": ["still here"]})
    assert out["length"].tolist() == [10] and out["words"].tolist() == [[b"still", b"here"]]
    code, body, _ = rest(srv, "/v1/models/echo:predict", {"instances": ["ok go"]})
    assert code == 200 and body["predictions"][0]["length"] == 5, body
    assert srv.proc.poll() is None


def string_proto(dims, values):
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=values)
    for d in dims:
        proto.tensor_shape.dim.add().size = d
    return proto


def float_proto(dims, values):
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=values)
    for d in dims:
        proto.tensor_shape.dim.add().size = d
    return proto


# ------------------------------------------------------------------ 1. memory-bounded, fast refusals
def test_30_byte_request_declaring_100000_rows_is_refused_at_once(server):
    request = make_request("slow", {"text": string_proto([100000], [b"x"])})
    assert request.ByteSize() < 40
    err, seconds = grpc_error(server, request, timeout=10)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert "100000 rows" in err.details() and "--max_request_rows" in err.details()
    print(f"\n30-byte [100000] request refused in {seconds * 1000:.0f} ms")
    assert seconds < 1.0
    assert_serving(server)


def test_250_million_float_elements_are_refused_without_materialising(server):
    rss_before = vm_kb(server.proc.pid, "VmRSS")
    # to a string input: the dtype is checked before anything is built
    err, seconds = grpc_error(server, make_request("echo", {"text": float_proto([250_000_000], [1.0])}))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expects dtype string but got float32" in err.details() and seconds < 1.0
    # to a float input: past the row cap, and past the byte cap as a [1, 2.5e8] tensor
    err, seconds = grpc_error(
        server, make_request("pair", {"text": string_proto([1], [b"a"]), "w": float_proto([250_000_000], [1.0])})
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "--max_request_rows" in err.details()
    assert seconds < 1.0
    # 1,000 rows of a broadcast 1 MB string declare 1 GB: the byte cap, though rows are fine
    err, seconds = grpc_error(server, make_request("echo", {"text": string_proto([1000], [b"x" * 1_000_000])}))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "--max_request_bytes" in err.details()
    assert seconds < 2.0
    grown = (vm_kb(server.proc.pid, "VmRSS") - rss_before) / 1024
    print(f"\n2.5e8 floats / 1 GB of strings refused; RSS grew {grown:.0f} MB")
    assert grown < 100  # nothing near 1 GB was allocated
    assert_serving(server)


def test_negative_dim_is_rejected(server):
    err, _ = grpc_error(server, make_request("echo", {"text": string_proto([-1], [b"a"])}))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "negative" in err.details(), err.details()
    assert_serving(server)


def test_deadline_stops_a_3000_row_request_and_the_server_is_idle_again(server):
    pid = server.proc.pid
    err, seconds = grpc_error(server, make_request("slow", {"text": [f"row {i}" for i in range(3000)]}), timeout=1)
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED and seconds < 1.5
    time.sleep(1.0)  # the server may finish its current chunk (~0.1 s here)
    cpu_before = cpu_seconds(pid)
    time.sleep(1.0)
    busy = cpu_seconds(pid) - cpu_before  # one call of 3,000 rows would keep both cores busy ~5 s
    start = time.monotonic()
    out = grpc_predict(server, "slow", {"text": ["quick"]}, timeout=10)
    latency = time.monotonic() - start
    print(f"\ndeadline: CPU in the 2nd second after the deadline {busy:.2f} s; quick request {latency * 1000:.0f} ms")
    assert busy < 0.3 and latency < 0.5 and out["score"].shape == (1,)
    assert "DEADLINE_EXCEEDED" in server.log()


def test_cancelled_call_stops_the_work(server):
    pid = server.proc.pid
    with server.channel() as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        future = stub.Predict.future(make_request("slow", {"text": [f"row {i}" for i in range(3000)]}), timeout=30)
        time.sleep(0.7)
        assert future.cancel()
    time.sleep(1.0)
    cpu_before = cpu_seconds(pid)
    time.sleep(1.0)
    busy = cpu_seconds(pid) - cpu_before
    print(f"\ncancel: CPU in the 2nd second after the client cancelled {busy:.2f} s")
    assert busy < 0.3
    assert_serving(server)


def test_rest_timeout_stops_the_work_too(server):
    pid = server.proc.pid
    start = time.monotonic()
    code, payload, _ = rest(server, "/v1/models/slow:predict", {"instances": [f"row {i}" for i in range(3000)]})
    seconds = time.monotonic() - start
    assert code == 504 and "--rest_api_timeout_in_ms" in payload["error"] and seconds < 1.5
    time.sleep(1.0)
    cpu_before = cpu_seconds(pid)
    time.sleep(1.0)
    busy = cpu_seconds(pid) - cpu_before
    print(f"\nREST timeout: CPU in the 2nd second after the 504 {busy:.2f} s")
    assert busy < 0.3
    assert_serving(server)


def test_10000_row_batch_is_answered_in_bounded_memory(server):
    pid = server.proc.pid
    texts = [f"w{i % 97} " * (i % 5) for i in range(10_000)]
    start = time.monotonic()
    out = grpc_predict(server, "slow", {"text": texts}, signature="wide", timeout=60)
    seconds = time.monotonic() - start
    np.testing.assert_allclose(out["total"], [256.0 * 256.0 * len(t) for t in texts])
    echo = grpc_predict(server, "echo", {"text": texts}, timeout=60)  # variable-width outputs joined across chunks
    want = [t.split() + [""] * (4 - len(t.split())) for t in texts]
    assert echo["words"].astype(str).tolist() == want
    assert echo["word_lengths"].tolist() == [[len(w) for w in row] for row in want]
    # 10,001 rows: refused
    err, _ = grpc_error(server, make_request("echo", {"text": texts + ["one more"]}))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "--max_request_rows" in err.details()
    rss = vm_kb(pid, "VmRSS") / 1024
    print(f"\n10,000 rows 'wide' (2.6 GB unchunked): {seconds:.2f} s; RSS {server.baseline_rss_mb:.0f} -> {rss:.0f} MB")
    assert rss - server.baseline_rss_mb < RSS_BOUND_MB
    assert_serving(server)


def test_rss_stays_bounded_after_all_big_requests(server):
    # runs after the others in file order: every big request above has been through the server by now
    rss = vm_kb(server.proc.pid, "VmRSS") / 1024
    hwm = vm_kb(server.proc.pid, "VmHWM") / 1024
    print(f"\nRSS baseline {server.baseline_rss_mb:.0f} MB, now {rss:.0f} MB, peak {hwm:.0f} MB")
    assert rss - server.baseline_rss_mb < RSS_BOUND_MB


# ---------------------------------------------------------------------- chunking (in process, fast)
def test_chunked_predict_equals_one_call(models):
    from kerasbert.serving.servable import Servable

    servable = Servable.load("echo", 1, str(models / "echo" / "1"))
    texts = tf.constant([" ".join(["ab"] * (i % 6)) + ("é" * (i % 3)) for i in range(50)])
    whole = servable.predict("serving_default", {"text": texts}, chunk_rows=0)
    for chunk in (1, 7, 49):
        chunked = servable.predict("serving_default", {"text": texts}, chunk_rows=chunk)
        for key in whole:
            np.testing.assert_array_equal(chunked[key], whole[key], err_msg=f"{key} chunk={chunk}")
    # a signature that is not row-wise (one count per call) still answers for the whole request
    assert servable.predict("count", {"text": texts}, chunk_rows=7)["n"].tolist() == [50]


def test_chunked_predict_stops_between_chunks(models):
    from kerasbert.serving.errors import ServingError
    from kerasbert.serving.limits import request_active
    from kerasbert.serving.servable import Servable

    servable = Servable.load("echo", 1, str(models / "echo" / "1"))
    calls = []
    real = servable.functions["serving_default"]
    servable.functions["serving_default"] = lambda **kw: calls.append(1) or real(**kw)
    texts = tf.constant(["a"] * 100)
    with pytest.raises(ServingError) as info:
        servable.predict("serving_default", {"text": texts}, deadline=time.monotonic() - 1, chunk_rows=10)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and calls == []
    answers = iter([True, True, False])  # the client goes away after two chunks
    token = request_active.set(lambda: next(answers))
    try:
        with pytest.raises(ServingError) as info:
            servable.predict("serving_default", {"text": texts}, chunk_rows=10)
    finally:
        request_active.reset(token)
    assert info.value.code == grpc.StatusCode.CANCELLED and len(calls) == 2


# ------------------------------------------------------------------------------------------ 2. ports
def run_cli(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "kerasbert.serve", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("flag, value", [("--port", "70000"), ("--rest_api_port", "-1"), ("--rest_api_port", "65536")])
def test_out_of_range_port_is_a_flag_error(models, flag, value):
    result = run_cli("--model_base_path", str(models / "echo"), flag, value, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and value in lines[0], result.stderr


def test_second_server_on_a_busy_port_refuses_to_start(server, models):
    result = run_cli("--port", str(server.port), "--model_base_path", str(models / "echo"), "--model_name", "x")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("kerasbert.serve: error:")]
    assert len(errors) == 1 and "--port" in errors[0], result.stderr[-2000:]
    assert_serving(server)


# ------------------------------------------------------------------------------------------- 3. REST
def post_head(path: str, length: str, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


@pytest.mark.parametrize(
    "path, body, needle",
    [
        (f"/v1/models/echo/versions/{2**70}:predict", {"instances": ["a"]}, "Failed to convert version"),
        ("/v1/models/echo:predict", {"signature_name": [], "instances": ["a"]}, "signature_name"),
        ("/v1/models/echo:predict", {"signature_name": ["x"], "instances": ["a"]}, "signature_name"),
        ("/v1/models/echo:predict", b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deep"),
        ("/v1/models/echo:predict", b'{"instances": [' + b"[" * 500 + b'"a"' + b"]" * 500 + b"]}", "input 'text'"),
        ("/v1/models/echo:predict", {"instances": [{"b64": "!!!"}]}, "base64"),
        ("/v1/models/echo:predict", {"inputs": {"text": ["a"] * 10_001}}, "--max_request_rows"),
    ],
)
def test_rest_client_mistakes_are_400(server, path, body, needle):
    code, payload, _ = rest(server, path, body)
    assert code == 400 and set(payload) == {"error"} and needle in payload["error"], payload
    assert_serving(server)


def test_rest_version_2_pow_70_in_status_path(server):
    code, payload, _ = rest(server, f"/v1/models/echo/versions/{2**70}")
    assert code == 400 and "Failed to convert version" in payload["error"]
    assert_serving(server)


def test_rest_good_base64_still_works(server):
    code, payload, _ = rest(server, "/v1/models/echo:predict", {"instances": [{"b64": "YWIgYw=="}, {"b64": "YWI"}]})
    assert code == 200 and [p["length"] for p in payload["predictions"]] == [4, 2]


@pytest.mark.parametrize("length, status", [("abc", 400), ("1e12", 400), ("-5", 400), (str(10**12), 413)])
def test_rest_bad_content_length(server, length, status):
    got, payload, seconds = raw_http(server, post_head("/v1/models/echo:predict", length))
    assert got == status and "error" in payload and seconds < 1.0, payload
    assert_serving(server)


def test_rest_body_over_the_cap_is_413_unread(server):
    # only the headers are sent: the answer must not wait for 2 MB of body
    got, payload, seconds = raw_http(server, post_head("/v1/models/echo:predict", str(2 << 20)))
    assert got == 413 and "--rest_api_max_body_bytes" in payload["error"] and seconds < 1.0
    assert_serving(server)


def test_rest_short_body_times_out_quickly(server):
    got, payload, seconds = raw_http(server, post_head("/v1/models/echo:predict", "100"), b'{"instances": ')
    print(f"\nshort body answered {got} after {seconds:.2f} s (--rest_api_read_timeout_in_ms 1000)")
    assert got == 408 and "error" in payload and 0.9 < seconds < 3.0
    assert_serving(server)


def test_rest_http_layer_errors_are_json(server):
    got, payload, _ = raw_http(server, b"BREW /v1/models/echo HTTP/1.1\r\nHost: x\r\n\r\n")
    assert got == 501 and "error" in payload
    got, payload, _ = raw_http(server, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n")
    assert got == 414 and "error" in payload
    assert_serving(server)


# ------------------------------------------------------------------------------- 4. no disclosure
def test_model_status_has_no_filesystem_paths(server, models):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "broken"
    with server.channel() as channel:
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
    by_version = {s.version: s for s in response.model_version_status}
    assert by_version[1].state == AVAILABLE
    message = by_version[2].status.error_message
    assert message and str(models) not in message and "/tmp" not in message, message
    assert not re.search(r"(^|\s)/\w", message), message
    code, payload, _ = rest(server, "/v1/models/broken")
    assert code == 200 and str(models) not in json.dumps(payload)
    assert str(models / "broken" / "2") in server.log()  # the operator still sees where


def test_not_found_errors_do_not_list_what_is_served(server):
    err, _ = grpc_error(server, make_request("nope", {"text": ["a"]}))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert err.details() == "Servable not found for request: Latest(nope)"
    request = make_request("echo", {"text": ["a"]})
    request.model_spec.version.value = 9
    err, _ = grpc_error(server, request)
    assert err.details() == "Servable not found for request: Specific(echo, 9)"
    request = make_request("echo", {"text": ["a"]})
    request.model_spec.version_label = "beta"
    err, _ = grpc_error(server, request)
    assert err.code() == grpc.StatusCode.NOT_FOUND and err.details() == "Unrecognized servable version label: beta"
    err, _ = grpc_error(server, make_request("echo", {"text": ["a"]}, signature="nah"))
    assert err.details() == 'Serving signature name: "nah" not found in signature def'
    code, payload, _ = rest(server, "/v1/models/nope")
    assert code == 404 and not any(m in payload["error"] for m in ("echo", "pair", "slow"))
    assert_serving(server)


def test_internal_errors_name_no_exception_class():
    from kerasbert.serving.grpc_service import PredictionService
    from kerasbert.serving.rest import RestApi

    manager = mock.Mock()
    manager.get_servable.side_effect = KeyError("/srv/secret/models")
    context = mock.Mock()
    context.time_remaining.return_value = None
    PredictionService(manager).Predict(make_request("m", {"text": ["a"]}), context)
    code, message = context.abort.call_args.args
    assert code == grpc.StatusCode.INTERNAL
    assert "KeyError" not in message and "secret" not in message and "reference" in message
    api = RestApi(manager)
    try:
        status, payload = api.handle("POST", "/v1/models/m:predict", b'{"instances": ["a"]}')
    finally:
        api.close()
    assert status == 500 and "KeyError" not in payload["error"] and "secret" not in payload["error"]


def test_server_header_names_no_python_version(server):
    _, _, headers = rest(server, "/v1/models/echo")
    assert "Python" not in (headers.get("Server") or "") and "BaseHTTP" not in (headers.get("Server") or "")


def test_public_message_strips_paths():
    from kerasbert.serving.errors import public_message

    text = "Failed to find any matching files for /home/me/models/x/2/variables/variables\n\tat line"
    assert public_message(RuntimeError(text)) == "Failed to find any matching files for …/variables"


def test_limits_flags_are_in_help():
    result = run_cli("--help", timeout=30)
    for flag in ("--max_request_rows", "--max_request_bytes", "--predict_chunk_rows", "--rest_api_max_body_bytes"):
        assert flag in result.stdout
