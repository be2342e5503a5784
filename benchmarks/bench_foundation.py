"""Foundation benchmark: in-graph tokenization and encoder forward throughput.

Same inputs for every contender; each contender runs in its own process, in alternating rounds
(`benchmarks/harness.py`: median and min-max per figure, machine facts, load average around each
run, LOADED when it exceeded the core count). Prints a table with ratios:

(a) Tokenization of the SST-2 train sentences (bert-base-uncased vocab,
    truncate/pad to 128) in lines/s:
    * ours: `kerasbert.preprocessing.BertPreprocessor` (tokenize + pack) in a
      `tf.function` over batches; the training input pipeline
      (`kerasbert.data.tables.make_dataset`: packs every line once in that
      `tf.function`, then tf.data shuffles and gathers batches), one epoch
      from raw strings; and the layer mapped over string batches inside
      `tf.data` (the pipeline's earlier shape). The three run in one process,
      alternating, so their ratios do not depend on the machine's load;
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

    python benchmarks/bench_foundation.py [--quick] [--rounds N] [--json out.json]

(a) is skipped with a message when `../shared` data or `transformers` is
missing. Threading: TensorFlow defaults (0 = let TF pick), reported.
"""

import argparse
import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared"
SST2_TRAIN = SHARED / "data" / "glue_sst2" / "train.tsv"
VOCAB = SHARED / "data" / "vocab" / "bert-base-uncased" / "vocab.txt"

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("USE_TF", "0")  # transformers: no TensorFlow classes

import harness  # noqa: E402
from harness import best_seconds as best_time  # noqa: E402


def read_sentences(path, limit=None):
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        column = header.index("sentence")
        lines = [line.rstrip("\n").split("\t")[column] for line in f]
    return lines[:limit] if limit else lines


def batches(lines, batch_size):
    return [lines[i : i + batch_size] for i in range(0, len(lines), batch_size)]


# ---------------------------------------------------------------- (a) tokenize
# Each contender is one worker process; `args` carries --quick and --batch_size.


def tokenization_setup(args):
    """(lines, batch size, repeats) of a worker."""
    lines = read_sentences(SST2_TRAIN, limit=4096 if args.quick else None)
    return lines, args.batch_size, 1 if args.quick else 3


def graph_rate(fn, lines, batch_size, repeats):
    """Lines/s of `fn` (a tf.function) over prebuilt string batches, best of `repeats` after a warm-up."""
    import tensorflow as tf

    tensor_batches = [tf.constant(b) for b in batches(lines, batch_size)]

    def go():
        for batch in tensor_batches:
            out = fn(batch)
        tf.nest.flatten(out)[0].numpy()  # the last batch has finished

    go()  # trace + warm up
    return len(lines) / best_time(go, repeats)


def contender_ours(args):
    """The tf.function path, the training pipeline (first and later epochs) and the old tf.data map,
    alternating in one process."""
    import tensorflow as tf

    from kerasbert.data import tables
    from kerasbert.preprocessing import BertPreprocessor

    lines, batch_size, repeats = tokenization_setup(args)
    n = len(lines)
    ours = BertPreprocessor(str(VOCAB), sequence_length=128)
    function = tf.function(ours)
    tensor_batches = [tf.constant(b) for b in batches(lines, batch_size)]
    examples = tables.Examples(lines, None, None)

    def go_function():
        for batch in tensor_batches:
            out = function(batch)
        out["token_ids"].numpy()

    def go_pipeline():  # what training does each run: pack once, then one shuffled epoch
        for _ in tables.make_dataset(examples, ours, None, batch_size=batch_size, shuffle=True):
            pass

    packed_once = tables.make_dataset(examples, ours, None, batch_size=batch_size, shuffle=True)

    def go_next_epoch():  # every later epoch: reshuffle and gather, no tokenization
        for _ in packed_once:
            pass

    mapped = (
        tf.data.Dataset.from_tensor_slices(lines)
        .batch(batch_size)
        .map(ours, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )

    def go_map():
        for _ in mapped:
            pass

    paths = {
        "ours_tf_function": go_function,
        "ours_tf_data_pipeline": go_pipeline,
        "ours_tf_data_pipeline_next_epoch": go_next_epoch,
        "ours_tf_data_map": go_map,
    }
    for go in paths.values():
        go()  # trace + warm up
    best = {k: float("inf") for k in paths}
    for _ in range(repeats):  # alternating, so a busy spell hits all three
        for key, go in paths.items():
            best[key] = min(best[key], best_time(go, 1))
    result = {key: n / seconds for key, seconds in best.items()}
    result["pipeline_vs_tf_function"] = result["ours_tf_data_pipeline"] / result["ours_tf_function"]
    result["map_vs_tf_function"] = result["ours_tf_data_map"] / result["ours_tf_function"]
    result["lines"] = n
    return result


def contender_hf(args):
    """transformers' BertTokenizerFast, padded (NumPy) and its best case; then the packed-id parity."""
    import numpy as np
    from transformers import BertTokenizerFast

    lines, batch_size, repeats = tokenization_setup(args)
    hf = BertTokenizerFast(vocab_file=str(VOCAB), do_lower_case=True)
    list_batches = batches(lines, batch_size)

    def go_hf():
        for batch in list_batches:
            hf(batch, truncation=True, max_length=128, padding="max_length", return_tensors="np")

    def go_hf_lists():  # HF's best case: no padding, Python lists out
        for batch in list_batches:
            hf(batch, truncation=True, max_length=128)

    result = {}
    for key, go in (("hf_fast", go_hf), ("hf_fast_unpadded_lists", go_hf_lists)):
        go()
        result[key] = len(lines) / best_time(go, repeats)
    # Parity of packed ids, ours vs HF, on up to 4096 lines (after the timing: TF loads only now).
    import tensorflow as tf

    from kerasbert.preprocessing import BertPreprocessor

    sample = lines[:4096]
    ours_ids = BertPreprocessor(str(VOCAB), sequence_length=128)(tf.constant(sample))["token_ids"].numpy()
    hf_ids = hf(sample, truncation=True, max_length=128, padding="max_length", return_tensors="np")["input_ids"]
    result["parity_vs_hf"] = float(np.mean(np.all(ours_ids == hf_ids, axis=1)))
    return result


def contender_keras_hub(args):
    import keras_hub
    import tensorflow as tf

    lines, batch_size, repeats = tokenization_setup(args)
    tokenizer = keras_hub.tokenizers.BertTokenizer(vocabulary=str(VOCAB), lowercase=True)
    packer = keras_hub.layers.MultiSegmentPacker(
        sequence_length=128,
        start_value=tokenizer.cls_token_id,
        end_value=tokenizer.sep_token_id,
        pad_value=tokenizer.pad_token_id,
    )
    return {"keras_hub": graph_rate(tf.function(lambda x: packer(tokenizer(x))), lines, batch_size, repeats)}


def contender_tf_text(args):
    import tensorflow as tf
    import tensorflow_text as tf_text

    lines, batch_size, repeats = tokenization_setup(args)
    with open(VOCAB, encoding="utf-8") as f:
        vocab = [line.rstrip("\n") for line in f]
    fast = tf_text.FastBertTokenizer(vocab, token_out_type=tf.int32, lower_case_nfd_strip_accents=True)
    return {"tf_text_fast_only": graph_rate(tf.function(fast.tokenize), lines, batch_size, repeats)}


# ------------------------------------------------------------------ (b) encoder


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


def contender_encoder(args, size="small", batch=32, seq_len=128):
    """The `small` encoder's forward pass, plain and XLA, against the float32 matmul rate measured in
    the same process before and after (best kept, so a busy spell does not inflate the fraction)."""
    import numpy as np
    import tensorflow as tf

    from kerasbert.modeling import ENCODER_SIZES, build_encoder

    repeats, inner = (2, 1) if args.quick else (5, 3)

    def matmul_rate():
        return harness.tf_matmul_flops_per_second(2048, inner=4 if args.quick else 10, repeats=repeats)

    matmul = matmul_rate()
    spec = ENCODER_SIZES[size]
    encoder = build_encoder(size, vocabulary_size=30522)
    rng = np.random.default_rng(0)
    inputs = {
        "token_ids": tf.constant(rng.integers(1000, 30522, (batch, seq_len)), tf.int32),
        "segment_ids": tf.zeros((batch, seq_len), tf.int32),
        "padding_mask": tf.ones((batch, seq_len), tf.bool),
    }
    flops = encoder_flops(spec.num_layers, batch, seq_len, spec.hidden_dim, spec.intermediate_dim)
    result = {"flops_per_batch": flops}
    for name, jit in (("plain", False), ("xla", True)):
        forward = tf.function(lambda x: encoder(x, training=False)["sequence_output"], jit_compile=jit)

        def go(forward=forward):
            for _ in range(inner):
                out = forward(inputs)
            out.numpy()

        try:
            go()
        except Exception as e:  # XLA may be unavailable for some op
            result[f"{name}_error"] = f"{type(e).__name__}: {e}"[:300]
            continue
        seconds = best_time(go, repeats) / inner
        result[f"{name}_sequences_per_second"] = batch / seconds
        result[f"{name}_flops_per_second"] = flops / seconds
    matmul = max(matmul, matmul_rate())
    result["matmul_flops_per_second"] = matmul
    for name in ("plain", "xla"):
        if f"{name}_flops_per_second" in result:
            result[f"{name}_fraction_of_matmul"] = result[f"{name}_flops_per_second"] / matmul
    result["intra_op_parallelism_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
    result["inter_op_parallelism_threads"] = tf.config.threading.get_inter_op_parallelism_threads()
    return result


CONTENDERS = {
    "ours": contender_ours,
    "hf": contender_hf,
    "keras_hub": contender_keras_hub,
    "tf_text": contender_tf_text,
    "encoder": contender_encoder,
}
TOKENIZATION_ROWS = (  # (contender, metric, label)
    ("ours", "ours_tf_function", "ours BertPreprocessor, tf.function"),
    ("ours", "ours_tf_data_pipeline", "ours training pipeline (make_dataset)"),
    ("ours", "ours_tf_data_pipeline_next_epoch", "ours training pipeline, later epochs"),
    ("ours", "ours_tf_data_map", "ours BertPreprocessor, tf.data map"),
    ("hf", "hf_fast", "HF BertTokenizerFast (batch, np)"),
    ("hf", "hf_fast_unpadded_lists", "HF BertTokenizerFast (no pad, lists)"),
    ("keras_hub", "keras_hub", "keras-hub BertTokenizer+Packer"),
    ("tf_text", "tf_text_fast_only", "tf-text FastBertTokenizer only"),
)


# --------------------------------------------------------------------- report


def tokenization_skip():
    if not SST2_TRAIN.is_file() or not VOCAB.is_file():
        return f"shared data not found ({SST2_TRAIN.parent}, {VOCAB.parent})"
    try:
        import transformers  # noqa: F401
    except ImportError:
        return "transformers is not installed"
    return None


def span(s, unit=""):
    return f"{s['median']:,.0f}{unit} [{s['min']:,.0f}-{s['max']:,.0f}]"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="4096 lines, 1 round, few repeats (smoke run)")
    parser.add_argument("--json", help="also write all figures to this JSON file")
    parser.add_argument("--batch_size", type=int, default=1024, help="tokenization batch size (default 1024)")
    args = parser.parse_args(argv)
    if args.worker:
        return harness.worker(CONTENDERS, args)

    skip = tokenization_skip()
    contenders = ["encoder"] if skip else list(CONTENDERS)
    rounds = 1 if args.quick and "--rounds" not in (argv if argv is not None else sys.argv) else args.rounds
    report = harness.run(Path(__file__), contenders, rounds=rounds, argv=harness.forwarded(argv), cwd=REPO)
    print()
    print(harness.machine_line(report.machine))
    print(f"{rounds} round(s), each contender in its own process; median [min-max]; python {platform.python_version()}")
    summary = report.summary
    loaded = [c for c in contenders if report.loaded[c]]
    if loaded:
        print(f"LOADED (load average above {report.machine['cores']} cores): {', '.join(loaded)}")

    rows = []
    if skip:
        print(f"(a) tokenization skipped: {skip}")
    else:
        hf = summary["hf"]["hf_fast"]["median"]
        for contender, key, label in TOKENIZATION_ROWS:
            s = summary[contender][key]
            if contender != "hf":
                versus = report.ratio_text(contender, "hf", key, "vs HF padded", metric_b="hf_fast")
            else:
                versus = f"vs HF padded: {s['median'] / hf:.2f}x (same process)"
            rows.append((f"(a) {label}", span(s, " lines/s"), versus))
    enc = summary["encoder"]
    matmul = enc["matmul_flops_per_second"]
    rows.append(("(b) matmul 2048x2048 float32", f"{matmul['median'] / 1e9:,.1f} GFLOP/s", "100%"))
    for name, label in (("plain", "tf.function"), ("xla", "tf.function(jit_compile=True)")):
        if f"{name}_sequences_per_second" not in enc:
            rows.append((f"(b) encoder small, {label}", "failed", "see JSON"))
            continue
        seq, frac = enc[f"{name}_sequences_per_second"], enc[f"{name}_fraction_of_matmul"]
        rows.append(
            (
                f"(b) encoder small 32x128, {label}",
                f"{seq['median']:,.1f} [{seq['min']:,.1f}-{seq['max']:,.1f}] seq/s",
                f"{frac['median']:.0%} [{frac['min']:.0%}-{frac['max']:.0%}] of matmul",
            )
        )
    width = max(len(r[0]) for r in rows)
    print()
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:>40}  {ratio}")
    if not skip:
        o = summary["ours"]
        print(
            f"\nin the ours process: training pipeline / tf.function {span_ratio(o['pipeline_vs_tf_function'])}, "
            f"tf.data map / tf.function {span_ratio(o['map_vs_tf_function'])} (issue target >= 0.5x); "
            f"identical packed ids ours vs HF on {summary['hf']['parity_vs_hf']['median']:.1%} of lines"
        )
        print(
            report.ratio_text("ours", "hf", "ours_tf_function", "ours tf.function / HF padded", metric_b="hf_fast")
            + " (target >= 5x)"
        )
    if args.json:
        out = {"quick": args.quick, "batch_size": args.batch_size, "skipped_tokenization": skip, **report.to_json()}
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {args.json}")
    return 0


def span_ratio(s):
    return f"{s['median']:.2f}x [{s['min']:.2f}-{s['max']:.2f}]"


if __name__ == "__main__":
    sys.exit(main())
