"""SST-2 fine-tuning of all-MiniLM-L6-v2: kerasbert vs Hugging Face transformers, training speed and dev accuracy.

Both sides fine-tune the same checkpoint (`../shared/tools/minilm-checkpoint`) on the first
`--max_train_examples` sentences of GLUE SST-2 `train.tsv` and are scored on `dev.tsv` (872 sentences), with the
same settings: steps (one pass of `--epochs` over the examples, batches of `--batch_size`), peak learning rate,
linear warmup (`--warmup_proportion`) and linear decay, AdamW weight decay 0.01 (none on LayerNorm and biases),
global-norm clipping 1.0, seed, maximum sequence length (`--sequence_length`, longest-first truncation):

* **ours**: `python -m kerasbert.train` (classification on BERT's pooled `[CLS]`, the pooler included); each
  batch is cut to its longest row, rounded up to a multiple of 8 (`kerasbert.data.tables.cut_padding`).
* **ours_padded**: the same with `--pad_to_sequence_length` (every batch at `--sequence_length`, as before the
  cut): what the padding cost.
* **ours_bf16**: the same as ours with `--mixed_precision bfloat16` (Keras `mixed_bfloat16`: bf16 compute,
  float32 weights and logits); skipped with a reason on CPUs without AVX512_BF16 or AMX.
* **hf**: `BertForSequenceClassification` with torch AdamW (eps 1e-6), the same schedule, and
  `DataCollatorWithPadding` (each batch padded to its longest row: Hugging Face's recommended dynamic padding).

Each side runs in its own process, one after the other (thread pools of torch and TF slow each other down in one
process); `--rounds N` repeats the whole set N times in alternating order and reports each speed's median and range
(dev accuracy from the first round: the runs are seeded). Training sequences/s = steps x batch size / training
seconds (dev scoring excluded; the first step's tracing included on both sides). The JSON records the machine (CPU
model, AVX-512/BF16/AMX flags, cores), the load average before and after each side, and `loaded` when it was above
the core count: such figures are not to be quoted as speedups.

    python benchmarks/bench_finetune.py                                  # 4,000 sentences, 125 steps
    python benchmarks/bench_finetune.py --quick --json /tmp/ft.json      # a few steps (tests/test_bench_finetune.py)

Results go to `benchmarks/results/finetune_sst2[_<tag>].json` (or `--json`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ner import (  # noqa: E402  (the shared helpers of the side-by-side benchmarks)
    REPO,
    RESULTS,
    SHARED,
    add_common_arguments,
    hf_train,
    load_average,
    machine,
    minilm_checkpoint,
    run_one_side,
    run_sides,
)
from bench_qa import shown_command  # noqa: E402

SST2 = SHARED / "data" / "glue_sst2"
SIDES = ("ours", "ours_padded", "ours_bf16", "hf")
# kerasbert.train flags of each kerasbert side.
OUR_FLAGS = {"ours": [], "ours_padded": ["--pad_to_sequence_length"], "ours_bf16": ["--mixed_precision", "bfloat16"]}
QUICK = {"max_train_examples": 64, "max_dev_examples": 64, "batch_size": 16, "sequence_length": 64}


def read_sst2(split, limit=None):
    """(sentences, int labels) of SST-2 `split`, read with kerasbert's table reader."""
    from kerasbert.data import tables

    ex = tables.read_examples(str(SST2 / f"{split}.tsv"), tables.Columns("sentence", None, "label"))
    n = limit or len(ex)
    return ex.texts[:n], [int(label) for label in ex.labels[:n]]


def total_steps(rows, args):
    """The steps kerasbert.train runs (whole batches; a fractional --epochs spread over whole epochs)."""
    import math

    per_epoch = max(1, rows // args.batch_size)
    total = max(1, int(round(per_epoch * args.epochs)))
    epochs = math.ceil(total / per_epoch)
    return math.ceil(total / epochs) * epochs


def after_first_step(steps, batch_size, seconds, first_step_seconds):
    """The first step's seconds and the rate of the others (ours traces and builds its graph in the first)."""
    rest = seconds - first_step_seconds
    rate = round((steps - 1) * batch_size / rest, 2) if steps > 1 and rest > 0 else None
    return {"first_step_seconds": round(first_step_seconds, 2), "train_sequences_per_second_after_first_step": rate}


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def bf16_capable(info):
    return any(f in info["flags"] for f in ("avx512_bf16", "amx_bf16"))


# --------------------------------------------------------------------------------------------
# Hugging Face side (own process)
# --------------------------------------------------------------------------------------------
def run_hf(args):
    import numpy as np
    import torch
    from transformers import BertForSequenceClassification, BertTokenizerFast, DataCollatorWithPadding

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(os.cpu_count())
    texts, labels = read_sst2("train", args.max_train_examples)
    dev_texts, dev_labels = read_sst2("dev", args.max_dev_examples)
    ckpt = minilm_checkpoint()
    tok = BertTokenizerFast.from_pretrained(str(ckpt))
    model = BertForSequenceClassification.from_pretrained(str(ckpt), num_labels=2)
    collate = DataCollatorWithPadding(tok, return_tensors="pt")
    enc = tok(texts, truncation=True, max_length=args.sequence_length)
    widths, called = [], []

    def batch(idx):
        called.append(time.perf_counter())
        features = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i]} for i in idx]
        out = collate(features)
        out["labels"] = torch.tensor([labels[i] for i in idx])
        widths.append(out["input_ids"].shape[1])
        return out

    total = total_steps(len(texts), args)
    train_seconds, load0, load1 = hf_train(model, batch, len(texts), total, args)
    first_step = called[1] - called[0] if total > 1 else train_seconds

    model.eval()
    dev_enc = tok(dev_texts, truncation=True, max_length=args.sequence_length)
    predictions = []
    with torch.no_grad():
        for b in range(0, len(dev_texts), args.batch_size):
            rows = range(b, min(len(dev_texts), b + args.batch_size))
            features = [
                {"input_ids": dev_enc["input_ids"][i], "attention_mask": dev_enc["attention_mask"][i]} for i in rows
            ]
            predictions += model(**collate(features)).logits.argmax(-1).tolist()
    accuracy = float(np.mean(np.asarray(predictions) == np.asarray(dev_labels)))
    return {
        "side": "hf",
        "train_examples": len(texts),
        "dev_examples": len(dev_texts),
        "steps": total,
        "train_seconds": round(train_seconds, 2),
        "train_sequences_per_second": round(total * args.batch_size / train_seconds, 2),
        **after_first_step(total, args.batch_size, train_seconds, first_step),
        "mean_batch_width": round(float(np.mean(widths)), 2),
        "dev_accuracy": accuracy,
        "load_average": [load0, load1],
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    }


# --------------------------------------------------------------------------------------------
# kerasbert sides (python -m kerasbert.train in a subprocess)
# --------------------------------------------------------------------------------------------
def train_command(args, work, checkpoint, side):
    command = [sys.executable, "-m", "kerasbert.train", "--train_file", str(SST2 / "train.tsv")]
    command += ["--max_train_examples", str(args.max_train_examples)]
    dev_file = SST2 / "dev.tsv"
    if args.max_dev_examples:
        dev_file = Path(work) / "dev.tsv"
        lines = (SST2 / "dev.tsv").read_text(encoding="utf-8").splitlines()
        dev_file.write_text("\n".join(lines[: args.max_dev_examples + 1]) + "\n", encoding="utf-8")
    command += ["--dev_file", str(dev_file), "--text_column", "sentence", "--label_column", "label"]
    command += ["--init_checkpoint", str(checkpoint)]
    for flag in ("sequence_length", "batch_size", "epochs", "learning_rate", "warmup_proportion", "weight_decay"):
        command += [f"--{flag}", str(getattr(args, flag))]
    command += ["--seed", str(args.seed), "--output_dir", str(Path(work) / "run"), "--no_export", "--quiet"]
    return command + OUR_FLAGS[side]


def run_ours(args, work):
    checkpoint = minilm_checkpoint()
    command = train_command(args, work, checkpoint, args.side)
    load0 = load_average()
    subprocess.run(command, check=True, cwd=REPO)
    load1 = load_average()
    results = json.loads((Path(work) / "run" / "results.json").read_text())
    steps, seconds = results["steps"], results["fit_seconds"]
    return {
        "side": args.side,
        "train_examples": results["train_examples"],
        "dev_examples": results["dev_examples"],
        "steps": steps,
        "train_seconds": seconds,
        "train_sequences_per_second": round(steps * args.batch_size / seconds, 2),
        **after_first_step(steps, args.batch_size, seconds, results["first_step_seconds"]),
        "dev_accuracy": results["dev_metrics"]["accuracy"],
        "dev_metrics": results["dev_metrics"],
        "load_average": [load0, load1],
        "train_command": shown_command(command, work, checkpoint),
        "versions": {"tensorflow": __import__("tensorflow").__version__, "keras": __import__("keras").__version__},
    }


def run_side(args, work):
    return run_hf(args) if args.side == "hf" else run_ours(args, work)


# --------------------------------------------------------------------------------------------
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max_train_examples", type=int, default=4000)
    p.add_argument("--max_dev_examples", type=int, default=None, help="default: all 872 dev sentences")
    p.add_argument("--sequence_length", type=int, default=128)
    p.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated, of {', '.join(SIDES)}")
    p.add_argument("--quick", action="store_true", help=f"a few steps: {QUICK}")
    p.add_argument("--json", default=None, help="where the summary goes (default results/finetune_sst2[_tag].json)")
    add_common_arguments(p, SIDES)
    p.set_defaults(learning_rate=1e-4)
    args = p.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    if not SST2.exists():
        sys.exit(f"{SST2} is absent: this benchmark needs ../shared beside the repo")
    if args.side != "both":
        return run_one_side(args, lambda a: run_side(a, None), lambda a, work: run_side(a, work))

    info = machine()
    cores = info["cores"]
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = sorted(set(sides) - set(SIDES))
    if unknown:
        p.error(f"--sides: unknown {unknown}; choose from {', '.join(SIDES)}")
    skipped = {}
    if "ours_bf16" in sides and not bf16_capable(info):
        sides.remove("ours_bf16")
        skipped["ours_bf16"] = f"this CPU has no AVX512_BF16 or AMX (flags: {', '.join(info['flags'])})"
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:])]
    forwarded = [a for i, a in enumerate(forwarded) if not (a == "--json" or (i and forwarded[i - 1] == "--json"))]
    started = time.time()
    results = run_sides(__file__, forwarded, cores, sides=sides, rounds=args.rounds)
    settings = {k: v for k, v in vars(args).items() if k not in ("side", "json_out", "json", "sides")}
    settings["steps"] = total_steps(args.max_train_examples, args)
    summary = {
        "machine": info,
        "settings": settings,
        "sides": results,
        "skipped": skipped,
        "wall_seconds": round(time.time() - started, 1),
        "rerun": "python benchmarks/bench_finetune.py " + " ".join(forwarded),
    }
    hf = results.get("hf")
    if hf:
        summary["vs_hf"] = {
            side: {
                "speedup": round(r["train_sequences_per_second"] / hf["train_sequences_per_second"], 3),
                "speedup_after_first_step": ratio(
                    r["train_sequences_per_second_after_first_step"], hf["train_sequences_per_second_after_first_step"]
                ),
                "accuracy_points": round(100 * (r["dev_accuracy"] - hf["dev_accuracy"]), 2),
            }
            for side, r in results.items()
            if side != "hf"
        }
    path = Path(args.json) if args.json else RESULTS / f"finetune_sst2{('_' + args.tag) if args.tag else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")

    print(f"machine: {info['cpu']} ({', '.join(info['flags'])}), {cores} cores")
    print(f"{'side':14}{'dev acc':>9}{'train seq/s':>13}{'vs hf':>8}{'w/o 1st step':>14}  load before/after")
    for side, r in results.items():
        speedup = summary.get("vs_hf", {}).get(side, {}).get("speedup")
        shown = f"{speedup:7.2f}x" if speedup else f"{'':8}"
        flag = " LOADED" if r["loaded"] else ""
        print(
            f"{side:14}{r['dev_accuracy']:9.4f}{r['train_sequences_per_second']:13.1f}{shown}"
            f"{r['train_sequences_per_second_after_first_step'] or 0:14.1f}  {r['load_average']}{flag}"
        )
    for side, r in results.items():
        if "train_sequences_per_second_range" in r:
            low, high = r["train_sequences_per_second_range"]
            accuracies = [round(x["dev_accuracy"], 4) for x in r["rounds"]]
            print(f"{side}: train seq/s median of {len(r['rounds'])} rounds, range {low}-{high}; dev acc {accuracies}")
    for side, reason in skipped.items():
        print(f"{side}: skipped, {reason}")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
