"""How cost grows with the work: throughput and p50 latency of the served MiniLM against sequence length and batch
size, beside ONNX Runtime and PyTorch, every contender in its own process (`benchmarks/harness.py`).

Contenders (bench_embeddings' own workers, imported, not copied; texts in, L2-normalised mean-pooled vectors out):

* `kerasbert_f32`: all-MiniLM-L6-v2 exported with `python -m kerasbert.export --mode embedding` (sequence length
  512), served by its own `python -m kerasbert.serve`, called with `Client.encode` over gRPC (tokenization inside
  the served graph);
* `kerasbert_bf16`: the same export with `--mixed_precision bfloat16`, served the same way (left out, with the
  reason, on CPUs without AVX512_BF16 or AMX);
* `ort_f32`: the `torch.onnx` export under ONNX Runtime (ORT_ENABLE_ALL), HF fast tokenizer, pooling in NumPy;
* `sentence_transformers`: `SentenceTransformer(<checkpoint>).encode` on torch CPU.

Points: (a) sequence length 16, 32, 64, 128, 256, 512 at batch 32; (b) batch 1, 4, 16, 64, 256 at length 128. One
request (one `encode` call) is one batch. Texts are joined random single-WordPiece vocabulary words (lowercase
ASCII entries of the checkpoint's vocab.txt, no `##` pieces), `length - 2` of them, so a text is exactly `length`
WordPieces with `[CLS]` and `[SEP]`: every row of a batch has that length and no padding. This is checked twice
before anything is timed: every text through the HF tokenizer (ONNX Runtime's and sentence-transformers') in the
preparation step, and one text per length through the served export's `tokens` signature (`Client.tokens`, the
WordPieces the served graph sees) in each gRPC worker; a mismatch stops the run.

Each point: warm-up calls (at least one, `--warmup_seconds`), then timed calls until `--seconds` have passed
(at least `--min_repetitions`); throughput = sentences / timed seconds, latency = p50 of the timed calls (ms per
request, text in, vectors out). The harness runs the contenders in alternating rounds, each a new process, and
reports median and min-max over rounds, the load average around every run (LOADED when above the core count) and
the machine facts. Latency against concurrent clients is bench_serving.py's (results/serving_latency.png), not
redone here.

    python benchmarks/bench_cost.py                    # 11 points x 4 contenders, 2 rounds (~5 min on 2 quiet cores)
    python benchmarks/bench_cost.py --rounds 3        # ~7.5 min
    python benchmarks/bench_cost.py --quick            # lengths 16, 64 and batches 1, 4; 1 round (its test)

Figures go to `benchmarks/results/cost_curves.json` (`--output`), the plot to `benchmarks/results/cost_curves.png`
(`--plot`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_embeddings as emb  # noqa: E402  (also puts the repo on sys.path, sets USE_TF=0)
import harness  # noqa: E402

RESULTS = emb.RESULTS
LENGTHS, LENGTH_BATCH = (16, 32, 64, 128, 256, 512), 32
BATCHES, BATCH_LENGTH = (1, 4, 16, 64, 256), 128
QUICK_LENGTHS, QUICK_BATCHES = (16, 64), (1, 4)
CONTENDERS = ["kerasbert_f32", "kerasbert_bf16", "ort_f32", "sentence_transformers"]
LABELS = {
    "kerasbert_f32": "kerasbert float32, gRPC",
    "kerasbert_bf16": "kerasbert bf16 export, gRPC",
    "ort_f32": "ONNX Runtime float32",
    "sentence_transformers": "PyTorch (sentence-transformers)",
}
CONCURRENCY_PLOT = "benchmarks/results/serving_latency.png (bench_serving.py)"


def ints(text):
    return tuple(int(x) for x in str(text).split(",") if x.strip())


def points(lengths, batches):
    """[(key, sequence length, batch)]: the length sweep at batch 32, then the batch sweep at length 128."""
    out = [(f"length{n}_batch{LENGTH_BATCH}", n, LENGTH_BATCH) for n in lengths]
    out += [(f"length{BATCH_LENGTH}_batch{b}", BATCH_LENGTH, b) for b in batches]
    seen = set()
    return [p for p in out if not (p[0] in seen or seen.add(p[0]))]


# --------------------------------------------------------------------------------------------
# Synthetic texts of an exact WordPiece length (preparation subprocess: imports transformers)
# --------------------------------------------------------------------------------------------
def single_piece_words(vocab):
    """Vocabulary entries that are whole lowercase ASCII words: each tokenizes to itself, one WordPiece."""
    return sorted(w for w in vocab if w.isascii() and w.isalpha() and w.islower() and len(w) >= 3)


def make_texts(words, length, count, seed):
    """`count` texts of `length - 2` random words each (`length` WordPieces with [CLS] and [SEP])."""
    rng = random.Random(seed * 1000 + length)
    return [" ".join(rng.choice(words) for _ in range(length - 2)) for _ in range(count)]


def prepare(work_dir, checkpoint, plan):
    """Writes texts.json ({length: texts}) checked with the HF tokenizer, and the ONNX export (onnx.json)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    words = single_piece_words(tokenizer.get_vocab())
    need = {}
    for _, length, batch in plan:
        need[length] = max(need.get(length, 0), batch)
    texts = {str(n): make_texts(words, n, count, seed=0) for n, count in sorted(need.items())}
    lengths = {n: sorted({len(ids) for ids in tokenizer(t)["input_ids"]}) for n, t in texts.items()}
    wrong = {n: got for n, got in lengths.items() if got != [int(n)]}
    if wrong:
        sys.exit(f"synthetic texts do not have the intended WordPiece lengths: {wrong}")
    Path(work_dir, "texts.json").write_text(json.dumps(texts))
    Path(work_dir, "onnx.json").write_text(json.dumps(emb.export_onnx(checkpoint, work_dir, int8=False)))
    return {"words": len(words), "hf_tokenizer_lengths": lengths, "texts": {n: len(t) for n, t in texts.items()}}


# --------------------------------------------------------------------------------------------
# Worker: bench_embeddings' contenders, with this curve measurement in place of their one pass
# --------------------------------------------------------------------------------------------
def time_point(encode, texts, warmup_seconds, seconds, min_repetitions):
    """Warm-up calls (>= 1, >= warmup_seconds), then timed calls (>= min_repetitions, >= seconds)."""
    start = time.perf_counter()
    while True:
        encode(texts)
        if time.perf_counter() - start >= warmup_seconds:
            break
    latencies = []
    while len(latencies) < min_repetitions or sum(latencies) < seconds:
        start = time.perf_counter()
        encode(texts)
        latencies.append(time.perf_counter() - start)
    return latencies


def check_served_lengths(client, texts):
    """The WordPieces the served graph sees ([CLS] ... [SEP]): one text per length must be that long."""
    got = {n: len(tokens) for n, tokens in zip(texts, client.tokens([texts[n][0] for n in texts]))}
    wrong = {n: k for n, k in got.items() if k != int(n)}
    if wrong:
        sys.exit(f"the served export sees other lengths than intended (length: tokens): {wrong}")
    return got


def measure_curve(args, name, encode):
    """Takes bench_embeddings' `_measure` place: every point of the plan with this contender's `encode`."""
    texts = json.loads(Path(args.work_dir, "texts.json").read_text())
    result = {}
    client = getattr(encode, "__self__", None)  # Client.encode of a gRPC contender
    if client is not None and hasattr(client, "tokens"):
        result["served_token_lengths"] = check_served_lengths(client, texts)
    for key, length, batch in points(ints(args.lengths), ints(args.batches)):
        rows = texts[str(length)][:batch]
        latencies = time_point(encode, rows, args.warmup_seconds, args.seconds, args.min_repetitions)
        result[f"{key}_sentences_per_second"] = batch * len(latencies) / sum(latencies)
        result[f"{key}_p50_ms"] = 1000 * statistics.median(latencies)
        result[f"{key}_repetitions"] = len(latencies)
    return result


def run_worker(args):
    # One request per encode call: the contenders batch by args.batch_size, set to the largest batch (parse_args).
    emb._measure = measure_curve
    return harness.worker({c: emb.WORKERS[c] for c in CONTENDERS}, args)


# --------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------
def curves(report, contenders, plan):
    """{contender: {point key: {"length", "batch", "sentences_per_second": summary, "p50_ms": summary}}}."""
    out = {}
    for c in contenders:
        s = report.summary[c]
        out[c] = {
            key: {
                "length": length,
                "batch": batch,
                "sentences_per_second": s[f"{key}_sentences_per_second"],
                "p50_ms": s[f"{key}_p50_ms"],
                "repetitions": s[f"{key}_repetitions"],
            }
            for key, length, batch in plan
        }
    return out


def load_range(report):
    loads = [r[k] for r in report.rounds for k in ("load_before", "load_after")]
    return [min(loads), max(loads)]


def table(results):
    contenders = results["contenders"]
    lines = [f"{'point':<20}" + "".join(f"{c:>26}" for c in contenders)]
    lines.append(f"{'':<20}" + "".join(f"{'sent/s':>14}{'p50 ms':>12}" for _ in contenders))
    for key in results["points"]:
        row = f"{key:<20}"
        for c in contenders:
            p = results["curves"][c][key]
            row += f"{p['sentences_per_second']['median']:>14,.1f}{p['p50_ms']['median']:>12,.1f}"
        lines.append(row)
    return "\n".join(lines)


def subtitle(results):
    m = results["machine"]
    low, high = results["load_average_range"]
    loaded = [c for c, v in results["loaded_contenders"].items() if v]
    mark = f"; LOADED ({', '.join(loaded)})" if loaded else ""
    return (
        f"{m['cpu']} ({', '.join(m['flags']) or 'no AVX2'}), {m['cores']} cores\n"
        f"load average {low}-{high}{mark}\n"
        f"median of {results['rounds']} round(s), bars min-max; one request per batch, so p50 latency ~ batch / rate; "
        f"concurrent clients: {CONCURRENCY_PLOT}"
    )


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    panels = (
        ("length", f"sequence length (WordPieces), batch {LENGTH_BATCH}", lambda p: p["batch"] == LENGTH_BATCH),
        ("batch", f"batch size (sentences per request), length {BATCH_LENGTH}", lambda p: p["length"] == BATCH_LENGTH),
    )
    for ax, (field, xlabel, keep) in zip(axes, panels):
        for c in results["contenders"]:
            rows = sorted((p for p in results["curves"][c].values() if keep(p)), key=lambda p: p[field])
            xs = [p[field] for p in rows]
            sps = [p["sentences_per_second"] for p in rows]
            mid = [s["median"] for s in sps]
            err = [[m - s["min"] for m, s in zip(mid, sps)], [s["max"] - m for m, s in zip(mid, sps)]]
            ax.errorbar(xs, mid, yerr=err, marker="o", capsize=3, label=LABELS.get(c, c))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ticks = sorted({p[field] for c in results["contenders"] for p in results["curves"][c].values() if keep(p)})
        ax.set_xticks(ticks, [str(x) for x in ticks])
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_locator(ticker.LogLocator(subs=(2, 5)))
        ax.yaxis.set_minor_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("sentences/s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("throughput vs sequence length", fontsize=10)
    axes[1].set_title("throughput vs batch size", fontsize=10)
    fig.suptitle("all-MiniLM-L6-v2, text in, vectors out\n" + subtitle(results), fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_arguments(parser, rounds=2)
    parser.add_argument("--lengths", default=None, help=f"at batch {LENGTH_BATCH} (default {LENGTHS})")
    parser.add_argument("--batches", default=None, help=f"at length {BATCH_LENGTH} (default {BATCHES})")
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per point, at least")
    parser.add_argument("--min_repetitions", type=int, default=1, help="timed calls per point, at least")
    parser.add_argument("--warmup_seconds", type=float, default=0.3, help="warm-up per point (at least one call)")
    parser.add_argument("--contenders", default="", help="comma-separated subset (default: all this CPU runs)")
    parser.add_argument("--quick", action="store_true", help="lengths 16,64, batches 1,4, 1 round, 2 calls a point")
    parser.add_argument("--output", default=str(RESULTS / "cost_curves.json"))
    parser.add_argument("--plot", default=str(RESULTS / "cost_curves.png"))
    parser.add_argument("--_prepare", nargs=3, help=argparse.SUPPRESS)
    # read by bench_embeddings' workers
    parser.add_argument("--work_dir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", default="", help=argparse.SUPPRESS)
    parser.add_argument("--batch_size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sequence_length", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    lengths, batches = (QUICK_LENGTHS, QUICK_BATCHES) if args.quick else (LENGTHS, BATCHES)
    args.lengths = args.lengths if args.lengths is not None else ",".join(map(str, lengths))
    args.batches = args.batches if args.batches is not None else ",".join(map(str, batches))
    if args.quick:
        args.rounds, args.seconds, args.min_repetitions, args.warmup_seconds = 1, 0.0, 2, 0.0
    plan = points(ints(args.lengths), ints(args.batches))
    args.batch_size = args.batch_size or max(b for _, _, b in plan)
    args.sequence_length = args.sequence_length or max(n for _, n, _ in plan)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    if args._prepare:
        work, checkpoint, plan = args._prepare
        print(json.dumps(prepare(work, checkpoint, json.loads(plan))))
        return 0
    started = time.perf_counter()
    plan = points(ints(args.lengths), ints(args.batches))
    checkpoint = emb.minilm_checkpoint()
    info = harness.machine()
    wanted = [c.strip() for c in args.contenders.split(",") if c.strip()] or list(CONTENDERS)
    unknown = sorted(set(wanted) - set(CONTENDERS))
    if unknown:
        sys.exit(f"--contenders: unknown {', '.join(unknown)}; choose from {', '.join(CONTENDERS)}")
    skipped = {}
    if not emb.has_bf16(info["flags"]) and "kerasbert_bf16" in wanted:
        skipped["kerasbert_bf16"] = "this CPU has neither AVX512_BF16 nor AMX (oneDNN would emulate bfloat16)"
        wanted.remove("kerasbert_bf16")
    print(harness.machine_line(info))
    print(f"points (key, length, batch): {plan}; contenders {', '.join(wanted)}", flush=True)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as work:
        prepare_start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor() as pool:  # the three preparation subprocesses at once
            exports = [
                pool.submit(emb.export, checkpoint, Path(work, "exports"), c, emb.SERVED[c][0], args.sequence_length)
                for c in wanted
                if c in emb.SERVED
            ]
            command = [sys.executable, __file__, "--_prepare", work, str(checkpoint), json.dumps(plan)]
            out = subprocess.run(command, cwd=emb.REPO, check=True, capture_output=True, text=True)
            checks = json.loads(out.stdout.strip().splitlines()[-1])
            for future in exports:
                future.result()
        prepare_seconds = time.perf_counter() - prepare_start
        print(f"prepared (texts checked, ONNX and SavedModel exports) in {prepare_seconds:.0f} s", flush=True)
        forwarded = [a for a in harness.forwarded(argv) if a != "--quick"]
        forwarded += ["--work_dir", work, "--checkpoint", str(checkpoint), "--lengths", args.lengths]
        forwarded += ["--batches", args.batches, "--seconds", str(args.seconds)]
        forwarded += ["--min_repetitions", str(args.min_repetitions), "--warmup_seconds", str(args.warmup_seconds)]
        forwarded += ["--batch_size", str(args.batch_size), "--sequence_length", str(args.sequence_length)]
        report = harness.run(__file__, wanted, rounds=args.rounds, argv=forwarded, cwd=emb.REPO, timeout=3600)
    served_lengths = {r["contender"]: r["result"].get("served_token_lengths") for r in report.rounds}
    served_lengths = {c: got for c, got in served_lengths.items() if got}
    results = {
        "machine": info,
        "load_average_range": load_range(report),
        "loaded": any(report.loaded.values()),
        "loaded_contenders": report.loaded,
        "quick": args.quick,
        "rounds": args.rounds,
        "contenders": wanted,
        "labels": {c: LABELS[c] for c in wanted},
        "skipped": skipped,
        "points": [key for key, _, _ in plan],
        "settings": {
            "length_sweep_batch": LENGTH_BATCH,
            "batch_sweep_length": BATCH_LENGTH,
            "seconds_per_point": args.seconds,
            "min_repetitions": args.min_repetitions,
            "warmup_seconds": args.warmup_seconds,
            "export_sequence_length": args.sequence_length,
            "one_request_per_batch": True,
        },
        "length_check": {
            "rule": "texts of length-2 single-WordPiece vocabulary words; [CLS] + words + [SEP] = length",
            "hf_tokenizer": checks,
            "served_tokens_signature": served_lengths,
        },
        "curves": curves(report, wanted, plan),
        "concurrent_clients": CONCURRENCY_PLOT,
        "prepare_seconds": round(prepare_seconds, 1),
        "total_seconds": None,
        "harness": report.to_json(),
        "command": "python benchmarks/bench_cost.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    print(table(results))
    print(subtitle(results))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.plot)
    print(f"wrote {args.output} and {args.plot} in {results['total_seconds']:.0f} s")
    return results


if __name__ == "__main__":
    main()
