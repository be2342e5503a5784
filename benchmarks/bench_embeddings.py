"""Served MiniLM sentence embeddings on STS-B dev: kerasbert over gRPC (float32, bfloat16) vs ONNX Runtime and
sentence-transformers, every contender in its own process (`benchmarks/harness.py`).

Contenders (same sentences, same batching: batches of `--batch_size` sentences sorted by length, each batch
padded to its longest sentence only):

* `kerasbert_f32`: `python -m kerasbert.export --mode embedding` (the default fused graph) served by
  `python -m kerasbert.serve`, embedded through `kerasbert.client.Client.encode` (gRPC, tokenization in the
  served graph);
* `kerasbert_bf16`: the same export with `--mixed_precision bfloat16` (bfloat16 matmuls inside the graph,
  what stock TF Serving would run), served the same way;
* `kerasbert_amp`: the float32 export served with `--mixed_precision=bfloat16` (TF Serving's flag:
  grappler's oneDNN auto mixed precision);
* `kerasbert_keras_f32`: the float32 export with `--graph keras` (the Keras model's own graph, before the
  fused rewrite), to show what the rewrite is worth;
* `ort_f32`: all-MiniLM-L6-v2 exported with `torch.onnx.export`, ONNX Runtime CPU with ORT_ENABLE_ALL, the HF
  fast tokenizer, mean pooling + L2 in NumPy;
* `ort_int8`: that ONNX model after `onnxruntime.quantization.quantize_dynamic` (int8 weights), the reference a
  user chasing speed would pick;
* `sentence_transformers`: `SentenceTransformer(<checkpoint>)` on torch CPU.

The bfloat16 contenders are left out (with the reason printed) on CPUs without AVX512_BF16 or AMX. Each worker
process loads its model (a gRPC contender also starts its own server), makes one untimed warm-up pass over all
sentences, then one timed pass; the harness runs the contenders in alternating rounds and reports median and
min-max of sentences/s, load average before/after every run (LOADED when above the core count) and the machine
facts. Quality (STS-B Spearman of pair cosines, and cosine of every vector against `kerasbert_f32`) comes from
the first round's vectors.

    python benchmarks/bench_embeddings.py                      # all 1,500 pairs, 3 rounds
    python benchmarks/bench_embeddings.py --rounds 5
    python benchmarks/bench_embeddings.py --quick              # 16 pairs, 1 round, 3 contenders (its test)

Figures go to `benchmarks/results/embeddings.json` (`--output`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RESULTS = REPO / "benchmarks" / "results"
STSB_DEV = SHARED / "data" / "glue_stsb" / "original" / "sts-dev.tsv"
MODEL_NAME = "minilm"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
# transformers must not try its TensorFlow classes (they need tf-keras, not Keras 3).
os.environ.setdefault("USE_TF", "0")

import harness  # noqa: E402
import numpy as np  # noqa: E402

from kerasbert.serving.server import BF16_CPU_FLAGS  # noqa: E402  (the flags the server warns without)

# contender -> (export flags, server flags) for the gRPC contenders
SERVED = {
    "kerasbert_f32": ([], []),
    "kerasbert_bf16": (["--mixed_precision", "bfloat16"], []),
    "kerasbert_amp": ([], ["--mixed_precision=bfloat16"]),
    "kerasbert_keras_f32": (["--graph", "keras"], []),
}
CONTENDERS = [
    "kerasbert_f32",
    "kerasbert_bf16",
    "kerasbert_amp",
    "kerasbert_keras_f32",
    "ort_f32",
    "ort_int8",
    "sentence_transformers",
]
QUICK_CONTENDERS = ["kerasbert_f32", "ort_f32", "sentence_transformers"]
NEEDS_BF16 = {"kerasbert_bf16", "kerasbert_amp"}


def minilm_checkpoint():
    """The folder of the HF-format all-MiniLM-L6-v2 checkpoint, from ../shared/tools."""
    tool = SHARED / "tools" / "minilm-checkpoint"
    if not tool.exists():
        sys.exit(f"{tool} is absent: this benchmark needs ../shared beside the repo")
    return Path(subprocess.run([str(tool)], check=True, capture_output=True, text=True).stdout.strip())


def read_stsb(path):
    """STS-B pairs as (sentences1, sentences2, gold scores): columns 5, 6 and 4 of each row.

    Some rows carry extra trailing columns, and quotes are literal text (no CSV quoting), so
    each line is split on tabs by hand.
    """
    first, second, gold = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        columns = line.split("\t")
        if len(columns) < 7:
            continue
        gold.append(float(columns[4]))
        first.append(columns[5])
        second.append(columns[6])
    return first, second, np.array(gold)


def has_bf16(flags):
    return any(f in flags for f in BF16_CPU_FLAGS)


def spearman(x, y):
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def pair_cosines(embeddings, n):
    """Cosine of row i with row n + i (sentence 1 vs sentence 2 of each pair)."""
    a, b = embeddings[:n], embeddings[n:]
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def row_cosines(a, b):
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def length_batches(texts, batch_size, key=len):
    """Index batches of `texts` sorted by `key` (as `Client.encode` and sentence-transformers batch)."""
    order = np.argsort([key(t) for t in texts], kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


# --------------------------------------------------------------------------------------------
# Preparation (parent, in subprocesses: the parent imports no TensorFlow / torch)
# --------------------------------------------------------------------------------------------
def export(checkpoint, export_dir, name, flags, sequence_length):
    """`python -m kerasbert.export` in a subprocess; returns the TF Serving base path."""
    command = [sys.executable, "-m", "kerasbert.export", "--init_checkpoint", str(checkpoint), "--mode", "embedding"]
    command += ["--pooling", "mean", "--layer", "-1", "--l2_normalize", "--sequence_length", str(sequence_length)]
    command += ["--export_dir", str(export_dir), "--model_name", name, *flags]
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Path(export_dir) / name


def export_onnx(checkpoint, out_dir, int8):
    """all-MiniLM-L6-v2 as ONNX (`torch.onnx.export`, opset 17, dynamic batch and length) and its int8 copy."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(checkpoint)).eval()
    ids = torch.ones((2, 8), dtype=torch.int64)
    path = Path(out_dir) / "minilm.onnx"
    dynamic = {0: "batch", 1: "length"}
    with torch.no_grad():
        torch.onnx.export(
            model,
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(path),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "token_type_ids": dynamic},
            opset_version=17,
            dynamo=False,
        )
    paths = {"ort_f32": str(path)}
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = Path(out_dir) / "minilm-int8.onnx"
        quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
        paths["ort_int8"] = str(quantized)
    return paths


# --------------------------------------------------------------------------------------------
# Contenders (each runs in its own worker process)
# --------------------------------------------------------------------------------------------
def _sentences(args):
    return json.loads(Path(args.work_dir, "sentences.json").read_text())


def _measure(args, name, encode):
    """One warm-up pass (vectors saved on round 0), one timed pass; the worker's result dict."""
    texts = _sentences(args)
    start = time.perf_counter()
    vectors = np.asarray(encode(texts), dtype=np.float32)
    warmup = time.perf_counter() - start
    vectors_path = Path(args.work_dir, f"{name}.npy")
    if not vectors_path.exists():
        np.save(vectors_path, vectors)
    start = time.perf_counter()
    encode(texts)
    seconds = time.perf_counter() - start
    return {"sentences_per_second": len(texts) / seconds, "seconds": seconds, "warmup_seconds": warmup}


def start_server(base_path, log_path, flags, timeout=300):
    """`python -m kerasbert.serve` on a free loopback port; returns (process, address) once AVAILABLE."""
    from kerasbert.client import Client, KerasBertClientError

    port = harness_free_port()
    command = [sys.executable, "-m", "kerasbert.serve", "--port", str(port), "--model_base_path", str(base_path)]
    command += ["--model_name", MODEL_NAME, *flags]
    log = open(log_path, "w")
    process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    with Client(target=address, model_name=MODEL_NAME, timeout=2) as client:
        while True:
            if process.poll() is not None:
                sys.exit(f"kerasbert.serve exited ({process.returncode}):\n{Path(log_path).read_text()[-3000:]}")
            try:
                if any(state == "AVAILABLE" for _, state in client.status()):
                    return process, address
            except KerasBertClientError:
                pass
            if time.monotonic() > deadline:
                process.kill()
                sys.exit(f"kerasbert.serve not AVAILABLE after {timeout} s")
            time.sleep(0.5)


def harness_free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def export_of(contender):
    """The export a gRPC contender serves (kerasbert_amp serves the float32 one with the server flag)."""
    return "kerasbert_f32" if contender == "kerasbert_amp" else contender


def served(args):
    """A gRPC contender: its export served by its own `kerasbert.serve`, embedded with `Client.encode`."""
    from kerasbert.client import Client

    name = args.contender
    base_path = Path(args.work_dir, "exports", export_of(name))
    process, address = start_server(base_path, Path(args.work_dir, f"{name}-serve.log"), SERVED[name][1])
    try:
        with Client(target=address, model_name=MODEL_NAME, timeout=600, batch_size=args.batch_size) as client:
            return _measure(args, name, client.encode)
    finally:
        process.terminate()
        process.wait(timeout=30)


def onnx_runtime(args):
    import onnxruntime as ort
    from transformers import AutoTokenizer

    paths = json.loads(Path(args.work_dir, "onnx.json").read_text())
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(paths[args.contender], options, providers=["CPUExecutionProvider"])
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)

    def encode(texts):
        out = np.zeros((len(texts), 384), np.float32)
        for index in length_batches(texts, args.batch_size):
            batch = tokenizer(
                [texts[i] for i in index],
                padding=True,
                truncation=True,
                max_length=args.sequence_length,
                return_tensors="np",
            )
            feed = {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
            hidden = session.run(None, feed)[0]
            mask = feed["attention_mask"][:, :, None].astype(np.float32)
            mean = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
            out[index] = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
        return out

    result = _measure(args, args.contender, encode)
    result["onnxruntime_threads"] = options.intra_op_num_threads
    return result


def sentence_transformers(args):
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(args.checkpoint, device="cpu")
    model.max_seq_length = args.sequence_length
    result = _measure(args, "sentence_transformers", lambda t: model.encode(t, batch_size=args.batch_size))
    result["torch_threads"] = torch.get_num_threads()
    return result


WORKERS = {name: served for name in SERVED}
WORKERS.update({"ort_f32": onnx_runtime, "ort_int8": onnx_runtime, "sentence_transformers": sentence_transformers})


# --------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------
def quality(work_dir, contenders, n, gold):
    """Per contender: STS-B Spearman x100 and the cosine of its vectors against kerasbert_f32's."""
    vectors = {c: np.load(Path(work_dir, f"{c}.npy")) for c in contenders if Path(work_dir, f"{c}.npy").exists()}
    reference = vectors.get("kerasbert_f32")
    out = {}
    for name, v in vectors.items():
        entry = {"spearman_x100": 100 * spearman(pair_cosines(v, n), gold)}
        if reference is not None:
            cos = row_cosines(v, reference)
            entry["cosine_vs_kerasbert_f32"] = {"min": float(cos.min()), "mean": float(cos.mean())}
        out[name] = entry
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_arguments(parser, rounds=3)
    parser.add_argument("--batch_size", type=int, default=64, help="sentences per request / per batch")
    parser.add_argument("--sequence_length", type=int, default=128, help="max tokens (MiniLM was trained on 128)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N pairs (0 = all 1,500)")
    parser.add_argument("--contenders", default="", help="comma-separated subset (default: all that this CPU runs)")
    parser.add_argument("--quick", action="store_true", help="16 pairs, 1 round, kerasbert_f32 / ort_f32 / st")
    parser.add_argument("--output", default=str(RESULTS / "embeddings.json"))
    parser.add_argument("--work_dir", default="", help="(internal) the exports and sentences the workers share")
    parser.add_argument("--checkpoint", default="", help="(internal) the MiniLM folder")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return harness.worker(WORKERS, args)
    if not STSB_DEV.exists():
        sys.exit(f"{STSB_DEV} is absent: this benchmark needs ../shared beside the repo")
    if args.quick:
        args.limit, args.rounds = args.limit or 16, 1
    checkpoint = minilm_checkpoint()
    info = harness.machine()
    wanted = [c.strip() for c in args.contenders.split(",") if c.strip()] or (
        QUICK_CONTENDERS if args.quick else CONTENDERS
    )
    unknown = sorted(set(wanted) - set(WORKERS))
    if unknown:
        sys.exit(f"--contenders: unknown {', '.join(unknown)}; choose from {', '.join(CONTENDERS)}")
    skipped = {}
    if not has_bf16(info["flags"]):
        for name in NEEDS_BF16 & set(wanted):
            skipped[name] = "this CPU has neither AVX512_BF16 nor AMX (oneDNN would emulate bfloat16)"
        wanted = [c for c in wanted if c not in skipped]
    first, second, gold = read_stsb(STSB_DEV)
    if args.limit:
        first, second, gold = first[: args.limit], second[: args.limit], gold[: args.limit]
    sentences, n = first + second, len(first)
    print(harness.machine_line(info))
    print(f"STS-B dev: {n} pairs, {len(sentences)} sentences; batch {args.batch_size}; contenders {', '.join(wanted)}")
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    load_start = harness.load_average()
    with tempfile.TemporaryDirectory(prefix="bench-embeddings-") as work:
        Path(work, "sentences.json").write_text(json.dumps(sentences))
        prepare_start = time.perf_counter()
        for name in sorted({export_of(c) for c in wanted if c in SERVED}):
            export(checkpoint, Path(work, "exports"), name, SERVED[name][0], args.sequence_length)
        if {"ort_f32", "ort_int8"} & set(wanted):
            code = (
                "import json, sys; sys.path.insert(0, sys.argv[1]); import bench_embeddings as b; "
                "print(json.dumps(b.export_onnx(sys.argv[2], sys.argv[3], sys.argv[4] == '1')))"
            )
            out = subprocess.run(
                [sys.executable, "-c", code, str(Path(__file__).parent), str(checkpoint), work]
                + ["1" if "ort_int8" in wanted else "0"],
                check=True,
                capture_output=True,
                text=True,
            )
            Path(work, "onnx.json").write_text(out.stdout.strip().splitlines()[-1])
        prepare_seconds = time.perf_counter() - prepare_start
        forwarded = harness.forwarded(argv)
        forwarded = [a for a in forwarded if a != "--quick"]
        forwarded += ["--work_dir", work, "--checkpoint", str(checkpoint)]
        forwarded += ["--batch_size", str(args.batch_size), "--sequence_length", str(args.sequence_length)]
        report = harness.run(__file__, wanted, rounds=args.rounds, argv=forwarded, cwd=REPO, timeout=3600)
        scores = quality(work, wanted, n, gold)
    load_end = harness.load_average()
    print(report.table(metrics=["sentences_per_second"]))
    lines = []
    for a, b in (
        ("kerasbert_f32", "ort_f32"),
        ("kerasbert_bf16", "ort_f32"),
        ("kerasbert_amp", "ort_f32"),
        ("kerasbert_f32", "kerasbert_keras_f32"),
        ("ort_int8", "ort_f32"),
        ("kerasbert_f32", "sentence_transformers"),
    ):
        if a in wanted and b in wanted:
            lines.append(report.ratio_text(a, b, "sentences_per_second", label=f"{a} / {b}"))
    print("\n".join(lines))
    for name, q in scores.items():
        cos = q.get("cosine_vs_kerasbert_f32")
        extra = f"   cosine vs kerasbert_f32 min {cos['min']:.6f} mean {cos['mean']:.6f}" if cos else ""
        print(f"{name:<22} Spearman x100 {q['spearman_x100']:.3f}{extra}")
    results = {
        "machine": info,
        "load_average": {"start": load_start, "end": load_end},
        "loaded": any(report.loaded.values()),
        "pairs": n,
        "sentences": len(sentences),
        "batch_size": args.batch_size,
        "sequence_length": args.sequence_length,
        "rounds": args.rounds,
        "quick": args.quick,
        "contenders": wanted,
        "skipped": skipped,
        "prepare_seconds": prepare_seconds,
        "sentences_per_second": {c: report.summary[c]["sentences_per_second"] for c in wanted},
        "ratios": lines,
        "quality": scores,
        "harness": report.to_json(),
        "command": (
            "python benchmarks/bench_embeddings.py " + " ".join(sys.argv[1:] if argv is None else argv)
        ).replace(str(REPO), "<repo>"),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
