"""Test helpers: start `python -m kerasbert.serve` as a real subprocess and wait until it serves.

Reuse from any test module in `tests/` (pytest puts this folder on `sys.path`):

    from serving_utils import running_server

    def test_end_to_end(tmp_path):
        with running_server(model_base_path=export_dir, model_name="sst2", rest_api=True) as server:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel())
            ...
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if `proc` has not exited within `timeout` seconds (no-op if it already has)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class ServerProcess:
    """A running `kerasbert.serve` subprocess: `.port` (gRPC), `.rest_port` (or None), `.proc`."""

    port: int
    rest_port: int | None
    proc: subprocess.Popen
    log_path: Path
    model_names: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        if self.rest_port is None:
            raise RuntimeError("started without rest_api=True")
        return f"http://127.0.0.1:{self.rest_port}"

    def channel(self):
        """A new insecure gRPC channel to the server (no message size limit)."""
        import grpc

        return grpc.insecure_channel(self.address, options=[("grpc.max_receive_message_length", -1)])

    def log(self) -> str:
        """Everything the server wrote to stdout/stderr so far."""
        return self.log_path.read_text(errors="replace")


def _config_model_names(model_config_file) -> list[str]:
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse(Path(model_config_file).read_text(), model_server_config_pb2.ModelServerConfig())
    return [m.name for m in config.model_config_list.config]


def _all_available(channel, names: Sequence[str]) -> bool:
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    for name in names:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        try:
            response = stub.GetModelStatus(request, timeout=2)
        except grpc.RpcError:
            return False
        if not any(s.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE for s in response.model_version_status):
            return False
    return True


@contextlib.contextmanager
def running_server(
    model_base_path=None,
    model_name: str = "default",
    model_config_file=None,
    extra_args: Sequence[str] = (),
    timeout: float = 60,
    rest_api: bool = False,
    env: dict | None = None,
) -> Iterator[ServerProcess]:
    """Starts `python -m kerasbert.serve` on free loopback ports and yields once every model is AVAILABLE.

    Args:
        model_base_path: `--model_base_path` (single-model mode, served as `model_name`).
        model_name: `--model_name`.
        model_config_file: `--model_config_file` instead; waits for every model it lists.
        extra_args: more flags, e.g. `("--file_system_poll_wait_seconds", "1")`.
        timeout: seconds to wait for readiness before failing (with the server's log).
        rest_api: also pass `--rest_api_port <free port>` (then `.rest_port` / `.rest_url` are set).
        env: extra environment variables.

    Yields:
        A `ServerProcess`; the process gets SIGTERM at exit (SIGKILL if it lingers) and its log is
        printed if the block raised.
    """
    if (model_base_path is None) == (model_config_file is None):
        raise ValueError("pass exactly one of model_base_path or model_config_file")
    port = free_port()
    rest_port = free_port() if rest_api else None
    cmd = [sys.executable, "-m", "kerasbert.serve", "--port", str(port)]
    if model_config_file is not None:
        cmd += ["--model_config_file", str(model_config_file)]
        names = _config_model_names(model_config_file)
    else:
        cmd += ["--model_base_path", str(model_base_path), "--model_name", model_name]
        names = [model_name]
    if rest_port:
        cmd += ["--rest_api_port", str(rest_port)]
    cmd += list(extra_args)
    log_fd, log_name = tempfile.mkstemp(prefix="kerasbert-serve-", suffix=".log")
    proc_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log_fd, stderr=subprocess.STDOUT, env=proc_env)
    os.close(log_fd)
    server = ServerProcess(port, rest_port, proc, Path(log_name), names)
    failed = True
    try:
        channel = server.channel()
        deadline = time.monotonic() + timeout
        try:
            while not _all_available(channel, names):
                if proc.poll() is not None:
                    raise RuntimeError(f"kerasbert.serve exited with code {proc.returncode} before serving")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"kerasbert.serve not AVAILABLE for {names} after {timeout}s")
                time.sleep(0.2)
        finally:
            channel.close()
        yield server
        failed = False
    finally:
        stop_process(proc)
        if failed:
            sys.stderr.write(f"----- kerasbert.serve log ({' '.join(cmd)}) -----\n{server.log()}\n")
        with contextlib.suppress(OSError):
            server.log_path.unlink()
