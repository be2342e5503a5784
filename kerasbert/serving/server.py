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

from kerasbert import cli

_log = logging.getLogger("kerasbert.serve")
PROG = "kerasbert.serve"


def _bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _port(text: str) -> int:
    """A TCP port number 0..65535 (gRPC and the OS would silently wrap 70000 to 4464)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535, got {value}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _bool_flag(parser: argparse.ArgumentParser, name: str, default: bool, help: str) -> None:
    """A TF Serving-style boolean flag: `--name`, `--name=true|false` or `--name false`."""
    parser.add_argument(name, type=_bool, nargs="?", const=True, default=default, help=help)


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
    p.add_argument("--port", type=_port, default=8500, help="gRPC port (default 8500)")
    p.add_argument("--rest_api_port", type=_port, default=0, help="REST port; 0 (default) = no REST API")
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
    _bool_flag(p, "--enable_batching", False, "merge concurrent Predict requests into batched signature calls")
    p.add_argument(
        "--batching_parameters_file",
        default="",
        help="text-format BatchingParameters (unset fields take TF Serving's defaults); needs --enable_batching",
    )
    # --- end batching
    p.add_argument("--rest_api_timeout_in_ms", type=int, default=30000)
    p.add_argument("--grpc_max_threads", type=int, default=0, help="gRPC worker threads (default 4 x cores)")
    # --- ops: monitoring, health, TLS, CORS (TF Serving's flags; see kerasbert.serving.{monitoring,health,tls})
    p.add_argument(
        "--monitoring_config_file",
        default="",
        help="text-format MonitoringConfig; prometheus_config { enable: true } serves metrics on the REST port",
    )
    _bool_flag(
        p,
        "--enable_grpc_healthcheck_service",
        False,
        "serve grpc.health.v1.Health: SERVING once every model has an AVAILABLE version",
    )
    p.add_argument(
        "--ssl_config_file",
        default="",
        help="text-format SSLConfig (PEM contents of server_key, server_cert, custom_ca; client_verify) for gRPC",
    )
    _bool_flag(
        p, "--rest_api_enable_cors_support", False, "add CORS headers (Access-Control-Allow-Origin: *) to REST answers"
    )
    # --- limits (ours; TF Serving has none of these): hostile or oversized requests are refused before any
    # tensor is built, and big batches run in chunks so memory is bounded by the chunk
    from kerasbert.serving import limits  # no TensorFlow import

    p.add_argument(
        "--max_request_rows",
        type=_non_negative,
        default=limits.DEFAULT_MAX_REQUEST_ROWS,
        help=f"largest batch (rows) of one Predict request; 0 = no cap (default {limits.DEFAULT_MAX_REQUEST_ROWS})",
    )
    p.add_argument(
        "--max_request_bytes",
        type=_non_negative,
        default=limits.DEFAULT_MAX_REQUEST_BYTES,
        help="largest decoded size of one request's inputs, also the gRPC message limit; 0 = no cap "
        f"(default {limits.DEFAULT_MAX_REQUEST_BYTES} = 256 MiB)",
    )
    p.add_argument(
        "--predict_chunk_rows",
        type=_non_negative,
        default=limits.DEFAULT_PREDICT_CHUNK_ROWS,
        help="bigger batches run in chunks of this many rows (checking the deadline between chunks); "
        f"0 = never chunk (default {limits.DEFAULT_PREDICT_CHUNK_ROWS})",
    )
    p.add_argument(
        "--rest_api_max_body_bytes",
        type=_non_negative,
        default=limits.DEFAULT_REST_MAX_BODY_BYTES,
        help=f"larger REST bodies get 413 unread; 0 = no cap (default {limits.DEFAULT_REST_MAX_BODY_BYTES} = 64 MiB)",
    )
    p.add_argument(
        "--rest_api_read_timeout_in_ms",
        type=_non_negative,
        default=limits.DEFAULT_REST_READ_TIMEOUT_MS,
        help="time a REST client has to send its headers and body, else 408; 0 = none "
        f"(default {limits.DEFAULT_REST_READ_TIMEOUT_MS})",
    )
    # --- versions and warmup (issue 11 defects 5-7, warmup): TF Serving's flags, plus two of ours
    p.add_argument(
        "--max_num_load_retries",
        type=int,
        default=5,
        help="retries of a failed version load after the first failure; 0 = one attempt (default 5)",
    )
    p.add_argument(
        "--load_retry_interval_micros",
        type=int,
        default=60_000_000,
        help="microseconds between load retries; negative = no wait (default 60000000 = 1 minute)",
    )
    _bool_flag(
        p,
        "--enable_model_warmup",
        True,
        "replay <version>/assets.extra/tf_serving_warmup_requests before serving a version (default true)",
    )
    p.add_argument(
        "--num_request_iterations_for_warmup",
        type=int,
        default=1,
        help="times each warmup request is replayed; used if > 0 (default 1)",
    )
    p.add_argument(
        "--allowed_model_base_path_roots",
        default="",
        help="ours: comma-separated folders a ReloadConfig RPC may take base paths from, besides the parents "
        "of the base paths configured at start-up",
    )
    # --- precision and threads (TF Serving's flags): applied to every SavedModel this server loads
    p.add_argument(
        "--mixed_precision",
        default="",
        help="bfloat16: grappler's oneDNN auto mixed precision (auto_mixed_precision_onednn_bfloat16) for every "
        "model, as tensorflow_model_server; other values are ignored with a warning, as there (default: off)",
    )
    p.add_argument(
        "--tensorflow_intra_op_parallelism",
        type=_non_negative,
        default=0,
        help="threads one op may use; 0 (default) = TensorFlow's choice (the cores)",
    )
    p.add_argument(
        "--tensorflow_inter_op_parallelism",
        type=_non_negative,
        default=0,
        help="ops run at once; 0 (default) = TensorFlow's choice",
    )
    p.add_argument(
        "--model_load_thread_niceness",
        type=int,
        default=10,
        help="ours: nice increment (0-19) of the thread that loads and warms up versions (default 10)",
    )
    # ours: TensorFlow's start-up and C++ log lines are hidden unless --verbose
    _bool_flag(p, cli.VERBOSE_FLAG, False, cli.VERBOSE_HELP)
    return p


def _load_ops_flags(args, parser):
    """`(prometheus path or None, SSLConfig or None)` from the ops flags; flag errors exit 2 naming the flag."""
    from kerasbert.serving.monitoring import load_monitoring_config
    from kerasbert.serving.tls import load_ssl_config

    metrics_path = ssl_config = None
    if args.monitoring_config_file:
        if not os.path.isfile(args.monitoring_config_file):
            parser.error(f"--monitoring_config_file {args.monitoring_config_file} does not exist")
        try:
            metrics_path = load_monitoring_config(args.monitoring_config_file)
        except ValueError as exc:
            parser.error(f"--monitoring_config_file {args.monitoring_config_file} {exc}")
        if metrics_path is not None and not args.rest_api_port:
            parser.error("--monitoring_config_file needs --rest_api_port (metrics are served on the REST port)")
    if args.ssl_config_file:
        if not os.path.isfile(args.ssl_config_file):
            parser.error(f"--ssl_config_file {args.ssl_config_file} does not exist")
        try:
            ssl_config = load_ssl_config(args.ssl_config_file)
        except ValueError as exc:
            parser.error(f"--ssl_config_file {args.ssl_config_file}: {exc}")
    return metrics_path, ssl_config


def limits_from_args(args):
    """The `Limits` the `# --- limits` flags describe.

    Example:

    >>> limits_from_args(build_parser().parse_args(["--max_request_rows", "5"])).max_request_rows
    5
    """
    from kerasbert.serving.limits import Limits

    return Limits(
        max_request_rows=args.max_request_rows,
        max_request_bytes=args.max_request_bytes,
        predict_chunk_rows=args.predict_chunk_rows,
        rest_max_body_bytes=args.rest_api_max_body_bytes,
        rest_read_timeout_ms=args.rest_api_read_timeout_in_ms,
    )


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


def _check_version_flags(args, parser) -> list[str]:
    """Checks the version/warmup flags (before TensorFlow loads); returns `--allowed_model_base_path_roots`."""
    if args.num_request_iterations_for_warmup < 0:
        parser.error("--num_request_iterations_for_warmup must be >= 0")
    if not 0 <= args.model_load_thread_niceness <= 19:
        parser.error("--model_load_thread_niceness must be between 0 and 19")
    roots = [r.strip() for r in args.allowed_model_base_path_roots.split(",") if r.strip()]
    missing = [r for r in roots if not os.path.isdir(r)]
    if missing:
        parser.error(f"--allowed_model_base_path_roots: {missing[0]} is not a folder")
    return roots


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


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. not Linux).

    Example:

    >>> "avx512_bf16" in cpu_flags()  # doctest: +SKIP
    True
    """
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def apply_session_flags(args) -> bool:
    """Applies `--mixed_precision` and the parallelism flags to TensorFlow before any model loads.

    `--mixed_precision=bfloat16` turns on grappler's `auto_mixed_precision_onednn_bfloat16` rewrite for every
    graph TensorFlow optimizes from now on, the signature functions of SavedModels loaded by
    `tf.saved_model.load` included (TF Serving sets the same RewriterConfig in its SessionOptions).

    Returns:
        Whether bfloat16 auto mixed precision is on.
    """
    import tensorflow as tf

    if args.tensorflow_intra_op_parallelism:
        tf.config.threading.set_intra_op_parallelism_threads(args.tensorflow_intra_op_parallelism)
    if args.tensorflow_inter_op_parallelism:
        tf.config.threading.set_inter_op_parallelism_threads(args.tensorflow_inter_op_parallelism)
    value = args.mixed_precision.strip()
    if not value:
        return False
    if value != "bfloat16":
        _log.warning("%s auto mixed precision is not supported. Valid option: bfloat16", value)
        return False
    if not cpu_flags() & set(BF16_CPU_FLAGS):
        _log.warning("this CPU has neither AVX512_BF16 nor AMX: oneDNN emulates bfloat16, slower than float32")
    tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    _log.info("Running inference with bfloat16 auto mixed precision")
    return True


def _grpc_message_limit(max_request_bytes: int) -> int:
    """gRPC's receive limit for `--max_request_bytes` (-1 = none); gRPC itself answers RESOURCE_EXHAUSTED past it."""
    if not max_request_bytes:
        return -1
    return min(2 * max_request_bytes + (1 << 20), 2**31 - 1)


def main(argv: list[str] | None = None) -> int:
    """Runs the server until SIGTERM/SIGINT; returns the exit code.

    Example (shell):

        python -m kerasbert.serve --port 8500 --rest_api_port 8501 \\
            --model_name sst2 --model_base_path exports/sst2
    """
    cli.quiet_tensorflow(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        flag = next((u for u in unknown if u.startswith("-")), unknown[0])
        parser.error(f"unknown flag {flag.split('=')[0]} (see --help)")
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname).1s %(name)s] %(message)s"
    )
    config = _load_config(args, parser)
    metrics_path, ssl_config = _load_ops_flags(args, parser)  # --- ops
    roots = _check_version_flags(args, parser)
    batching = _load_batching(args, parser)  # --- batching

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    apply_session_flags(args)  # --- precision and threads: before TensorFlow runs anything
    import concurrent.futures

    import grpc

    from kerasbert.serving.grpc_service import add_services
    from kerasbert.serving.model_manager import ModelManager
    from kerasbert.serving.rest import RestApi, start_rest_server

    # --- batching
    if batching is not None:
        _log.info("Batching enabled: %s", batching.describe())
    # --- ops: one Metrics per server, shared by the manager and both front ends (via manager.metrics)
    from kerasbert.serving import health, http_extras, monitoring, tls
    from kerasbert.serving.metrics import Metrics

    metrics = Metrics()
    limits = limits_from_args(args)  # --- limits
    manager = ModelManager(
        args.file_system_poll_wait_seconds,
        batching=batching,
        metrics=metrics,
        limits=limits,
        # --- versions and warmup
        max_num_load_retries=args.max_num_load_retries,
        load_retry_interval_micros=args.load_retry_interval_micros,
        enable_model_warmup=args.enable_model_warmup,
        num_request_iterations_for_warmup=args.num_request_iterations_for_warmup,
        allowed_base_path_roots=roots,
        loader_niceness=args.model_load_thread_niceness,
    )
    monitoring.instrument_manager(manager)
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
        options=[
            # --- limits: the message cap follows --max_request_bytes (protobuf framing adds a little)
            ("grpc.max_receive_message_length", _grpc_message_limit(limits.max_request_bytes)),
            ("grpc.max_send_message_length", -1),
            # --- ports: no SO_REUSEPORT, so a second server cannot bind a busy --port and steal connections
            ("grpc.so_reuseport", 0),
        ],
    )
    add_services(server, manager)
    watcher = health.HealthWatcher(manager) if args.enable_grpc_healthcheck_service else None  # --- ops
    if watcher is not None:
        watcher.add_to_server(server)
    address = f"{args.host}:{args.port}"
    try:
        if ssl_config is not None:  # --- ops: TLS
            bound = server.add_secure_port(address, tls.server_credentials(ssl_config))
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        bound, reason = 0, exc
    else:
        reason = "address in use?"
    if not bound:
        print(f"{PROG}: error: --port {args.port}: cannot bind gRPC to {address} ({reason})", file=sys.stderr)
        return 1
    server.start()
    rest = api = None
    if args.rest_api_port:
        api = RestApi(manager, args.rest_api_timeout_in_ms, max_workers=workers)
        api.extras = http_extras.RestExtras(  # --- ops: Host check, CORS, metrics and health paths
            manager,
            metrics,
            metrics_path,
            cors=args.rest_api_enable_cors_support,
            check_host=http_extras.is_loopback(args.host),
        )
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
    if watcher is not None:  # --- ops
        watcher.start()

    stop = threading.Event()

    def on_signal(signum, frame):
        _log.info("Received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"Running gRPC ModelServer at {address} ... (models: {', '.join(manager.model_names())})", flush=True)
    if rest is not None:
        print(f"Exporting HTTP/REST API at:{args.host}:{args.rest_api_port} ...", flush=True)
        if metrics_path is not None:  # --- ops
            print(f"Prometheus metrics at http://{args.host}:{args.rest_api_port}{metrics_path}", flush=True)
    watch_config = args.model_config_file and args.model_config_file_poll_wait_seconds > 0
    config_watch = _ConfigWatch(args) if watch_config else None
    while not stop.wait(0.5):
        if config_watch is not None:
            config_watch.maybe_reload(manager)
    if watcher is not None:  # --- ops: NOT_SERVING while draining
        watcher.stop()
    server.stop(grace=5).wait(10)
    if rest is not None:
        rest.shutdown()
        api.close()
    manager.stop()
    if manager.batcher is not None:  # --- batching (serve-batching)
        manager.batcher.close()
    _log.info("Server stopped")
    return 0
