"""Pretraining speed: kerasbert's `Pretrainer` against Hugging Face `BertForPreTraining`, and the MFU.

Both train BERT-tiny (2 layers, hidden 128) with the 30,522-entry bert-base-uncased vocabulary on the
same shapes: batch 32 x 128 tokens, 20 masked positions per sequence, NSP labels, dropout 0.1,
AdamW (lr 1e-4, weight decay 0.01). The batches are random ids (the input pipeline is not what is
measured; both sides get ready tensors):

* **ours**: `kerasbert.training.pretrain.Pretrainer` (its real train step: XLA, clipping, the MLM head
  on the masked positions only, as Google's `run_pretraining.py`);
* **hf**: `transformers.BertForPreTraining` in PyTorch eager, torch AdamW, labels -100 on the
  unmasked positions (so HF's head scores all 128 positions and the loss ignores 108 of them).

Each runs in its own process (`benchmarks/harness.py`), in alternating rounds. Each worker also
measures its own library's float32 matmul rate (chained 1024 x 1024 products, before and after
training, best kept). MFU = model FLOPs per second / that rate, with the model FLOPs counted the same
for both (3x the forward matmuls of the encoder and of the MLM head on the 20 masked positions, see
`training_flops_per_sequence`): the work the objective needs, not what an implementation spends.

    python benchmarks/pretraining_speed.py              # 3 rounds, 10 warm-up + 40 timed steps
    python benchmarks/pretraining_speed.py --quick      # 1 round, 3 + 6 steps (smoke run)

`bench_pretraining.py --throughput` runs this.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("USE_TF", "0")  # transformers: no TensorFlow classes

import harness  # noqa: E402

VOCABULARY = 30522
TINY = {"layers": 2, "hidden": 128, "heads": 2, "intermediate": 512}


def training_flops_per_sequence(length, predictions, vocabulary=VOCABULARY, layers=2, hidden=128, intermediate=512):
    """Forward+backward FLOPs of one sequence: 3x the forward matmuls of the encoder (projections,
    feed-forward, attention scores and weighted sums) and of the MLM head on `predictions` positions
    (transform + tied output matrix) plus the pooler."""
    h, ff = hidden, intermediate
    per_layer = 2 * length * (4 * h * h + 2 * h * ff) + 2 * 2 * length * length * h
    head = 2 * predictions * (h * h + h * vocabulary) + 2 * h * h
    return 3 * (layers * per_layer + head)


def batch_arrays(batch, length, predictions, seed=0):
    """Random ids, full-length rows, `predictions` distinct masked positions per row (not [CLS])."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, VOCABULARY, (batch, length)).astype("int32")
    positions = np.sort(np.stack([rng.choice(np.arange(1, length), predictions, replace=False) for _ in range(batch)]))
    return {
        "token_ids": ids,
        "segment_ids": (np.arange(length)[None, :] >= length // 2).astype("int32").repeat(batch, 0),
        "mask_positions": positions.astype("int32"),
        "mlm_labels": rng.integers(1000, VOCABULARY, (batch, predictions)).astype("int32"),
        "nsp_labels": rng.integers(0, 2, batch).astype("int32"),
    }


def timed(step, warmup, steps):
    """Runs `step()` warmup times, then `steps` times; returns seconds of the timed ones."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def contender_ours(args):
    import numpy as np
    import tensorflow as tf

    from kerasbert.training import pretrain

    def matmul_rate():
        return harness.tf_matmul_flops_per_second(1024, inner=8, repeats=3)

    b = batch_arrays(args.batch_size, args.max_seq_length, args.predictions)
    features = {
        "token_ids": b["token_ids"],
        "segment_ids": b["segment_ids"],
        "padding_mask": np.ones_like(b["token_ids"], bool),
        "mask_positions": b["mask_positions"],
    }
    labels = {"mlm": b["mlm_labels"], "nsp": b["nsp_labels"]}
    weights = {"mlm": np.ones(b["mlm_labels"].shape, "float32"), "nsp": np.ones(args.batch_size, "float32")}

    def dataset_fn(batch_size, num_shards, shard_index):
        return tf.data.Dataset.from_tensors((features, labels, weights)).repeat()

    rate = matmul_rate()
    with tempfile.TemporaryDirectory() as out:
        config = pretrain.PretrainConfig(
            output_dir=out,
            vocabulary_size=VOCABULARY,
            model_size="tiny",
            max_seq_length=args.max_seq_length,
            train_batch_size=args.batch_size,
            num_train_steps=args.warmup + args.steps,
            num_warmup_steps=1,
            learning_rate=1e-4,
            save_checkpoints_steps=10**9,
            log_steps=10**9,
        )
        trainer = pretrain.Pretrainer(config, dataset_fn, verbose=False)
        times = []
        trainer.train(on_step=lambda step, m: times.append(time.perf_counter()))
    rate = max(rate, matmul_rate())
    seconds = times[-1] - times[args.warmup - 1]
    return result_dict(args, seconds, rate, "tensorflow")


def contender_hf(args):
    import torch
    import transformers

    def matmul_rate():
        return harness.torch_matmul_flops_per_second(1024, inner=8, repeats=3)

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCABULARY,
        hidden_size=TINY["hidden"],
        num_hidden_layers=TINY["layers"],
        num_attention_heads=TINY["heads"],
        intermediate_size=TINY["intermediate"],
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    model = transformers.BertForPreTraining(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, eps=1e-6)
    b = batch_arrays(args.batch_size, args.max_seq_length, args.predictions)
    labels = torch.full(b["token_ids"].shape, -100, dtype=torch.long)
    rows = torch.arange(args.batch_size)[:, None]
    labels[rows, torch.tensor(b["mask_positions"], dtype=torch.long)] = torch.tensor(b["mlm_labels"], dtype=torch.long)
    inputs = {
        "input_ids": torch.tensor(b["token_ids"], dtype=torch.long),
        "token_type_ids": torch.tensor(b["segment_ids"], dtype=torch.long),
        "attention_mask": torch.ones(b["token_ids"].shape, dtype=torch.long),
        "labels": labels,
        "next_sentence_label": torch.tensor(b["nsp_labels"], dtype=torch.long),
    }

    def step():
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    rate = matmul_rate()
    seconds = timed(step, args.warmup, args.steps)
    rate = max(rate, matmul_rate())
    result = result_dict(args, seconds, rate, "torch")
    result["torch_threads"] = torch.get_num_threads()
    return result


def result_dict(args, seconds, matmul_rate, library):
    flops = training_flops_per_sequence(args.max_seq_length, args.predictions)
    sequences_per_second = args.steps * args.batch_size / seconds
    return {
        "sequences_per_second": sequences_per_second,
        "model_gflops_per_second": sequences_per_second * flops / 1e9,
        "matmul_gflops_per_second": matmul_rate / 1e9,
        "mfu": sequences_per_second * flops / matmul_rate,
        "matmul_library": library,
        "timed_steps": args.steps,
    }


CONTENDERS = {"ours": contender_ours, "hf": contender_hf}


def add_arguments(p):
    p.add_argument("--quick", action="store_true", help="1 round of 3 warm-up + 6 timed steps")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--max_seq_length", type=int, default=128)
    p.add_argument("--predictions", type=int, default=20, help="masked positions per sequence")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps (default 10; quick 3)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 40; quick 6)")


def settle(args):
    if args.warmup is None:
        args.warmup = 3 if args.quick else 10
    if args.steps is None:
        args.steps = 6 if args.quick else 40
    return args


def compare(args, argv):
    """Runs both contenders (harness) and returns the summary dict; prints the table."""
    rounds = 1 if args.quick and args.rounds == 3 else args.rounds
    forwarded = harness.forwarded(argv)
    report = harness.run(Path(__file__), list(CONTENDERS), rounds=rounds, argv=forwarded, cwd=REPO)
    print(report.table(["sequences_per_second", "mfu", "matmul_gflops_per_second"], fmt="{:,.3g}"))
    speedup = report.ratio_text("ours", "hf", "sequences_per_second", "ours / Hugging Face sequences/s")
    print(speedup)
    per_sequence = training_flops_per_sequence(args.max_seq_length, args.predictions)
    print(
        f"model FLOPs per sequence (forward + backward, {args.predictions} masked positions): "
        f"{per_sequence / 1e9:.3f} G"
    )
    return {
        "setup": {
            "model": "BERT-tiny (2 x 128), vocabulary 30522",
            "batch_size": args.batch_size,
            "max_seq_length": args.max_seq_length,
            "masked_positions_per_sequence": args.predictions,
            "warmup_steps": args.warmup,
            "timed_steps": args.steps,
            "model_flops_per_sequence": per_sequence,
        },
        "speedup_text": speedup,
        **report.to_json(),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_arguments(p)
    add_arguments(p)
    p.add_argument("--json", default=None, help="also write the results here")
    args = settle(p.parse_args(argv))
    if args.worker:
        return harness.worker(CONTENDERS, args)
    summary = compare(args, argv)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
