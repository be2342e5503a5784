"""Serving throughput and latency of `python -m kerasbert.serve`, with and without `--enable_batching`.

For each model (a tiny random BERT embedder, and all-MiniLM-L6-v2 from `../shared/tools/minilm-checkpoint`
exported with `python -m kerasbert.export`), in one run:

* **in-process rate**: the same SavedModel called in its own process with batches of 64 sentences;
* **served**: 1, 8, 32 and 64 concurrent gRPC clients, each sending 1-8 sentences per request (prebuilt
  requests, one `grpc.aio` client process, responses not decoded except one per client to check them), against
  two server processes: one with `--enable_batching --batching_parameters_file serving/batching_parameters.txt`
  and one without. Sentences/s and p50/p95/p99 latency; the CPU the client process and the server used;
* **hot-swap**: p99 of 16 clients on each server, first steady, then while new versions appear (a version
  folder copied to a new number atomically: temp folder + rename; the next copy once the new version serves),
  and the server's resident memory before and after the swaps (10; 2 with `--quick`).

Each contender runs in its own process (server, client, in-process baseline); measurements alternate between
the two servers and the baseline over `--rounds` rounds; each figure is the median with its range. The machine
(CPU model, AVX2/AVX-512/AMX flags, cores) and the 1-minute load average before and after every measurement are
recorded, and so is the CPU that other processes took during each measurement (from /proc/stat less our own
processes: the load average counts our busy server too); a figure taken while others used more than a quarter of
the cores is marked `loaded` (and the summary then refuses to read the ratio as a result). JSON goes to
`benchmarks/results/serving_<models>.json`, the latency plot to `benchmarks/results/serving_latency.png`.

    python benchmarks/bench_serving.py                  # tiny + MiniLM, 2 rounds (~8 min on 2 cores)
    python benchmarks/bench_serving.py --quick          # tiny model, 1 round, 1 and 32 clients (~30 s)
    python benchmarks/bench_serving.py --models minilm --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RESULTS = REPO / "benchmarks" / "results"
BATCHING_FILE = REPO / "serving" / "batching_parameters.txt"


def _repo_relative(path) -> str:
    """`path` relative to the repository when inside it (results files carry no machine paths)."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


SAMPLE_VOCAB = REPO / "kerasbert" / "data" / "sample" / "vocab.txt"
CONCURRENCY = (1, 8, 32, 64)
SWAP_CLIENTS = 16
IN_PROCESS_BATCH = 64
LOADED_OTHER_CORES = 0.25 * (os.cpu_count() or 1)  # other processes' average CPU use above which a figure is loaded
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("USE_TF", "0")

from bench_ner import machine  # noqa: E402  (CPU model, SIMD flags, cores: the same facts in every benchmark)

WORDS = (
    "the a movie film story actor plot great good bad long short funny boring scene music city river house "
    "people time year day night world music game team player season market company price report study "
    "results data model language text sentence word question answer paris london john smith new york and "
    "of to in is was it this that with for on as by at from very really quite not never always"
).split()


# --------------------------------------------------------------------------------------- machine facts
def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def stats(values):
    values = [float(v) for v in values]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def sentences(n, seed):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 20))) for _ in range(n)]


def proc_cpu_seconds(pid) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU-seconds all processes on the machine have used since boot (/proc/stat: every state but idle/iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class OtherLoad:
    """CPU used by processes other than ours (this script, its finished children, `pids`) over a block.

    The load average counts our own server and client too (it reaches the core count by itself when the server
    is busy), so `loaded` is read from the CPU others took: more than `LOADED_OTHER_CORES` cores on average.
    """

    def __init__(self, pids=()):
        self.pids = list(pids)

    def __enter__(self):
        self.start = time.perf_counter()
        self.busy, self.kids, self.own = machine_busy_seconds(), children_cpu_seconds(), time.process_time()
        self.pid_cpu = {pid: proc_cpu_seconds(pid) for pid in self.pids}
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.start
        ours = children_cpu_seconds() - self.kids + time.process_time() - self.own
        ours += sum(proc_cpu_seconds(pid) - cpu for pid, cpu in self.pid_cpu.items())
        self.other_cores = max(0.0, (machine_busy_seconds() - self.busy - ours) / wall)
        self.loaded = self.other_cores > LOADED_OTHER_CORES


def rss_mb(pid) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def role(name, *args, timeout=900, script=__file__):
    """Runs this script (or `script`) as `--_role name args...` in a new process; returns the JSON it prints last."""
    out = subprocess.run(
        [sys.executable, str(script), "--_role", name, *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise RuntimeError(f"role {name} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------- exports
def export_tiny(export_dir):
    """A random 2-layer, 64-wide BERT embedder over the sample vocabulary (role, own process)."""
    import keras
    import keras_hub

    from kerasbert.export.embedding import export_embedder
    from kerasbert.preprocessing.bert_preprocessor import BertPreprocessor

    keras.utils.set_random_seed(0)
    vocab = SAMPLE_VOCAB.read_text(encoding="utf-8").split()
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab),
        num_layers=2,
        num_heads=2,
        hidden_dim=64,
        intermediate_dim=128,
        max_sequence_length=64,
        dropout=0.0,
    )
    pre = BertPreprocessor(str(SAMPLE_VOCAB), lowercase=True, sequence_length=64)
    export_embedder(backbone, pre, export_dir, "tiny", pooling="mean", l2_normalize=True)
    return {"ok": True}


def export_minilm(export_dir):
    tool = SHARED / "tools" / "minilm-checkpoint"
    if not tool.exists():
        return None
    checkpoint = subprocess.run([str(tool)], check=True, capture_output=True, text=True).stdout.strip()
    command = [
        sys.executable,
        "-m",
        "kerasbert.export",
        "--init_checkpoint",
        checkpoint,
        "--mode",
        "embedding",
        "--pooling",
        "mean",
        "--l2_normalize",
        "--sequence_length",
        "128",
        "--export_dir",
        str(export_dir),
        "--model_name",
        "minilm",
    ]
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Path(export_dir) / "minilm"


# ------------------------------------------------------------------------------ in-process baseline
def in_process(base, seconds, seed):
    """Sentences/s of the newest version's serving_default called with batches of 64 (role)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the ops)

    version = max(int(p.name) for p in Path(base).iterdir() if p.name.isdigit())
    fn = tf.saved_model.load(str(Path(base) / str(version))).signatures["serving_default"]
    pool = sentences(512, seed)
    batches = [tf.constant(pool[i : i + IN_PROCESS_BATCH]) for i in range(0, len(pool), IN_PROCESS_BATCH)]
    for batch in batches[:3]:
        fn(text=batch)
    done, start, i = 0, time.perf_counter(), 0
    cpu = time.process_time()
    while time.perf_counter() - start < seconds:
        out = fn(text=batches[i % len(batches)])
        next(iter(out.values())).numpy()
        done += IN_PROCESS_BATCH
        i += 1
    wall = time.perf_counter() - start
    return {"sentences_per_second": done / wall, "cpu_fraction": (time.process_time() - cpu) / wall}


# --------------------------------------------------------------------------------------- load client
def load(address, model, concurrency, seconds, seed, stop_file=""):
    """`concurrency` gRPC clients in one asyncio loop, each sending prebuilt 1-8 sentence requests (role)."""
    import grpc

    from kerasbert.client import protos
    from kerasbert.client.tensors import to_tensor_proto

    rng = random.Random(seed)
    pool = sentences(512, seed)
    requests = []
    for _ in range(256):
        n = rng.randint(1, 8)
        req = protos.predict_pb2.PredictRequest()
        req.model_spec.name = model
        req.inputs["text"].CopyFrom(to_tensor_proto(rng.sample(pool, n)))
        requests.append((req.SerializeToString(), n))
    latencies, counts = [], {"sentences": 0, "requests": 0, "errors": 0, "bad": 0}
    errors: dict[str, int] = {}

    async def run():
        options = [("grpc.max_receive_message_length", -1)]
        async with grpc.aio.insecure_channel(address, options=options) as channel:
            call = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")  # bytes in, bytes out
            end = time.monotonic() + seconds

            async def client(i):
                k, checked = i * 7, False
                while time.monotonic() < end and not (stop_file and os.path.exists(stop_file)):
                    body, n = requests[k % len(requests)]
                    k += 1
                    t0 = time.perf_counter()
                    try:
                        reply = await call(body, timeout=120)
                    except grpc.aio.AioRpcError as exc:
                        counts["errors"] += 1
                        errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                        continue
                    latencies.append(time.perf_counter() - t0)
                    counts["requests"] += 1
                    counts["sentences"] += n
                    if not checked:  # one decoded reply per client: right rows, unit-length vectors
                        response = protos.predict_pb2.PredictResponse.FromString(reply)
                        emb = response.outputs["embeddings"]
                        counts["bad"] += int(emb.tensor_shape.dim[0].size != n)
                        checked = True

            await asyncio.gather(*(client(i) for i in range(concurrency)))

    cpu, start = time.process_time(), time.perf_counter()
    asyncio.run(run())
    wall = time.perf_counter() - start
    latencies.sort()

    def pct(p):
        return 1000 * latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] if latencies else 0.0

    return {
        **counts,
        "error_codes": errors,
        "seconds": wall,
        "sentences_per_second": counts["sentences"] / wall,
        "requests_per_second": counts["requests"] / wall,
        "latency_ms": {"p50": pct(50), "p95": pct(95), "p99": pct(99)},
        "client_cpu_fraction": (time.process_time() - cpu) / wall,
    }


# ------------------------------------------------------------------------------------------- servers
class Server:
    """A `python -m kerasbert.serve` process on a free loopback port."""

    def __init__(self, base, model, batching, log_path, batching_file=BATCHING_FILE):
        self.port, self.model, self.batching = free_port(), model, batching
        command = [
            sys.executable,
            "-m",
            "kerasbert.serve",
            "--port",
            str(self.port),
            "--model_base_path",
            str(base),
            "--model_name",
            model,
            "--file_system_poll_wait_seconds",
            "0.5",
        ]
        if batching:
            command += ["--enable_batching", "--batching_parameters_file", str(batching_file)]
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(command, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def versions(self):
        """{version: state name} from GetModelStatus, {} while not answering."""
        import grpc

        from kerasbert.client import protos

        request = protos.get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model
        state = protos.get_model_status_pb2.ModelVersionStatus.State
        try:
            with grpc.insecure_channel(self.address) as channel:
                stub = protos.model_service_pb2_grpc.ModelServiceStub(channel)
                response = stub.GetModelStatus(request, timeout=5)
        except grpc.RpcError:
            return {}
        return {s.version: state.Name(s.state) for s in response.model_version_status}

    def wait_for(self, version=None, timeout=600):
        deadline = time.monotonic() + timeout
        while True:
            states = self.versions()
            if version is None and "AVAILABLE" in states.values():
                return
            if version is not None and states.get(version) == "AVAILABLE":
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}); see {self.log.name}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"version {version} not AVAILABLE after {timeout} s: {states}")
            time.sleep(0.2)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def measure(server, concurrency, seconds, seed):
    """One load run against `server`, with the server's CPU share and the load average around it."""
    before, cpu0 = load_average(), proc_cpu_seconds(server.proc.pid)
    with OtherLoad([server.proc.pid]) as other:
        result = role("load", server.address, server.model, concurrency, seconds, seed)
    result["server_cpu_fraction"] = (proc_cpu_seconds(server.proc.pid) - cpu0) / result["seconds"]
    result["load_before"], result["load_after"] = before, load_average()
    result["other_processes_cores"], result["loaded"] = other.other_cores, other.loaded
    return result


def hot_swap(server, base, swaps, seconds, tmp):
    """p99 of SWAP_CLIENTS clients steady vs while `swaps` new versions are copied in; RSS before/after."""
    baseline = measure(server, SWAP_CLIENTS, seconds, seed=99)
    rss_before = rss_mb(server.proc.pid)
    stop_file = Path(tmp) / f"stop-{server.port}"
    client = subprocess.Popen(
        [sys.executable, __file__, "--_role", "load", server.address, server.model]
        + [str(SWAP_CLIENTS), "3600", "98", str(stop_file)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    pause = min(1.0, seconds)
    time.sleep(pause)
    swap_seconds = []
    for _ in range(swaps):
        current = max(int(p.name) for p in Path(base).iterdir() if p.name.isdigit())
        new = current + 1
        start = time.monotonic()
        staging = Path(base) / f".tmp-{new}"
        shutil.copytree(Path(base) / str(current), staging)
        os.rename(staging, Path(base) / str(new))
        server.wait_for(new)
        swap_seconds.append(time.monotonic() - start)
        time.sleep(pause / 2)
        shutil.rmtree(Path(base) / str(current), ignore_errors=True)  # unloaded by now (latest policy)
    time.sleep(pause)
    stop_file.write_text("stop")
    during = json.loads(client.communicate(timeout=300)[0].strip().splitlines()[-1])
    rss_after = rss_mb(server.proc.pid)
    return {
        "clients": SWAP_CLIENTS,
        "swaps": swaps,
        "p99_ms_baseline": baseline["latency_ms"]["p99"],
        "p99_ms_during_swaps": during["latency_ms"]["p99"],
        "p99_ratio": during["latency_ms"]["p99"] / max(baseline["latency_ms"]["p99"], 1e-9),
        "p50_ms_baseline": baseline["latency_ms"]["p50"],
        "p50_ms_during_swaps": during["latency_ms"]["p50"],
        "errors": baseline["errors"] + during["errors"],
        "error_codes": during["error_codes"],
        "seconds_per_swap": stats(swap_seconds),
        "rss_mb_before": rss_before,
        "rss_mb_after": rss_after,
    }


# ---------------------------------------------------------------------------------------- benchmark
def bench_model(name, base, args, tmp):
    """In-process rate, served figures for both servers over the rounds, hot-swap; returns the model's JSON."""
    copies = {}
    for mode in ("batching", "no_batching"):
        copies[mode] = Path(tmp) / mode / name
        shutil.copytree(base, copies[mode])
    servers = {
        mode: Server(
            copies[mode], name, mode == "batching", Path(tmp) / f"{name}-{mode}.log", args.batching_parameters_file
        )
        for mode in copies
    }
    try:
        for server in servers.values():
            server.wait_for()
        for server in servers.values():  # warm-up (first calls trace/compile per shape)
            role("load", server.address, name, 8, args.seconds / 2, 7)
        inproc, served = [], {mode: {c: [] for c in args.concurrency} for mode in servers}
        for r in range(args.rounds):
            before = load_average()
            with OtherLoad([s.proc.pid for s in servers.values()]) as other:
                inproc.append(role("inprocess", base, args.seconds, r))
            inproc[-1].update(load_before=before, load_after=load_average(), other_processes_cores=other.other_cores)
            inproc[-1]["loaded"] = other.loaded
            modes = list(servers) if r % 2 == 0 else list(servers)[::-1]
            for mode in modes:
                for c in args.concurrency:
                    result = measure(servers[mode], c, args.seconds, seed=r * 100 + c)
                    served[mode][c].append(result)
                    print(
                        f"  {name:7s} round {r + 1} {mode:11s} {c:3d} clients: {result['sentences_per_second']:8.1f} "
                        f"sent/s  p50 {result['latency_ms']['p50']:7.1f}  p99 {result['latency_ms']['p99']:7.1f} ms"
                        f"  errors {result['errors']}  load {result['load_after']}",
                        flush=True,
                    )
        swap = hot_swap(servers["batching"], copies["batching"], args.swaps, args.seconds, tmp)
        swap_plain = hot_swap(servers["no_batching"], copies["no_batching"], args.swaps, args.seconds, tmp)
    finally:
        for server in servers.values():
            server.stop()
    out = {
        "in_process": {
            "batch_size": IN_PROCESS_BATCH,
            "sentences_per_second": stats(x["sentences_per_second"] for x in inproc),
            "loaded": any(x["loaded"] for x in inproc),
            "runs": inproc,
        },
        "served": {},
        "hot_swap": swap,  # on the batching server
        "hot_swap_no_batching": swap_plain,
    }
    for mode, levels in served.items():
        out["served"][mode] = {}
        for c, runs in levels.items():
            out["served"][mode][str(c)] = {
                "sentences_per_second": stats(x["sentences_per_second"] for x in runs),
                "requests_per_second": stats(x["requests_per_second"] for x in runs),
                "latency_ms": {p: stats(x["latency_ms"][p] for x in runs) for p in ("p50", "p95", "p99")},
                "errors": sum(x["errors"] + x["bad"] for x in runs),
                "client_cpu_fraction": stats(x["client_cpu_fraction"] for x in runs),
                "server_cpu_fraction": stats(x["server_cpu_fraction"] for x in runs),
                "loaded": any(x["loaded"] for x in runs),
                "other_processes_cores": stats(x["other_processes_cores"] for x in runs),
                "runs": runs,
            }
    rate = out["in_process"]["sentences_per_second"]["median"]
    # Per CPU-second of the serving process (server) or of the in-process caller: less sensitive to other jobs
    # on a shared machine than wall-clock rates, which drop with whatever else takes the cores.
    per_cpu = statistics.median(x["sentences_per_second"] / max(x["cpu_fraction"], 1e-9) for x in inproc)
    out["in_process"]["sentences_per_cpu_second"] = per_cpu
    for levels in out["served"].values():
        for row in levels.values():
            row["sentences_per_server_cpu_second"] = statistics.median(
                x["sentences_per_second"] / max(x["server_cpu_fraction"], 1e-9) for x in row["runs"]
            )
    out["cpu_efficiency_vs_in_process"] = {
        mode: {c: row["sentences_per_server_cpu_second"] / per_cpu for c, row in levels.items()}
        for mode, levels in out["served"].items()
    }
    out["ratio_vs_in_process"] = {
        mode: {c: out["served"][mode][c]["sentences_per_second"]["median"] / rate for c in out["served"][mode]}
        for mode in out["served"]
    }
    return out


def print_summary(results):
    print()
    for name, model in results["models"].items():
        rate = model["in_process"]["sentences_per_second"]
        print(
            f"== {name}: in-process, batches of {IN_PROCESS_BATCH}: {rate['median']:.1f} sentences/s "
            f"({rate['min']:.1f}-{rate['max']:.1f}){' LOADED' if model['in_process']['loaded'] else ''}"
        )
        print(
            f"{'server':12s} {'clients':>7s} {'sent/s':>9s} {'range':>15s} {'x in-proc':>9s} {'p50 ms':>8s} "
            f"{'p95 ms':>8s} {'p99 ms':>8s} {'client CPU':>10s} {'server CPU':>10s}"
        )
        for mode, levels in model["served"].items():
            for c, row in levels.items():
                s = row["sentences_per_second"]
                lat = row["latency_ms"]
                print(
                    f"{mode:12s} {c:>7s} {s['median']:9.1f} {s['min']:7.1f}-{s['max']:<7.1f} "
                    f"{model['ratio_vs_in_process'][mode][c]:9.2f} {lat['p50']['median']:8.1f} "
                    f"{lat['p95']['median']:8.1f} {lat['p99']['median']:8.1f} "
                    f"{row['client_cpu_fraction']['median']:10.2f} {row['server_cpu_fraction']['median']:10.2f}"
                    f"{'  loaded' if row['loaded'] else ''}{'  ERRORS ' + str(row['errors']) if row['errors'] else ''}"
                )
        target = model["ratio_vs_in_process"]["batching"]["32"]
        loaded = model["served"]["batching"]["32"]["loaded"] or model["in_process"]["loaded"]
        verdict = "loaded machine: not read as a result" if loaded else ("meets" if target >= 0.9 else "MISSES")
        print(f"32 clients with batching: {target:.2f}x the in-process rate (target >= 0.9x: {verdict})")
        efficiency = model["cpu_efficiency_vs_in_process"]
        print(
            "sentences per CPU-second, server vs in-process caller: "
            + ", ".join(f"{mode} {c}: {x:.2f}x" for mode, levels in efficiency.items() for c, x in levels.items())
        )
        for label, key in (("batching", "hot_swap"), ("no_batching", "hot_swap_no_batching")):
            swap = model[key]
            print(
                f"hot-swap, {label} server ({swap['clients']} clients, {swap['swaps']} swaps, "
                f"{swap['seconds_per_swap']['median']:.1f} s each): p99 {swap['p99_ms_baseline']:.1f} ms steady -> "
                f"{swap['p99_ms_during_swaps']:.1f} ms during swaps ({swap['p99_ratio']:.2f}x), errors "
                f"{swap['errors']}; server RSS {swap['rss_mb_before']:.0f} MB -> {swap['rss_mb_after']:.0f} MB"
            )
    print(
        f"load average {results['load_before']} before, {results['load_after']} after, "
        f"{results['machine']['cores']} cores{' (LOADED)' if results['loaded'] else ''}"
    )


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_rate) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {"batching": "tab:blue", "no_batching": "tab:orange"}
    for name, model in results["models"].items():
        style = "-" if name == "tiny" else "--"
        for mode, levels in model["served"].items():
            xs = [int(c) for c in levels]
            ax_lat.plot(
                xs,
                [levels[c]["latency_ms"]["p50"]["median"] for c in levels],
                style,
                marker="o",
                color=colors[mode],
                label=f"{name} {mode} p50",
            )
            ax_lat.plot(
                xs,
                [levels[c]["latency_ms"]["p99"]["median"] for c in levels],
                style,
                marker="^",
                color=colors[mode],
                alpha=0.5,
                label=f"{name} {mode} p99",
            )
            ax_rate.plot(
                xs,
                [levels[c]["sentences_per_second"]["median"] for c in levels],
                style,
                marker="o",
                color=colors[mode],
                label=f"{name} {mode}",
            )
        ax_rate.axhline(
            model["in_process"]["sentences_per_second"]["median"],
            linestyle=style,
            color="gray",
            label=f"{name} in-process (batch {IN_PROCESS_BATCH})",
        )
    for ax in (ax_lat, ax_rate):
        ax.set_xscale("log", base=2)
        ax.set_xticks(results["concurrency"], [str(c) for c in results["concurrency"]])
        ax.set_yscale("log")
        ax.set_xlabel("concurrent clients (1-8 sentences per request)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax_lat.set_ylabel("latency (ms)")
    ax_rate.set_ylabel("sentences/s")
    m = results["machine"]
    fig.suptitle(
        f"kerasbert.serve on {m['cores']} cores ({m['cpu']}), load {results['load_before']}->{results['load_after']}",
        fontsize=9,
    )
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=None, help="comma-separated: tiny, minilm (default both)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds per model (default 2)")
    parser.add_argument("--seconds", type=float, default=None, help="length of one load run (default 4)")
    parser.add_argument("--swaps", type=int, default=None, help="hot-swaps (default 10)")
    parser.add_argument("--concurrency", default=None, help="comma-separated client counts (default 1,8,32,64)")
    parser.add_argument(
        "--quick", action="store_true", help="defaults: tiny model, 1 round, 1 s runs, 2 swaps, 1 and 32 clients"
    )
    parser.add_argument("--batching_parameters_file", default=str(BATCHING_FILE), help="for the batching server")
    parser.add_argument("--json", default="", help="default: benchmarks/results/serving_<models>.json")
    parser.add_argument("--plot", default=str(RESULTS / "serving_latency.png"))
    parser.add_argument("--_role", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._role:
        name, rest = args._role[0], args._role[1:]
        if name == "export_tiny":
            result = export_tiny(rest[0])
        elif name == "inprocess":
            result = in_process(rest[0], float(rest[1]), int(rest[2]))
        elif name == "load":
            result = load(rest[0], rest[1], int(rest[2]), float(rest[3]), int(rest[4]), *(rest[5:6]))
        else:
            parser.error(f"unknown role {name}")
        print(json.dumps(result))
        return result
    quick = {"models": "tiny", "rounds": 1, "seconds": 1.0, "swaps": 2, "concurrency": "1,32"}
    full = {
        "models": "tiny,minilm",
        "rounds": 2,
        "seconds": 4.0,
        "swaps": 10,
        "concurrency": ",".join(map(str, CONCURRENCY)),
    }
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    output = Path(args.json or RESULTS / f"serving_{'_'.join(models)}{'_quick' if args.quick else ''}.json")
    results = {
        "machine": machine(),
        "load_before": load_average(),
        "quick": args.quick,
        "rounds": args.rounds,
        "seconds_per_run": args.seconds,
        "concurrency": list(args.concurrency),
        "sentences_per_request": [1, 8],
        "batching_parameters_file": _repo_relative(args.batching_parameters_file),
        "batching_parameters": Path(args.batching_parameters_file).read_text(),
        "models": {},
    }
    print(f"machine: {results['machine']}; load {results['load_before']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        for name in models:
            start = time.monotonic()
            if name == "tiny":
                role("export_tiny", Path(tmp) / "exports")
                base = Path(tmp) / "exports" / "tiny"
            elif name == "minilm":
                base = export_minilm(Path(tmp) / "exports")
                if base is None:
                    print("minilm: ../shared/tools/minilm-checkpoint is absent; skipped")
                    continue
            else:
                parser.error(f"unknown model {name}")
            print(f"{name}: exported in {time.monotonic() - start:.1f} s", flush=True)
            results["models"][name] = bench_model(name, base, args, tmp)
    results["load_after"] = load_average()
    results["loaded_rule"] = f"other processes used more than {LOADED_OTHER_CORES:g} cores during a measurement"
    results["loaded"] = any(m["in_process"]["loaded"] for m in results["models"].values()) or any(
        row["loaded"] for m in results["models"].values() for levels in m["served"].values() for row in levels.values()
    )
    results["client_max_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print_summary(results)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.plot)
    print(f"wrote {output} and {args.plot}")
    return results


if __name__ == "__main__":
    main()
