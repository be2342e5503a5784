"""Sentence embeddings of all-MiniLM-L6-v2 served over gRPC vs sentence-transformers, on STS-B dev.

Exports the MiniLM checkpoint (`<repo>/../shared/tools/minilm-checkpoint`) with the model's own
recipe (mean pooling over the last layer + L2 normalisation) via `python -m kerasbert.export`,
serves it with `python -m kerasbert.serve` on a free loopback port, and embeds every STS-B dev
sentence through `kerasbert.client.Client.encode` (gRPC, standard TF Serving protocol). The same
sentences go through `sentence_transformers.SentenceTransformer(<that folder>)` on torch CPU in
this process. Prints, for both:

* Spearman correlation (x100) of the pair cosine similarities with the gold scores (the two must
  agree within 0.001), and how close the two sets of vectors are (cosine ours vs theirs);
* sentences/s over the whole dev set (after one untimed warm-up pass each, same batch size,
  timed passes alternating between the two, best kept; ours includes gRPC, serialisation and
  tokenisation in the served graph), and the ratio.

Figures go to `benchmarks/results/embeddings.json`. Runs by hand, not in CI:

    python benchmarks/bench_embeddings.py                  # the plain export (the default)
    python benchmarks/bench_embeddings.py --jit_compile --batch_size 32
"""

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
# transformers must not try its TensorFlow classes (they need tf-keras, not Keras 3).
os.environ.setdefault("USE_TF", "0")

import numpy as np  # noqa: E402

from kerasbert.client import Client, KerasBertClientError  # noqa: E402  (no TensorFlow import)


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


def export(checkpoint, export_dir, jit_compile, sequence_length):
    """`python -m kerasbert.export` in a subprocess; returns the TF Serving base path and seconds."""
    command = [
        sys.executable,
        "-m",
        "kerasbert.export",
        "--init_checkpoint",
        str(checkpoint),
        "--mode",
        "embedding",
        "--pooling",
        "mean",
        "--layer",
        "-1",
        "--l2_normalize",
        "--sequence_length",
        str(sequence_length),
        "--export_dir",
        str(export_dir),
        "--model_name",
        MODEL_NAME,
    ] + (["--jit_compile"] if jit_compile else [])
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return Path(export_dir) / MODEL_NAME, time.perf_counter() - start


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(base_path, log_path, timeout=300):
    """`python -m kerasbert.serve` on a free loopback port; returns (process, address) once AVAILABLE."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "kerasbert.serve",
        "--port",
        str(port),
        "--model_base_path",
        str(base_path),
        "--model_name",
        MODEL_NAME,
    ]
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


def spearman(x, y):
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def pair_cosines(embeddings, n):
    """Cosine of row i with row n + i (sentence 1 vs sentence 2 of each pair)."""
    a, b = embeddings[:n], embeddings[n:]
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def timed(encode, sentences):
    """Wall time of one full pass."""
    start = time.perf_counter()
    encode(sentences)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch_size", type=int, default=64, help="sentences per request / per torch batch")
    parser.add_argument(
        "--jit_compile", action="store_true", help="export with XLA (measured slower on these 2 CPU cores)"
    )
    parser.add_argument("--sequence_length", type=int, default=128, help="max tokens (MiniLM was trained on 128)")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per side, alternating (best is kept)")
    parser.add_argument("--torch_threads", type=int, default=0, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N pairs (0 = all 1500)")
    parser.add_argument("--output", default=str(RESULTS / "embeddings.json"))
    args = parser.parse_args(argv)

    if not STSB_DEV.exists():
        sys.exit(f"{STSB_DEV} is absent: this benchmark needs ../shared beside the repo")
    checkpoint = minilm_checkpoint()
    first, second, gold = read_stsb(STSB_DEV)
    if args.limit:
        first, second, gold = first[: args.limit], second[: args.limit], gold[: args.limit]
    sentences = first + second
    n = len(first)
    print(
        f"STS-B dev: {n} pairs, {len(sentences)} sentences; checkpoint {checkpoint.name}; "
        f"batch size {args.batch_size}; jit_compile={args.jit_compile}",
        flush=True,
    )

    import torch
    from sentence_transformers import SentenceTransformer

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    model = SentenceTransformer(str(checkpoint), device="cpu")

    def theirs_encode(texts):
        return model.encode(texts, batch_size=args.batch_size, convert_to_numpy=True)

    with tempfile.TemporaryDirectory(prefix="bench-embeddings-") as tmp:
        base_path, export_seconds = export(checkpoint, tmp, args.jit_compile, args.sequence_length)
        print(f"exported in {export_seconds:.1f} s", flush=True)
        process, address = start_server(base_path, Path(tmp) / "serve.log")
        try:
            with Client(target=address, model_name=MODEL_NAME, timeout=600, batch_size=args.batch_size) as client:
                start = time.perf_counter()
                ours = client.encode(sentences)  # warm-up pass (XLA compiles each length bucket once)
                warmup_seconds = time.perf_counter() - start
                theirs = theirs_encode(sentences)  # warm-up pass
                # Alternate the timed passes, so both sides see the same (shared, busy) machine.
                ours_times, theirs_times = [], []
                for _ in range(args.repeats):
                    ours_times.append(timed(client.encode, sentences))
                    theirs_times.append(timed(theirs_encode, sentences))
        finally:
            process.terminate()
            process.wait(timeout=30)
    ours_seconds, theirs_seconds = min(ours_times), min(theirs_times)

    ours_rho = spearman(pair_cosines(ours, n), gold)
    theirs_rho = spearman(pair_cosines(theirs, n), gold)
    agreement = np.sum(ours * theirs, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    ours_rate, theirs_rate = len(sentences) / ours_seconds, len(sentences) / theirs_seconds
    results = {
        "pairs": n,
        "sentences": len(sentences),
        "batch_size": args.batch_size,
        "jit_compile": args.jit_compile,
        "sequence_length": args.sequence_length,
        "spearman_x100": {"kerasbert_grpc": 100 * ours_rho, "sentence_transformers": 100 * theirs_rho},
        "spearman_abs_difference": abs(ours_rho - theirs_rho),
        "vector_cosine_ours_vs_theirs": {"min": float(agreement.min()), "mean": float(agreement.mean())},
        "sentences_per_second": {"kerasbert_grpc": ours_rate, "sentence_transformers": theirs_rate},
        "speed_ratio": ours_rate / theirs_rate,
        "seconds": {
            "export": export_seconds,
            "warmup_grpc": warmup_seconds,
            "kerasbert_grpc": ours_times,
            "sentence_transformers": theirs_times,
        },
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
    }
    print(
        f"Spearman x100   kerasbert (gRPC) {100 * ours_rho:.3f}   sentence-transformers {100 * theirs_rho:.3f}"
        f"   |difference| {abs(ours_rho - theirs_rho):.5f} ({'OK' if abs(ours_rho - theirs_rho) <= 1e-3 else 'NOT'}"
        f" within 0.001)"
    )
    print(f"vectors         cosine ours vs theirs: min {agreement.min():.6f}, mean {agreement.mean():.6f}")
    print(
        f"sentences/s     kerasbert (gRPC) {ours_rate:.1f}   sentence-transformers {theirs_rate:.1f}"
        f"   ratio {ours_rate / theirs_rate:.2f}x (target >= 1.5x)"
    )
    print(
        f"(load average {results['load_average_1min']:.1f} on {os.cpu_count()} CPUs; warm-up pass over gRPC "
        f"{warmup_seconds:.1f} s)"
    )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
