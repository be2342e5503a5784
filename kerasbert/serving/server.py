"""`python -m kerasbert.serve`: a drop-in for `tensorflow_model_server`, flags spelled the same way.

Flags are parsed before TensorFlow is imported, so flag errors answer at once (exit code 2).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

_log = logging.getLogger("kerasbert.serve")
PROG = "kerasbert.serve"


def _bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The flag parser (`--flag value` and `--flag=value` both work, booleans also bare)."""
    p = _Parser(
        prog=PROG,
        allow_abbrev=False,
        description="TF Serving-compatible gRPC/REST model server for raw-string SavedModels.",
    )
    p.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500)")
    p.add_argument("--rest_api_port", type=int, default=0, help="REST port; 0 (default) = no REST API")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (ours; default 127.0.0.1, use 0.0.0.0 to listen on all interfaces)",
    )
    p.add_argument("--model_name", default="default", help="model name in single-model mode")
    p.add_argument("--model_base_path", default="", help="folder holding <integer version>/saved_model.pb")
    p.add_argument("--model_config_file", default="", help="text-format ModelServerConfig (several models)")
    p.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1,
        help="seconds between polls for new/removed versions; <=0 = only at start and on reload",
    )
    p.add_argument(
        "--model_config_file_poll_wait_seconds",
        type=float,
        default=0,
        help="re-read --model_config_file this often and apply changes; 0 (default) = never",
    )
    # --- batching (serve-batching): TF Serving's flags; the file is a text-format BatchingParameters
    p.add_argument(
        "--enable_batching",
        type=_bool,
        nargs="?",
        const=True,
        default=False,
        help="merge concurrent Predict requests into batched signature calls",
    )
    p.add_argument(
        "--batching_parameters_file",
        default="",
        help="text-format BatchingParameters (unset fields take TF Serving's defaults); needs --enable_batching",
    )
    # --- end batching
    p.add_argument("--rest_api_timeout_in_ms", type=int, default=30000)
    p.add_argument("--grpc_max_threads", type=int, default=0, help="gRPC worker threads (default 4 x cores)")
    return p


def _load_batching(args, parser):
    """The `BatchingOptions` of `--enable_batching`/`--batching_parameters_file` (None when off); a bad file
    is a one-line flag error, as `tensorflow_model_server` refuses to start on one."""
    # --- batching (serve-batching)
    from google.protobuf import text_format

    from kerasbert.serving.batching import BatchingOptions

    path = args.batching_parameters_file
    if not args.enable_batching:
        if path:
            parser.error("--batching_parameters_file is set without --enable_batching")
        return None
    if not path:
        return BatchingOptions()
    if not os.path.isfile(path):
        parser.error(f"--batching_parameters_file {path} does not exist")
    try:
        return BatchingOptions.from_file(path)
    except text_format.ParseError as exc:
        parser.error(f"--batching_parameters_file {path} is not a text-format BatchingParameters: {exc}")
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        parser.error(f"--batching_parameters_file {path}: {exc}")


def _load_config(args, parser):
    """The ModelServerConfig the flags describe; flag errors exit 2 naming the flag."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    from kerasbert.serving.config import single_model_config, validate_config
    from kerasbert.serving.errors import ServingError

    if args.model_config_file:
        if not os.path.isfile(args.model_config_file):
            parser.error(f"--model_config_file {args.model_config_file} does not exist")
        config = model_server_config_pb2.ModelServerConfig()
        try:
            with open(args.model_config_file) as f:
                text_format.Parse(f.read(), config)
        except text_format.ParseError as exc:
            parser.error(f"--model_config_file {args.model_config_file} is not a text-format ModelServerConfig: {exc}")
        try:
            validate_config(config)
        except ServingError as exc:
            parser.error(f"--model_config_file {args.model_config_file}: {exc.message}")
        return config
    if not args.model_base_path:
        parser.error("--model_base_path (or --model_config_file) is required")
    if not os.path.isdir(args.model_base_path):
        parser.error(f"--model_base_path {args.model_base_path} does not exist or is not a folder")
    return single_model_config(args.model_name, args.model_base_path)


class _ConfigWatch:
    """Re-reads `--model_config_file` every `--model_config_file_poll_wait_seconds` and applies changes."""

    def __init__(self, args):
        self.path = args.model_config_file
        self.every = args.model_config_file_poll_wait_seconds
        self.next = time.monotonic() + self.every
        self.text = self._read()

    def _read(self) -> str | None:
        try:
            with open(self.path) as f:
                return f.read()
        except OSError:
            return None

    def maybe_reload(self, manager) -> None:
        if time.monotonic() < self.next:
            return
        self.next = time.monotonic() + self.every
        text = self._read()
        if text is None or text == self.text:
            return
        self.text = text
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2

        try:
            manager.reload_config(text_format.Parse(text, model_server_config_pb2.ModelServerConfig()))
        except Exception as exc:  # keep serving the old config
            _log.error("Ignoring changed %s: %s", self.path, exc)


def main(argv: list[str] | None = None) -> int:
    """Runs the server until SIGTERM/SIGINT; returns the exit code.

    Example (shell):

        python -m kerasbert.serve --port 8500 --rest_api_port 8501 \\
            --model_name sst2 --model_base_path exports/sst2
    """
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        flag = next((u for u in unknown if u.startswith("-")), unknown[0])
        parser.error(f"unknown flag {flag.split('=')[0]} (see --help)")
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname).1s %(name)s] %(message)s"
    )
    config = _load_config(args, parser)
    batching = _load_batching(args, parser)  # --- batching (serve-batching)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    import concurrent.futures

    import grpc

    from kerasbert.serving.grpc_service import add_services
    from kerasbert.serving.model_manager import ModelManager
    from kerasbert.serving.rest import RestApi, start_rest_server

    # --- batching (serve-batching)
    if batching is not None:
        _log.info("Batching enabled: %s", batching.describe())
    manager = ModelManager(args.file_system_poll_wait_seconds, batching=batching)
    # --- end batching
    manager.reload_config(config)

    workers = args.grpc_max_threads if args.grpc_max_threads > 0 else 4 * (os.cpu_count() or 1)
    # --- batching (serve-batching): each waiting request holds a gRPC worker thread, so 4 x cores threads
    # would cap a merged batch at a few requests; unless --grpc_max_threads is given, allow two full batches
    # of one-row requests (TF Serving's advice: max_batch_size * 2 client threads), at most 256 threads.
    if batching is not None and args.grpc_max_threads <= 0:
        workers = max(workers, min(256, 2 * batching.max_batch_size))
    # --- end batching
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
    )
    add_services(server, manager)
    address = f"{args.host}:{args.port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        bound, reason = 0, exc
    else:
        reason = "address in use?"
    if not bound:
        print(f"{PROG}: error: cannot bind gRPC to {address} ({reason}); pick another --port", file=sys.stderr)
        return 1
    server.start()
    rest = api = None
    if args.rest_api_port:
        api = RestApi(manager, args.rest_api_timeout_in_ms, max_workers=workers)
        try:
            rest = start_rest_server(api, args.host, args.rest_api_port)
        except OSError as exc:
            print(
                f"{PROG}: error: cannot bind REST to {args.host}:{args.rest_api_port} ({exc}); "
                "pick another --rest_api_port",
                file=sys.stderr,
            )
            server.stop(0)
            return 1
    manager.start_polling()

    stop = threading.Event()

    def on_signal(signum, frame):
        _log.info("Received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"Running gRPC ModelServer at {address} ... (models: {', '.join(manager.model_names())})", flush=True)
    if rest is not None:
        print(f"Exporting HTTP/REST API at:{args.host}:{args.rest_api_port} ...", flush=True)
    _log.info("Running gRPC ModelServer at %s ...", address)
    watch_config = args.model_config_file and args.model_config_file_poll_wait_seconds > 0
    config_watch = _ConfigWatch(args) if watch_config else None
    while not stop.wait(0.5):
        if config_watch is not None:
            config_watch.maybe_reload(manager)
    server.stop(grace=5).wait(10)
    if rest is not None:
        rest.shutdown()
        api.close()
    manager.stop()
    if manager.batcher is not None:  # --- batching (serve-batching)
        manager.batcher.close()
    _log.info("Server stopped")
    return 0
