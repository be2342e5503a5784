"""Pretrain BERT-tiny on WikiText-2 (raw) for a fixed time budget, on this machine.

Reports, on held-out documents (10%, never trained on):

* MLM accuracy vs the unigram baseline (always predict the most frequent
  masked token of the held-out set), NSP accuracy vs 50% / majority class;
* training throughput in sequences/s, and as a fraction of the float32
  matmul rate measured here (model FLOPs estimated analytically);
* a loss-curve PNG (`benchmarks/results/pretraining_loss.png`) and all
  figures in `benchmarks/results/pretraining.json`.

With `--finetune_sst2`, the pretrained encoder and a randomly initialised
one are fine-tuned on the same SST-2 subset (`kerasbert.training.finetune`)
and their dev accuracies compared.

Runs by hand, not in CI:

    python benchmarks/bench_pretraining.py --minutes 15 --finetune_sst2
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kerasbert.modeling.encoder import encoder_config  # noqa: E402
from kerasbert.preprocessing.bert_preprocessor import load_vocabulary  # noqa: E402
from kerasbert.training import pretrain  # noqa: E402


def matmul_flops_per_second(n=1024, repeats=20):
    """float32 GEMM rate of this machine (FLOP/s), best of 3 timings."""
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    matmul = tf.function(lambda a, b: tf.matmul(a, b))
    matmul(a, b).numpy()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            c = matmul(a, b)
        c.numpy()
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * n**3 / best


def training_flops_per_sequence(size, vocabulary_size, length, predictions):
    """Forward+backward FLOPs of one sequence (3x the forward matmuls)."""
    c = encoder_config(size, vocabulary_size)
    h, layers, ff = c["hidden_dim"], c["num_layers"], c["intermediate_dim"]
    per_layer = 2 * length * (4 * h * h + 2 * h * ff) + 2 * 2 * length * length * h
    head = 2 * predictions * (h * h + h * vocabulary_size) + 2 * h * h
    return 3 * (layers * per_layer + head)


def loss_curve_png(path, steps, losses, mlm_acc, title):
    """A small line plot (loss, and MLM accuracy on a second scale) via PIL."""
    from PIL import Image, ImageDraw

    width, height, margin = 900, 450, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = margin, margin // 2, width - margin, height - margin
    draw.rectangle([x0, y0, x1, y1], outline="black")
    steps = np.asarray(steps, float)
    top = max(losses) * 1.05

    def point(step, value, scale):
        x = x0 + (x1 - x0) * step / max(steps[-1], 1)
        return x, y1 - (y1 - y0) * value / scale

    for values, scale, colour in ((losses, top, "blue"), (mlm_acc, 1.0, "red")):
        draw.line([point(s, v, scale) for s, v in zip(steps, values)], fill=colour, width=2)
    for i in range(6):
        value = top * i / 5
        y = y1 - (y1 - y0) * i / 5
        draw.text((5, y - 6), f"{value:.1f}", fill="blue")
        draw.text((x1 + 5, y - 6), f"{i / 5:.1f}", fill="red")
        step = steps[-1] * i / 5
        draw.text((x0 + (x1 - x0) * i / 5 - 10, y1 + 8), f"{step:.0f}", fill="black")
    draw.text((x0, 5), title, fill="black")
    draw.text((x0, height - 25), "step   (blue: training loss MLM+NSP, left;  red: MLM accuracy, right)", fill="black")
    image.save(path)


def finetune_sst2(pretrained, vocab, out, args):
    """Dev accuracy of tiny BERT fine-tuned from `pretrained` and from scratch."""
    from kerasbert.training import finetune

    data = SHARED / "data" / "glue_sst2"
    common = [
        "--train_file", data / "train.tsv", "--dev_file", data / "dev.tsv",
        "--max_train_examples", args.sst2_examples, "--epochs", 1,
        "--batch_size", 32, "--sequence_length", 64, "--model_size", "tiny",
        "--no_export", "--quiet", "--seed", 1,
    ]
    runs = {
        "pretrained": ["--init_checkpoint", pretrained, "--learning_rate", args.sst2_lr],
        "random_init": ["--vocab", vocab, "--learning_rate", args.sst2_lr],
        "pretrained_lr1e-3": ["--init_checkpoint", pretrained, "--learning_rate", 1e-3],
        "random_init_lr1e-3": ["--vocab", vocab, "--learning_rate", 1e-3],
    }
    results = {}
    for name, extra in runs.items():
        argv = [str(a) for a in common + extra + ["--output_dir", out / name]]
        r = finetune.run(finetune.build_parser().parse_args(argv))
        results[name] = {k: float(v) for k, v in r["dev_metrics"].items()}
        print(f"SST-2 {name}: {results[name]}", flush=True)
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=15, help="training budget (<= 20)")
    p.add_argument("--corpus", default=str(SHARED / "data" / "wikitext2_raw" / "wiki.test.raw.lines.txt"))
    p.add_argument("--vocab", default=str(SHARED / "data" / "vocab" / "bert-base-uncased" / "vocab.txt"))
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--max_seq_length", type=int, default=128)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--output_dir", default=None, help="default: a temporary folder")
    p.add_argument("--finetune_sst2", action="store_true")
    p.add_argument("--sst2_examples", type=int, default=8000)
    p.add_argument("--sst2_lr", type=float, default=2e-4)
    args = p.parse_args()
    if args.minutes > 20:
        p.error("--minutes must be at most 20")
    for path in (args.corpus, args.vocab):
        if not os.path.exists(path):
            sys.exit(f"missing {path} (needs ../shared beside the repo)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = Path(args.output_dir or tempfile.mkdtemp(prefix="bench_pretraining_"))
    vocabulary_size = len(load_vocabulary(args.vocab))

    matmul_rate = matmul_flops_per_second()
    print(f"float32 matmul: {matmul_rate / 1e9:.1f} GFLOP/s", flush=True)

    def flags(steps, output_dir):
        return pretrain.build_parser().parse_args([str(a) for a in [
            "--input_files", args.corpus, "--vocab_file", args.vocab,
            "--output_dir", output_dir, "--input_format", "lines",
            "--max_seq_length", args.max_seq_length, "--train_batch_size", args.batch_size,
            "--num_train_steps", steps, "--num_warmup_steps", max(1, steps // 20),
            "--learning_rate", args.learning_rate, "--holdout_fraction", 0.1,
            "--save_checkpoints_steps", 100000, "--log_steps", 50,
        ]])

    def trainer_for(steps, output_dir, verbose):
        a = flags(steps, output_dir)
        data = pretrain.pipeline_dataset_fn(a, [args.corpus], 0.1, "train", a.seed)
        config = pretrain.config_from_args(a, vocabulary_size)
        return pretrain.Pretrainer(config, data, verbose=verbose), a

    # Calibrate the step rate (compile excluded) to size the LR schedule.
    calibration, _ = trainer_for(25, out / "calibration", False)
    times = []
    calibration.train(on_step=lambda step, m: times.append(time.perf_counter()))
    rate = 15 / (times[-1] - times[9])
    steps = int(rate * args.minutes * 60 * 0.97)
    print(f"calibration: {rate:.2f} steps/s -> {steps} steps in {args.minutes} min", flush=True)

    trainer, a = trainer_for(steps, out / "run", True)
    curve = []
    trainer.config.max_minutes = args.minutes
    history = trainer.train(
        on_step=lambda step, m: curve.append(
            (step, m["loss"], m["mlm_accuracy"], m["nsp_accuracy"], time.perf_counter())
        )
    )
    eval_fn = pretrain.pipeline_dataset_fn(a, [args.corpus], 0.1, "heldout", a.seed + 1, num_epochs=1)
    evaluation = trainer.evaluate(eval_fn, steps=1000)
    # Baselines on exactly the evaluated held-out predictions.
    counts = np.zeros(vocabulary_size)
    nsp = []
    for _, labels, weights in eval_fn(trainer.config.micro_batch_size, 1, 0):
        np.add.at(counts, labels["mlm"].numpy()[weights["mlm"].numpy() > 0], 1)
        nsp += list(labels["nsp"].numpy())
    vocabulary = load_vocabulary(args.vocab)
    unigram = counts.max() / counts.sum()
    nsp_majority = max(np.mean(nsp), 1 - np.mean(nsp))

    per_sequence = training_flops_per_sequence(
        "tiny", vocabulary_size, args.max_seq_length,
        pretrain.data.default_max_predictions(args.max_seq_length),
    )
    # Steady state: from step 10 on (the first steps include XLA compiles).
    sequences_per_second = (len(curve) - 10) * args.batch_size / (curve[-1][4] - curve[9][4])
    results = {
        "machine": {"cpus": os.cpu_count(), "matmul_gflops": matmul_rate / 1e9},
        "setup": {
            "model": "tiny (2 layers, hidden 128)", "vocabulary": vocabulary_size,
            "corpus": "wikitext2_raw/wiki.test.raw.lines.txt (90% train / 10% held-out documents)",
            "max_seq_length": args.max_seq_length, "global_batch": args.batch_size,
            "learning_rate": args.learning_rate, "steps": history["steps"],
            "minutes": round(history["seconds"] / 60, 2), "jit_compile": True,
        },
        "throughput": {
            "sequences_per_second": sequences_per_second,
            "model_gflops_per_second": sequences_per_second * per_sequence / 1e9,
            "fraction_of_matmul_rate": sequences_per_second * per_sequence / matmul_rate,
        },
        "heldout": {
            "mlm_accuracy": evaluation["mlm_accuracy"],
            "mlm_unigram_baseline": unigram,
            "mlm_baseline_token": vocabulary[int(counts.argmax())],
            "nsp_accuracy": evaluation["nsp_accuracy"],
            "nsp_chance": 0.5, "nsp_majority_baseline": nsp_majority,
            "mlm_loss": evaluation["mlm_loss"], "nsp_loss": evaluation["nsp_loss"],
            "sequences": evaluation["sequences"], "predictions": evaluation["predictions"],
        },
    }
    print(json.dumps(results, indent=2), flush=True)
    window = max(1, min(25, len(curve) // 10))
    steps_, losses, accs = [], [], []
    for i in range(window, len(curve) + 1, max(1, len(curve) // 300)):
        chunk = curve[i - window:i]
        steps_.append(chunk[-1][0])
        losses.append(float(np.mean([c[1] for c in chunk])))
        accs.append(float(np.mean([c[2] for c in chunk])))
    loss_curve_png(
        RESULTS / "pretraining_loss.png", steps_, losses, accs,
        f"BERT-tiny pretraining on WikiText-2, {history['steps']} steps x {args.batch_size} "
        f"seqs, {results['setup']['minutes']} min on {os.cpu_count()} CPU cores",
    )
    if args.finetune_sst2:
        pretrained = trainer.save_pretrained(str(out / "pretrained"))
        results["sst2"] = finetune_sst2(pretrained, args.vocab, out / "sst2", args)
    with open(RESULTS / "pretraining.json", "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {RESULTS / 'pretraining.json'} and {RESULTS / 'pretraining_loss.png'}")


if __name__ == "__main__":
    main()
