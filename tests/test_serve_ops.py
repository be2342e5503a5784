"""Operations features of `python -m kerasbert.serve`: Prometheus metrics, health, TLS, CORS and Host checks.

Two server processes (module-scoped, memory capped):

* `ops_server`: two models, one of whose folders gets its first version only during the test; REST with
  `--monitoring_config_file`, `--rest_api_enable_cors_support`, `--enable_grpc_healthcheck_service`.
* `tls_server`: `--ssl_config_file` with `client_verify: true`; certificates made here with `openssl`.

Flag errors run `server.main` in-process (they exit before TensorFlow is imported).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from kerasbert.serving import server as serve_main
from kerasbert.serving.metrics import CONTENT_TYPE
from serving_utils import REPO_ROOT, free_port, stop_process

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
MEMORY_CAP = 8 << 30  # address space per server process (TF reserves a lot of virtual memory up front)


class Shout(tf.Module):
    """serving_default(text) -> upper, length."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        return {"upper": tf.strings.upper(text), "length": tf.strings.length(text)}


def save_version(base: Path, version: int) -> None:
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{version}"
    module = Shout()
    tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.serve})
    os.rename(tmp, base / str(version))


def _cap_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


@contextlib.contextmanager
def serve(args: list[str], ready, timeout: float = 90):
    """Runs `python -m kerasbert.serve *args` until the block ends; waits until `ready()` is true."""
    log = tempfile.NamedTemporaryFile(prefix="kerasbert-ops-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kerasbert.serve", *args],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=_cap_memory,
    )
    failed = True
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError(f"kerasbert.serve exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError("kerasbert.serve did not come up")
            time.sleep(0.2)
        yield proc
        failed = False
    finally:
        stop_process(proc)
        if failed:
            sys.stderr.write(Path(log.name).read_text(errors="replace"))
        os.unlink(log.name)


def rest(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """`(status, headers, body bytes)` of one request to 127.0.0.1:port (Host header as given, else default)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------ ops server
@pytest.fixture(scope="module")
def ops_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("ops")
    save_version(root / "echo", 1)
    (root / "late").mkdir()  # gets version 1 during test_health_follows_model_availability
    config = root / "models.config"
    config.write_text(
        "model_config_list {\n"
        f'  config {{ name: "echo" base_path: "{root / "echo"}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "late" base_path: "{root / "late"}" model_platform: "tensorflow" }}\n'
        "}\n"
    )
    monitoring = root / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n')
    port, rest_port = free_port(), free_port()
    args = [
        "--port", str(port), "--rest_api_port", str(rest_port), "--model_config_file", str(config),
        "--monitoring_config_file", str(monitoring), "--rest_api_enable_cors_support",
        "--enable_grpc_healthcheck_service", "--file_system_poll_wait_seconds", "0.3",
    ]  # fmt: skip

    def ready():
        try:
            return rest(rest_port, "GET", "/v1/health/live")[0] == 200
        except OSError:
            return False

    with serve(args, ready) as proc:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        yield {"port": port, "rest_port": rest_port, "root": root, "channel": channel, "proc": proc}
        channel.close()


def health_status(channel, service: str) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_health_follows_model_availability(ops_server):
    channel, rest_port = ops_server["channel"], ops_server["rest_port"]
    # "late" has no version yet: not ready, overall and for that model; "echo" is
    assert health_status(channel, "") == NOT_SERVING
    assert health_status(channel, "late") == NOT_SERVING
    assert health_status(channel, "echo") == SERVING
    assert health_status(channel, "PredictionService") == SERVING  # TF Serving's service names
    with pytest.raises(grpc.RpcError) as err:
        health_status(channel, "no-such-service")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    status, _, body = rest(rest_port, "GET", "/v1/health/ready")
    assert (status, json.loads(body)) == (503, {"status": "NOT_SERVING", "models": 2, "ready_models": 1})

    save_version(ops_server["root"] / "late", 1)
    deadline = time.monotonic() + 30
    while health_status(channel, "") != SERVING:
        assert time.monotonic() < deadline, "health never turned SERVING after the version appeared"
        time.sleep(0.2)
    assert health_status(channel, "late") == SERVING
    # a Watch stream gets the current status, then only changes (none here), not one message per poll
    seen = []
    with pytest.raises(grpc.RpcError) as err:
        for answer in health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="late"), timeout=2
        ):
            seen.append(answer.status)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and seen == [SERVING]
    status, _, body = rest(rest_port, "GET", "/v1/health/ready")
    assert (status, json.loads(body)) == (200, {"status": "SERVING", "models": 2, "ready_models": 2})
    status, _, body = rest(rest_port, "GET", "/v1/health/live")
    assert (status, json.loads(body)) == (200, {"status": "ALIVE"})


def _predict_request(model: str, input_name: str = "text", version: int | None = None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    request.inputs[input_name].CopyFrom(tf.make_tensor_proto([b"ab", b"cde"]))
    return request


def _samples(text: str, name: str) -> dict[frozenset, float]:
    """`{frozenset(label pairs): value}` of one metric in Prometheus text."""
    out = {}
    for labels, value in re.findall(rf"^{re.escape(name)}\{{([^}}]*)\}} (\S+)$", text, flags=re.M):
        out[frozenset(re.findall(r'(\w+)="([^"]*)"', labels))] = float(value)
    return out


def test_metrics_count_every_request_exactly(ops_server):
    channel, rest_port = ops_server["channel"], ops_server["rest_port"]
    predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    for _ in range(3):
        outputs = predict.Predict(_predict_request("echo"), timeout=10).outputs
        assert tf.make_ndarray(outputs["length"]).tolist() == [2, 3]
    bad = [_predict_request("echo", input_name="txt"), _predict_request("echo", version=9)]
    bad += [_predict_request("nope"), _predict_request("nope-" + "x" * 50)]
    codes = []
    for request in bad:
        with pytest.raises(grpc.RpcError) as err:
            predict.Predict(request, timeout=10)
        codes.append(err.value.code())
    assert codes == [grpc.StatusCode.INVALID_ARGUMENT] + [grpc.StatusCode.NOT_FOUND] * 3
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata.model_spec.name = "echo"
    predict.GetModelMetadata(metadata, timeout=10)
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "echo"
    assert models.GetModelStatus(status_request, timeout=10).model_version_status[0].state == AVAILABLE
    for _ in range(2):
        status, _, body = rest(rest_port, "POST", "/v1/models/echo:predict", b'{"instances": ["ab"]}')
        assert status == 200 and json.loads(body)["predictions"][0]["length"] == 2
    assert rest(rest_port, "POST", "/v1/models/echo:predict", b"{not json")[0] == 400
    assert rest(rest_port, "GET", "/v1/models/echo")[0] == 200

    status, headers, body = rest(rest_port, "GET", "/monitoring/prometheus/metrics")
    assert status == 200 and headers["content-type"] == CONTENT_TYPE
    text = body.decode()
    counts = _samples(text, ":tensorflow:serving:request_count")
    assert counts[frozenset({("model_name", "echo"), ("status", "OK")})] == 3 + 1 + 1 + 2 + 1
    assert counts[frozenset({("model_name", "echo"), ("status", "INVALID_ARGUMENT")})] == 1 + 1
    assert counts[frozenset({("model_name", "echo"), ("status", "NOT_FOUND")})] == 1
    # unknown model names share one label value: clients cannot grow the metric set
    assert counts[frozenset({("model_name", ""), ("status", "NOT_FOUND")})] == 2
    assert not any(("model_name", "nope") in labels for labels in counts)
    latency = _samples(text, ":tensorflow:serving:request_latency_count")
    expected = {("Predict", "GRPC"): 3, ("GetModelMetadata", "GRPC"): 1, ("GetModelStatus", "GRPC"): 1}
    expected.update({("predict", "REST"): 2, ("", "REST"): 1})  # TF Serving's REST labels (GETs: API="")
    got = {(dict(k)["API"], dict(k)["entrypoint"]): v for k, v in latency.items() if dict(k)["model_name"] == "echo"}
    assert got == expected  # failed requests are counted but not timed, like TF Serving
    predict_us = _samples(text, ":tensorflow:serving:request_latency_sum")
    total_us = predict_us[frozenset({("model_name", "echo"), ("API", "Predict"), ("entrypoint", "GRPC")})]
    assert 0 < total_us < 3 * 10e6  # microseconds, three calls well under 10 s each
    runtime = _samples(text, ":tensorflow:serving:runtime_latency_count")
    assert runtime == {frozenset({("model_name", "echo"), ("API", "Predict"), ("runtime", "TF1")}): 3 + 2}


def test_cors_headers_and_preflight(ops_server):
    rest_port = ops_server["rest_port"]
    cors = {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "POST, GET",
        "access-control-allow-headers": "Content-Type",
    }
    status, headers, _ = rest(rest_port, "GET", "/v1/models/echo")
    assert status == 200 and cors.items() <= headers.items()
    status, headers, _ = rest(rest_port, "POST", "/v1/models/echo:predict", b'{"instances": [1]}')
    assert status == 400 and cors.items() <= headers.items()  # errors carry them too (TF Serving)
    preflight = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST"}
    status, headers, body = rest(rest_port, "OPTIONS", "/v1/models/echo:predict", headers=preflight)
    assert (status, body) == (200, b"") and cors.items() <= headers.items()
    status, _, body = rest(rest_port, "OPTIONS", "/v1/models/echo:predict")
    assert (status, json.loads(body)) == (400, {"error": "Origin header is missing in CORS preflight"})


def test_loopback_server_rejects_foreign_host_headers(ops_server):
    rest_port = ops_server["rest_port"]
    for host in ("localhost", f"localhost:{rest_port}", "127.0.0.1", f"127.0.0.1:{rest_port}", f"[::1]:{rest_port}"):
        assert rest(rest_port, "GET", "/v1/models/echo", headers={"Host": host})[0] == 200, host
    body = b'{"instances": ["ab"]}'
    for host in (f"attacker.example:{rest_port}", "attacker.example", "127.0.0.1.attacker.example", "[::2]", "x y"):
        for method, path in (("GET", "/v1/models/echo"), ("POST", "/v1/models/echo:predict"),
                             ("GET", "/monitoring/prometheus/metrics")):  # fmt: skip
            status, headers, answer = rest(rest_port, method, path, body if method == "POST" else None, {"Host": host})
            assert status == 403, (host, path)
            assert headers["content-type"] == "application/json" and "Host header" in json.loads(answer)["error"]
    # the connection with the unread body was closed, and the server still answers
    status, _, answer = rest(rest_port, "POST", "/v1/models/echo:predict", body)
    assert status == 200 and json.loads(answer)["predictions"][0]["upper"] == "AB"
    assert ops_server["proc"].poll() is None


# ------------------------------------------------------------------------------------------ flag errors
@pytest.mark.parametrize(
    "files, extra, message",
    [
        ({"m.config": "prometheus_config { enable: true }"}, [], "--monitoring_config_file needs --rest_api_port"),
        ({"m.config": "prometheus_config { enable: tru }"}, ["--rest_api_port", "1"], "not a text-format Monitoring"),
        ({"m.config": 'prometheus_config { enable: true path: "metrics" }'}, ["--rest_api_port", "1"], "absolute"),
        ({"s.config": 'server_cert: "x"'}, [], "server_key is empty"),
        ({"s.config": 'server_key: "/etc/key.pem" server_cert: "/etc/cert.pem"'}, [], "not PEM text"),
        ({"s.config": "client_verify: true server_key: 'k' server_cert: 'c'"}, [], "client_verify: true needs"),
        ({"s.config": "MISMATCH"}, [], "not a matching key and certificate"),
        ({"s.config": "ENCRYPTED"}, [], "server_key is encrypted"),
    ],
)
def test_ops_flag_errors_are_one_line(tmp_path, capsys, certs, files, extra, message):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"")
    args = ["--model_base_path", str(tmp_path), *extra]
    for name, text in files.items():
        if text == "MISMATCH":  # a valid key with another party's certificate
            text = ssl_config_text(certs["client.key"], certs["server.pem"])
        elif text == "ENCRYPTED":  # must not prompt for a passphrase (the test would hang)
            text = ssl_config_text(certs["server-encrypted.key"], certs["server.pem"])
        (tmp_path / name).write_text(text)
        flag = "--monitoring_config_file" if name.startswith("m") else "--ssl_config_file"
        args += [flag, str(tmp_path / name)]
    with pytest.raises(SystemExit) as exit_info:
        serve_main.main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and message in err and err.startswith("kerasbert.serve: error: --"), err


# ------------------------------------------------------------------------------------------ TLS
def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate it signed, and another CA."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl binary")
    d = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                 "-subj", f"/CN=kerasbert test {ca}", cwd=d)  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        _openssl("req", *ec, "-keyout", f"{who}.key", "-out", f"{who}.csr", "-subj", f"/CN={who}", cwd=d)
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", f"{who}.ext", "-out", f"{who}.pem", cwd=d)  # fmt: skip
    _openssl("pkey", "-in", "server.key", "-aes256", "-passout", "pass:secret", "-out", "server-encrypted.key", cwd=d)
    return {p.name: p.read_text() for p in d.iterdir()} | {"dir": d}


def ssl_config_text(key: str, cert: str, ca: str = "", client_verify: bool = False) -> str:
    def quoted(text):
        return json.dumps(text)  # a JSON string is a valid text-proto string literal for PEM text

    lines = [f"server_key: {quoted(key)}", f"server_cert: {quoted(cert)}"]
    if ca:
        lines.append(f"custom_ca: {quoted(ca)}")
    lines.append(f"client_verify: {'true' if client_verify else 'false'}")
    return "\n".join(lines) + "\n"


def _credentials(certs, ca="ca.pem", client=True):
    if client:
        return grpc.ssl_channel_credentials(
            certs[ca].encode(), certs["client.key"].encode(), certs["client.pem"].encode()
        )
    return grpc.ssl_channel_credentials(certs[ca].encode())


def _model_status(target: str, credentials, timeout: float = 5):
    with grpc.secure_channel(target, credentials) as channel:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "echo"
        return model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=timeout)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, certs):
    root = tmp_path_factory.mktemp("tls")
    save_version(root / "echo", 1)
    config = root / "ssl.config"
    config.write_text(ssl_config_text(certs["server.key"], certs["server.pem"], certs["ca.pem"], client_verify=True))
    port = free_port()
    target = f"localhost:{port}"

    def ready():
        try:
            return _model_status(target, _credentials(certs), timeout=2).model_version_status[0].state == AVAILABLE
        except grpc.RpcError:
            return False

    args = ["--port", str(port), "--model_name", "echo", "--model_base_path", str(root / "echo")]
    with serve([*args, "--ssl_config_file", str(config)], ready):
        yield target


def test_tls_handshake_needs_the_right_ca_and_a_client_certificate(tls_server, certs):
    assert _model_status(tls_server, _credentials(certs)).model_version_status[0].state == AVAILABLE
    for credentials in (_credentials(certs, ca="other-ca.pem"), _credentials(certs, client=False)):
        with pytest.raises(grpc.RpcError) as err:
            _model_status(tls_server, credentials)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    with grpc.insecure_channel(tls_server) as channel:  # plain text to a TLS port
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "echo"
        with pytest.raises(grpc.RpcError) as err:
            model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_api_and_cli_speak_tls(tls_server, certs, capsys):
    from kerasbert.client import Client, ServerUnavailable
    from kerasbert.client.cli import main as cli_main

    d = certs["dir"]
    files = {"ca_cert": d / "ca.pem", "client_cert": d / "client.pem", "client_key": d / "client.key"}
    with Client(target=tls_server, model_name="echo", timeout=10, **files) as client:
        assert client.status() == [(1, "AVAILABLE")]
        assert list(client.predict({"text": ["ab", "cde"]})["length"]) == [2, 3]
    wrong = {**files, "ca_cert": (d / "other-ca.pem").read_bytes()}  # PEM bytes work too
    with Client(target=tls_server, model_name="echo", timeout=5, **wrong) as client:
        with pytest.raises(ServerUnavailable, match="TLS"):
            client.status()
    cli = ["--server", tls_server, "--model", "echo", "--status", "--ca-cert", str(files["ca_cert"])]
    assert cli_main([*cli, "--client-cert", str(files["client_cert"]), "--client-key", str(files["client_key"])]) == 0
    assert json.loads(capsys.readouterr().out) == {"model": "echo", "versions": [[1, "AVAILABLE"]]}
    assert cli_main(cli) == 1  # no client certificate: the server refuses the handshake
    assert "TLS" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ units
def test_host_check_names():
    from kerasbert.serving.http_extras import host_allowed, is_loopback

    good = ["localhost", "LOCALHOST:8501", "127.0.0.1", "127.0.0.1:1", "127.1.2.3", "[::1]", "[::1]:8501", None]
    bad = ["", "example.com", "localhost.example.com", "127.0.0.1.nip.io", "[::ffff:10.0.0.1]", "::1", "10.0.0.1",
           "localhost:port", "a b", "[::1]:8501:1", "0.0.0.0"]  # fmt: skip
    assert [h for h in good if not host_allowed(h)] == []
    assert [h for h in bad if host_allowed(h)] == []
    assert [is_loopback(a) for a in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "::", "192.168.1.2")] == [
        True, True, True, False, False, False,
    ]  # fmt: skip


def test_cors_headers_only_when_enabled():
    from kerasbert.serving.http_extras import CORS_HEADERS, RestExtras

    class Handler:
        def __init__(self):
            self.sent = []

        def send_header(self, name, value):
            self.sent.append((name, value))

    for enabled, expected in ((False, []), (True, list(CORS_HEADERS))):
        handler = Handler()
        RestExtras(manager=None, cors=enabled).add_headers(handler)
        assert handler.sent == expected


def test_tls_without_client_verify_needs_no_client_certificate(tmp_path, certs):
    """TF Serving's client_verify: false: the server does not ask for a client certificate."""
    save_version(tmp_path / "echo", 1)
    config = tmp_path / "ssl.config"
    config.write_text(ssl_config_text(certs["server.key"], certs["server.pem"]))
    port = free_port()
    target = f"localhost:{port}"

    def ready():
        try:
            return bool(_model_status(target, _credentials(certs, client=False), timeout=2).model_version_status)
        except grpc.RpcError:
            return False

    args = ["--port", str(port), "--model_name", "echo", "--model_base_path", str(tmp_path / "echo")]
    with serve([*args, "--ssl_config_file", str(config)], ready):
        assert _model_status(target, _credentials(certs, client=False)).model_version_status[0].state == AVAILABLE
        assert _model_status(target, _credentials(certs)).model_version_status[0].state == AVAILABLE
        with pytest.raises(grpc.RpcError) as err:
            _model_status(target, _credentials(certs, ca="other-ca.pem", client=False))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
