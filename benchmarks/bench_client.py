"""`Client.encode` of 10,000 sentences over gRPC, over REST, and in-process (no client, no server).

One embedding export (a tiny random 2-layer BERT over the sample vocabulary, or all-MiniLM-L6-v2 from
`../shared/tools/minilm-checkpoint`) is served by one `python -m kerasbert.serve --rest_api_port` process
(no request batching). Each contender runs in its own process and embeds the same sentences:

* `grpc`: `Client("127.0.0.1:<port>").encode(sentences)`: requests of 64, 4 in flight (the defaults);
* `grpc_sequential`: the same with `max_in_flight=1` (one request at a time, the client before pipelining);
* `rest`: `Client("http://127.0.0.1:<port>").encode(sentences)` (TF Serving's REST API, JSON, keep-alive);
* `in_process`: the SavedModel loaded with `tf.saved_model.load` in the measuring process, its
  `serving_default` called with the same batches (sorted by length, as `encode` sends them).

Rounds alternate the contenders (the order rotates each round); each figure is the median sentences/s with
its range. Every contender's vectors are compared with the in-process ones. The machine (CPU model, SIMD
flags, cores) and the 1-minute load average before and after each measurement are recorded with
`bench_ner`'s helpers; a measurement is `loaded` when the load average exceeded the cores (other jobs ran).
JSON goes to `benchmarks/results/client_<model>.json`.

    python benchmarks/bench_client.py                      # tiny model, 10,000 sentences, 3 rounds
    python benchmarks/bench_client.py --model minilm --rounds 2
    python benchmarks/bench_client.py --quick              # tiny, 300 sentences, 1 round (the test)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench_ner import load_average, loaded, machine  # noqa: E402  (the same machine facts in every benchmark)

CONTENDERS = ("grpc", "grpc_sequential", "rest", "in_process")
BATCH_SIZE = 64
WARMUP_SENTENCES = 256


def sentences(n, seed):
    """`n` sentences of 6-20 words (bench_serving's generator: the same text as the serving benchmark)."""
    from bench_serving import sentences as make

    return make(n, seed)


def role(name, *args, timeout=3600):
    """Runs this script as `--_role name args...` in a new process (bench_serving's runner); its JSON."""
    from bench_serving import role as run_role

    return run_role(name, *args, timeout=timeout, script=__file__)


# ------------------------------------------------------------------------------------------ roles
def run_client(target, model, n, seed, max_in_flight, vectors_path):
    """Embeds `n` sentences through the client (role: a process that never imports TensorFlow)."""
    import numpy as np

    from kerasbert.client import Client

    texts = sentences(n, seed)
    with Client(target, model_name=model, timeout=120, batch_size=BATCH_SIZE, max_in_flight=int(max_in_flight)) as c:
        c.encode(sentences(WARMUP_SENTENCES, seed + 1))  # connection, metadata, the server's first calls
        cpu, start = time.process_time(), time.perf_counter()
        vectors = c.encode(texts, progress=False)
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu
    np.save(vectors_path, vectors)
    return {
        "seconds": wall,
        "sentences_per_second": n / wall,
        "client_cpu_seconds": cpu,
        "tensorflow_imported": "tensorflow" in sys.modules,
    }


def run_in_process(export, n, seed, vectors_path):
    """Embeds `n` sentences with the SavedModel in this process, batched as `Client.encode` does (role)."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the ops)

    fn = tf.saved_model.load(str(export)).signatures["serving_default"]
    texts = sentences(n, seed)

    def encode(batch_texts):
        order = np.argsort([len(t) for t in batch_texts], kind="stable")
        parts = [
            fn(text=tf.constant([batch_texts[i] for i in order[s : s + BATCH_SIZE]]))["embeddings"].numpy()
            for s in range(0, len(order), BATCH_SIZE)
        ]
        out = np.empty((len(batch_texts), parts[0].shape[1]), np.float32)
        out[order] = np.concatenate(parts)
        return out

    encode(sentences(WARMUP_SENTENCES, seed + 1))
    cpu, start = time.process_time(), time.perf_counter()
    vectors = encode(texts)
    wall = time.perf_counter() - start
    np.save(vectors_path, vectors)
    return {"seconds": wall, "sentences_per_second": n / wall, "cpu_seconds": time.process_time() - cpu}


def export_model(name, export_dir):
    """The model's TF Serving base folder (an export made here, in its own process)."""
    from bench_serving import export_minilm
    from bench_serving import role as serving_role

    if name == "tiny":
        serving_role("export_tiny", export_dir)  # bench_serving's random 2-layer, 64-wide embedder
        return Path(export_dir) / "tiny"
    base = export_minilm(export_dir)
    if base is None:
        raise SystemExit("--model minilm needs ../shared/tools/minilm-checkpoint")
    return base


# ------------------------------------------------------------------------------------------ driver
def bench(args):
    import numpy as np

    sys.path.insert(0, str(REPO / "tests"))
    from serving_utils import running_server

    info = machine()
    cores = info["cores"]
    with tempfile.TemporaryDirectory(prefix="bench_client_") as tmp:
        base = export_model(args.model, Path(tmp) / "exports")
        version = max(int(p.name) for p in base.iterdir() if p.name.isdigit())
        runs = {c: [] for c in CONTENDERS}
        with running_server(model_base_path=str(base), model_name=args.model, rest_api=True, timeout=600) as server:
            targets = {"grpc": server.address, "grpc_sequential": server.address, "rest": server.rest_url}
            for round_ in range(args.rounds):
                order = CONTENDERS[round_ % len(CONTENDERS) :] + CONTENDERS[: round_ % len(CONTENDERS)]
                for contender in order:
                    vectors = Path(tmp) / f"{contender}_{round_}.npy"
                    before = load_average()
                    if contender == "in_process":
                        result = role("in_process", base / str(version), args.sentences, args.seed, vectors)
                    else:
                        in_flight = 1 if contender == "grpc_sequential" else args.max_in_flight
                        result = role(
                            "client", targets[contender], args.model, args.sentences, args.seed, in_flight, vectors
                        )
                    after = load_average()
                    result.update(load_average=[before, after], loaded=loaded(before, after, cores), round=round_)
                    runs[contender].append(result)
                    print(
                        f"round {round_ + 1} {contender:16s} {result['sentences_per_second']:9.1f} sentences/s "
                        f"(load {before} -> {after}{', LOADED' if result['loaded'] else ''})",
                        flush=True,
                    )
            reference = np.load(Path(tmp) / "in_process_0.npy")
            agreement = {}
            for contender in CONTENDERS:
                got = np.load(Path(tmp) / f"{contender}_0.npy")
                agreement[contender] = float(np.abs(got - reference).max())

    def summary(values):
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    contenders = {
        c: {"sentences_per_second": summary([r["sentences_per_second"] for r in rs]), "runs": rs}
        for c, rs in runs.items()
    }
    in_process = contenders["in_process"]["sentences_per_second"]["median"]
    return {
        "benchmark": "bench_client",
        "quick": args.quick,
        "model": args.model,
        "settings": {
            "sentences": args.sentences,
            "rounds": args.rounds,
            "batch_size": BATCH_SIZE,
            "max_in_flight": args.max_in_flight,
            "seed": args.seed,
            "server": "python -m kerasbert.serve --rest_api_port (no --enable_batching)",
        },
        "machine": info,
        "loaded": any(r["loaded"] for rs in runs.values() for r in rs),
        "contenders": contenders,
        "ratio_to_in_process": {
            c: contenders[c]["sentences_per_second"]["median"] / in_process for c in CONTENDERS if c != "in_process"
        },
        "max_abs_difference_to_in_process": agreement,
        "client_imported_tensorflow": any(r.get("tensorflow_imported") for c in CONTENDERS for r in runs[c]),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("tiny", "minilm"), default="tiny")
    parser.add_argument("--sentences", type=int, default=None, help="default 10,000 (300 with --quick)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 3, 1 with --quick)")
    parser.add_argument("--max_in_flight", type=int, default=4, help="the pipelined contenders' window")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="300 sentences, 1 round")
    parser.add_argument("--json", default="", help="default: benchmarks/results/client_<model>[_quick].json")
    parser.add_argument("--_role", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._role:
        name, *rest = args._role
        result = {"client": run_client, "in_process": run_in_process}[name](*rest[:1], *map(_number, rest[1:]))
        print(json.dumps(result))
        return 0
    args.sentences = args.sentences or (300 if args.quick else 10_000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    result = bench(args)
    output = Path(args.json or RESULTS / f"client_{args.model}{'_quick' if args.quick else ''}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for c in CONTENDERS:
        s = result["contenders"][c]["sentences_per_second"]
        print(f"{c:16s} median {s['median']:9.1f} sentences/s (range {s['min']:.1f}-{s['max']:.1f})")
    print(f"{'LOADED: ' if result['loaded'] else ''}written {output}")
    return 0


def _number(value):
    """Role arguments: ints stay ints, anything else (paths, targets, names) stays a string."""
    try:
        return int(value)
    except ValueError:
        return value


if __name__ == "__main__":
    sys.exit(main())
