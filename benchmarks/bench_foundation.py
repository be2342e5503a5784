"""Foundation benchmark: in-graph tokenization and encoder forward throughput.

One run, same inputs for every contender, prints a table with ratios:

(a) Tokenization of the SST-2 train sentences (bert-base-uncased vocab,
    truncate/pad to 128) in lines/s:
    * ours: `kerasbert.preprocessing.BertPreprocessor` (tokenize + pack) in a
      `tf.function` over batches, and the same layer mapped in `tf.data`;
    * Hugging Face `BertTokenizerFast` (Rust; batch call, same truncation and
      padding, NumPy output), and its best case (no padding, Python lists);
    * keras-hub `BertTokenizer` + `MultiSegmentPacker` in a `tf.function`;
    * `tf_text.FastBertTokenizer(lower_case_nfd_strip_accents=True)` alone
      (tokenize only, no packing).
    Also the share of lines where ours and HF give identical packed ids.
(b) Forward pass of the `small` encoder (4 layers, hidden 512) on 32 x 128
    dense int inputs, float32: sequences/s, plain `tf.function` vs
    `tf.function(jit_compile=True)` (XLA), and as a fraction of the float32
    matmul FLOP rate measured by this script (2048 x 2048 `tf.matmul`).

    python benchmarks/bench_foundation.py [--quick] [--json out.json]

(a) is skipped with a message when `../shared` data or `transformers` is
missing. Threading: TensorFlow defaults (0 = let TF pick), reported.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SST2_TRAIN = SHARED / "data" / "glue_sst2" / "train.tsv"
VOCAB = SHARED / "data" / "vocab" / "bert-base-uncased" / "vocab.txt"

sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def best_time(fn, repeats):
    """Best wall time of `repeats` calls of `fn` (after it was warmed up)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def read_sentences(path, limit=None):
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        column = header.index("sentence")
        lines = [line.rstrip("\n").split("\t")[column] for line in f]
    return lines[:limit] if limit else lines


def batches(lines, batch_size):
    return [lines[i : i + batch_size] for i in range(0, len(lines), batch_size)]


# ---------------------------------------------------------------- (a) tokenize


def bench_tokenization(lines, batch_size, seq_len, repeats):
    import keras_hub
    import tensorflow_text as tf_text
    from transformers import BertTokenizerFast

    from kerasbert.preprocessing import BertPreprocessor

    vocab_path = str(VOCAB)
    n = len(lines)
    tensor_batches = [tf.constant(b) for b in batches(lines, batch_size)]
    results = {}

    def run_graph(fn):
        def go():
            for batch in tensor_batches:
                out = fn(batch)
            # Ops run eagerly-async inside tf.function; reading one value
            # forces the last batch to finish.
            tf.nest.flatten(out)[0].numpy()

        go()  # trace + warm up
        return n / best_time(go, repeats)

    ours = BertPreprocessor(vocab_path, sequence_length=seq_len)
    results["ours_tf_function"] = run_graph(tf.function(ours))

    dataset = (
        tf.data.Dataset.from_tensor_slices(lines)
        .batch(batch_size)
        .map(ours, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )

    def go_dataset():
        for _ in dataset:
            pass

    go_dataset()
    results["ours_tf_data"] = n / best_time(go_dataset, repeats)

    hf = BertTokenizerFast(vocab_file=vocab_path, do_lower_case=True)
    list_batches = batches(lines, batch_size)

    def go_hf():
        for batch in list_batches:
            hf(batch, truncation=True, max_length=seq_len, padding="max_length", return_tensors="np")

    go_hf()
    results["hf_fast"] = n / best_time(go_hf, repeats)

    def go_hf_lists():  # HF's best case: no padding, Python lists out
        for batch in list_batches:
            hf(batch, truncation=True, max_length=seq_len)

    go_hf_lists()
    results["hf_fast_unpadded_lists"] = n / best_time(go_hf_lists, repeats)

    kh_tokenizer = keras_hub.tokenizers.BertTokenizer(vocabulary=vocab_path, lowercase=True)
    kh_packer = keras_hub.layers.MultiSegmentPacker(
        sequence_length=seq_len,
        start_value=kh_tokenizer.cls_token_id,
        end_value=kh_tokenizer.sep_token_id,
        pad_value=kh_tokenizer.pad_token_id,
    )
    results["keras_hub"] = run_graph(tf.function(lambda x: kh_packer(kh_tokenizer(x))))

    with open(vocab_path, encoding="utf-8") as f:
        vocab = [line.rstrip("\n") for line in f]
    fast = tf_text.FastBertTokenizer(vocab, token_out_type=tf.int32, lower_case_nfd_strip_accents=True)
    results["tf_text_fast_only"] = run_graph(tf.function(fast.tokenize))

    # Parity of packed ids, ours vs HF, on up to 4096 lines.
    sample = lines[:4096]
    ours_ids = ours(tf.constant(sample))["token_ids"].numpy()
    hf_ids = hf(sample, truncation=True, max_length=seq_len, padding="max_length", return_tensors="np")["input_ids"]
    results["parity_vs_hf"] = float(np.mean(np.all(ours_ids == hf_ids, axis=1)))
    return results


# ------------------------------------------------------------------ (b) encoder


def matmul_flops_per_second(n, inner, repeats):
    """Float32 FLOP/s of a chain of `inner` dependent n x n matmuls.

    Each product feeds the next (x = a @ x), so Grappler cannot merge them
    as common subexpressions (identical `a @ b` calls would run only once).
    """
    a = tf.random.normal([n, n], stddev=n**-0.5)  # keeps |x| roughly constant
    x0 = tf.random.normal([n, n])

    @tf.function
    def chain(a, x):
        for _ in range(inner):
            x = tf.matmul(a, x)
        return x

    chain(a, x0).numpy()
    seconds = best_time(lambda: chain(a, x0).numpy(), repeats)
    return 2.0 * n**3 * inner / seconds


def encoder_flops(num_layers, batch, seq_len, hidden, intermediate):
    """Forward FLOPs (multiply-adds x 2) of the transformer layers.

    Per layer: Q/K/V/output projections 4*H^2 and the FFN 2*H*I per token,
    plus attention scores QK^T and the weighted sum of V, 2*L^2*H per
    sequence each. Embeddings, LayerNorm, softmax and the pooler are left
    out (< 1%).
    """
    tokens = batch * seq_len
    per_layer = 2 * tokens * (4 * hidden**2 + 2 * hidden * intermediate)
    per_layer += 2 * 2 * batch * seq_len**2 * hidden
    return num_layers * per_layer


def bench_encoder(size, batch, seq_len, repeats, inner):
    from kerasbert.modeling import ENCODER_SIZES, build_encoder

    spec = ENCODER_SIZES[size]
    encoder = build_encoder(size, vocabulary_size=30522)
    rng = np.random.default_rng(0)
    inputs = {
        "token_ids": tf.constant(rng.integers(1000, 30522, (batch, seq_len)), tf.int32),
        "segment_ids": tf.zeros((batch, seq_len), tf.int32),
        "padding_mask": tf.ones((batch, seq_len), tf.bool),
    }
    flops = encoder_flops(spec.num_layers, batch, seq_len, spec.hidden_dim, spec.intermediate_dim)
    results = {"flops_per_batch": flops}
    for name, jit in (("plain", False), ("xla", True)):
        forward = tf.function(lambda x: encoder(x, training=False)["sequence_output"], jit_compile=jit)

        def go(forward=forward):
            for _ in range(inner):
                out = forward(inputs)
            out.numpy()

        try:
            go()
        except Exception as e:  # XLA may be unavailable for some op
            results[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
            continue
        seconds = best_time(go, repeats) / inner
        results[name] = {
            "seconds_per_batch": seconds,
            "sequences_per_second": batch / seconds,
            "flops_per_second": flops / seconds,
        }
    return results


# --------------------------------------------------------------------- report


def threading_info():
    return {
        "cpu_count": os.cpu_count(),
        "intra_op_parallelism_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_parallelism_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small subsets and few repeats (smoke run, ~1 min)")
    parser.add_argument("--json", help="also write all figures to this JSON file")
    parser.add_argument("--batch_size", type=int, default=1024, help="tokenization batch size (default 1024)")
    args = parser.parse_args(argv)

    quick = args.quick
    report = {
        "quick": quick,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "threading": threading_info(),
    }
    print(
        f"TensorFlow {tf.__version__}, {report['threading']['cpu_count']} CPUs, "
        f"intra/inter-op threads {report['threading']['intra_op_parallelism_threads']}/"
        f"{report['threading']['inter_op_parallelism_threads']} (0 = TF default: all cores), "
        f"load average {report['threading']['load_average_1m']}"
    )

    rows = []
    # (a)
    skip = None
    if not SST2_TRAIN.is_file() or not VOCAB.is_file():
        skip = f"shared data not found ({SST2_TRAIN.parent}, {VOCAB.parent})"
    else:
        try:
            import transformers  # noqa: F401
        except ImportError:
            skip = "transformers is not installed"
    if skip:
        print(f"(a) tokenization skipped: {skip}")
        report["tokenization"] = {"skipped": skip}
    else:
        lines = read_sentences(SST2_TRAIN, limit=4096 if quick else None)
        tok = bench_tokenization(lines, args.batch_size, 128, repeats=1 if quick else 3)
        tok["lines"] = len(lines)
        tok["batch_size"] = args.batch_size
        report["tokenization"] = tok
        hf = tok["hf_fast"]
        for key, label in (
            ("ours_tf_function", "ours BertPreprocessor, tf.function"),
            ("ours_tf_data", "ours BertPreprocessor, tf.data map"),
            ("hf_fast", "HF BertTokenizerFast (batch, np)"),
            ("hf_fast_unpadded_lists", "HF BertTokenizerFast (no pad, lists)"),
            ("keras_hub", "keras-hub BertTokenizer+Packer"),
            ("tf_text_fast_only", "tf-text FastBertTokenizer only"),
        ):
            rows.append((f"(a) {label}", f"{tok[key]:,.0f} lines/s", f"{tok[key] / hf:.2f}x HF"))
        tok["ratio_ours_vs_hf"] = tok["ours_tf_function"] / hf
        tok["ratio_ours_tf_data_vs_hf"] = tok["ours_tf_data"] / hf

    # (b)
    # The matmul rate is measured before and after the encoder and the best
    # kept, so a busy spell on a shared machine does not inflate the fraction.
    def matmul_rate():
        return matmul_flops_per_second(2048, inner=4 if quick else 10, repeats=2 if quick else 5)

    matmul = matmul_rate()
    enc = bench_encoder("small", 32, 128, repeats=2 if quick else 5, inner=1 if quick else 3)
    matmul = max(matmul, matmul_rate())
    report["matmul_flops_per_second"] = matmul
    report["encoder"] = enc
    rows.append(("(b) matmul 2048x2048 float32", f"{matmul / 1e9:,.1f} GFLOP/s", "100%"))
    for name in ("plain", "xla"):
        r = enc[name]
        label = "tf.function" if name == "plain" else "tf.function(jit_compile=True)"
        if "error" in r:
            rows.append((f"(b) encoder small, {label}", "failed", r["error"][:60]))
            continue
        r["fraction_of_matmul"] = r["flops_per_second"] / matmul
        rows.append(
            (
                f"(b) encoder small 32x128, {label}",
                f"{r['sequences_per_second']:,.1f} seq/s ({r['flops_per_second'] / 1e9:,.1f} GFLOP/s)",
                f"{r['fraction_of_matmul']:.0%} of matmul",
            )
        )

    width = max(len(r[0]) for r in rows)
    print()
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:>36}  {ratio}")
    if "ratio_ours_vs_hf" in report.get("tokenization", {}):
        tok = report["tokenization"]
        print(
            f"\nours / HF: {tok['ratio_ours_vs_hf']:.2f}x (tf.function), "
            f"{tok['ratio_ours_tf_data_vs_hf']:.2f}x (tf.data); issue target >= 5x; "
            f"identical packed ids on {tok['parity_vs_hf']:.1%} of lines"
        )
    print(f"encoder FLOPs per 32x128 batch: {enc['flops_per_batch'] / 1e9:.1f} GFLOP")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
