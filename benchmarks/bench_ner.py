"""CoNLL-2003 NER with all-MiniLM-L6-v2: kerasbert (in-process and served) vs Hugging Face.

Both sides fine-tune the same checkpoint (`../shared/tools/minilm-checkpoint`) on
`conll2003/eng.train` with the same settings (sentences, epochs, batch size, peak learning rate,
linear warmup + decay, weight decay, sequence length, seed) and are scored on `eng.testa` with
entity-level F1 (conlleval semantics; the gold IOB1 tags are converted to IOB2 for both):

* **ours, in-process**: `python -m kerasbert.train --task token_classification ...`; the dev F1
  is its word-level evaluation (raw sentence = words joined by single spaces; each word takes the
  tag of its first WordPiece).
* **ours, served**: the export that training wrote, served by `python -m kerasbert.serve` on a
  free loopback port; every testa sentence (words joined by single spaces) goes through
  `Client.entities()` over gRPC and the character spans are mapped back to word indices.
* **Hugging Face**: `BertForTokenClassification` with torch AdamW, the first sub-token of each
  word labelled (-100 elsewhere), the same schedule; predictions read at each word's first
  sub-token. Scored with `seqeval` (default mode) and with our metric (they must agree).

Each side runs in its own process (thread pools of torch and TF slow each other down in one
process). Training and served-inference throughput (sentences/s) are printed next to each other,
with the machine (CPU model, AVX-512/BF16/AMX flags, cores) and the load average before and after
each side; a figure measured with the load above the core count is marked as such.

    python benchmarks/bench_ner.py                         # full eng.train, 1 epoch
    python benchmarks/bench_ner.py --max_train_sentences 2000 --tag quick

Results go to `benchmarks/results/ner_conll<tag>.json`.
"""

from __future__ import annotations

import argparse
import contextlib
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
CONLL = SHARED / "data" / "conll2003"
sys.path.insert(0, str(REPO))
os.environ.setdefault("USE_TF", "0")  # transformers: no TensorFlow classes (they need tf-keras)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Machine facts and load: the shared harness (re-exported here for the scripts that import them from bench_ner).
from harness import load_average, loaded, machine, summarize  # noqa: E402, F401


# --------------------------------------------------------------------------------------------
# Data (shared by both sides)
# --------------------------------------------------------------------------------------------
def read_conll(path, limit=None):
    """CoNLL sentences as (words, IOB2 tags), read with kerasbert's reader."""
    from kerasbert.data import tagging

    sentences = tagging.read_tagged(str(path), fmt="conll")
    if limit:
        sentences = sentences[:limit]
    return [(list(s.words), list(s.tags)) for s in sentences]


def f1_report(gold, pred):
    """Our entity metric and seqeval's on the same IOB2 sequences."""
    from seqeval.metrics import f1_score

    from kerasbert.training import entity_metrics

    ours = entity_metrics.entity_scores(gold, pred)
    return {
        "f1": ours["f1"],
        "precision": ours["precision"],
        "recall": ours["recall"],
        "seqeval_f1": float(f1_score(gold, pred)),
    }


def minilm_checkpoint():
    tool = SHARED / "tools" / "minilm-checkpoint"
    if not tool.exists():
        sys.exit(f"{tool} is absent: this benchmark needs ../shared beside the repo")
    out = subprocess.run([str(tool)], check=True, capture_output=True, text=True).stdout
    return Path(out.strip())


# --------------------------------------------------------------------------------------------
# Hugging Face side (own process)
# --------------------------------------------------------------------------------------------
def hf_train(model, batch, rows, total, args):
    """Fine-tunes a transformers `model` for `total` steps as BERT does: torch AdamW (eps 1e-6, no
    decay on biases and LayerNorm), linear warmup (`args.warmup_proportion`) and decay, global-norm
    clipping 1.0; batches of `args.batch_size` of the `rows` training rows, reshuffled each epoch
    (seed `args.seed`); `batch(indices)` gives the model's keyword arguments, labels included.

    Returns (seconds, load average before, after)."""
    import numpy as np
    import torch
    from transformers import get_linear_schedule_with_warmup

    steps_per_epoch = max(1, rows // args.batch_size)
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
            "weight_decay": args.weight_decay,
        },
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=args.learning_rate, eps=1e-6)
    sched = get_linear_schedule_with_warmup(opt, int(total * args.warmup_proportion), total)
    rng = np.random.default_rng(args.seed)
    model.train()
    load0, start, step = load_average(), time.perf_counter(), 0
    while step < total:
        order = rng.permutation(rows)
        for b in range(steps_per_epoch):
            if step >= total:
                break
            model(**batch(order[b * args.batch_size : (b + 1) * args.batch_size])).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
    return time.perf_counter() - start, load0, load_average()


def run_hf(args):
    import numpy as np
    import torch
    from transformers import BertForTokenClassification, BertTokenizerFast

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(os.cpu_count())
    train = read_conll(CONLL / "eng.train", args.max_train_sentences)
    dev = read_conll(CONLL / "eng.testa", args.max_dev_sentences)
    types = sorted({t[2:] for _, tags in train for t in tags if t != "O"})
    tag_list = ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]
    tag_id = {t: i for i, t in enumerate(tag_list)}
    ckpt = minilm_checkpoint()
    tok = BertTokenizerFast.from_pretrained(str(ckpt))
    model = BertForTokenClassification.from_pretrained(str(ckpt), num_labels=len(tag_list))

    def encode(sentences, with_labels):
        enc = tok([w for w, _ in sentences], is_split_into_words=True, truncation=True, max_length=args.sequence_length)
        labels, firsts = [], []
        for i, (_, tags) in enumerate(sentences):
            word_ids, prev, row, first = enc.word_ids(i), None, [], {}
            for j, w in enumerate(word_ids):
                if w is None or w == prev:
                    row.append(-100)
                else:
                    row.append(tag_id[tags[w]] if with_labels else 0)
                    first[w] = j
                prev = w
            labels.append(row)
            firsts.append(first)
        return enc, labels, firsts

    enc, labels, _ = encode(train, True)
    total = int(len(train) // args.batch_size * args.epochs)

    def batch(idx):
        batch = tok.pad(
            {
                "input_ids": [enc["input_ids"][i] for i in idx],
                "attention_mask": [enc["attention_mask"][i] for i in idx],
            },
            return_tensors="pt",
        )
        width = batch["input_ids"].shape[1]
        batch["labels"] = torch.tensor([labels[i] + [-100] * (width - len(labels[i])) for i in idx])
        return batch

    train_seconds, load0, load1 = hf_train(model, batch, len(train), total, args)

    model.eval()
    enc_dev, _, firsts = encode(dev, False)
    preds = []
    start = time.perf_counter()
    with torch.no_grad():
        for b in range(0, len(dev), args.batch_size):
            rows = list(range(b, min(len(dev), b + args.batch_size)))
            batch = tok.pad(
                {
                    "input_ids": [enc_dev["input_ids"][i] for i in rows],
                    "attention_mask": [enc_dev["attention_mask"][i] for i in rows],
                },
                return_tensors="pt",
            )
            logits = model(**batch).logits.argmax(-1).numpy()
            for k, i in enumerate(rows):
                words = dev[i][0]
                preds.append([tag_list[logits[k, firsts[i][w]]] if w in firsts[i] else "O" for w in range(len(words))])
    infer_seconds = time.perf_counter() - start
    load2 = load_average()
    gold = [tags for _, tags in dev]
    return {
        "side": "huggingface",
        "steps": total,
        "train_sentences_per_second": round(total * args.batch_size / train_seconds, 1),
        "inference_sentences_per_second": round(len(dev) / infer_seconds, 1),
        "load_average": [load0, load1, load2],
        "dev": f1_report(gold, preds),  # an I-X after O counts as a start (conlleval)
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    }


# --------------------------------------------------------------------------------------------
# kerasbert side (own processes: train + export, then serve + client)
# --------------------------------------------------------------------------------------------
def write_conll_slice(path, sentences):
    """Writes (words, IOB2 tags) sentences as a CoNLL file (word, 2 dummy columns, tag)."""
    lines = []
    for words, tags in sentences:
        lines += [f"{w} _ _ {t}" for w, t in zip(words, tags)] + [""]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_ours(args, work):
    train_file, dev_file = CONLL / "eng.train", CONLL / "eng.testa"
    if args.max_train_sentences or args.max_dev_sentences:
        train_file, dev_file = Path(work) / "train.conll", Path(work) / "dev.conll"
        write_conll_slice(train_file, read_conll(CONLL / "eng.train", args.max_train_sentences))
        write_conll_slice(dev_file, read_conll(CONLL / "eng.testa", args.max_dev_sentences))
    export_dir = Path(work) / "exports"
    command = [
        sys.executable,
        "-m",
        "kerasbert.train",
        "--task",
        "token_classification",
        "--train_file",
        str(train_file),
        "--dev_file",
        str(dev_file),
        "--format",
        "conll",
        "--init_checkpoint",
        str(minilm_checkpoint()),
        "--sequence_length",
        str(args.sequence_length),
        "--batch_size",
        str(args.batch_size),
        "--epochs",
        str(args.epochs),
        "--learning_rate",
        str(args.learning_rate),
        "--warmup_proportion",
        str(args.warmup_proportion),
        "--weight_decay",
        str(args.weight_decay),
        "--seed",
        str(args.seed),
        "--output_dir",
        str(Path(work) / "run"),
        "--export_dir",
        str(export_dir),
        "--model_name",
        "conll",
        "--quiet",
    ]
    load0, start = load_average(), time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO)
    wall = time.perf_counter() - start
    load1 = load_average()
    results = json.loads((Path(work) / "run" / "results.json").read_text())
    steps = results["steps"]
    train_seconds = results.get("fit_seconds") or results["train_seconds"]
    served = serve_and_score(args, export_dir / "conll", dev_file)
    return {
        "side": "kerasbert",
        "steps": steps,
        "train_sentences_per_second": round(steps * args.batch_size / train_seconds, 1),
        "wall_seconds_train_and_export": round(wall, 1),
        "load_average": [load0, load1, served.pop("load_average")],
        "dev_in_process": results["dev_metrics"],
        **served,
    }


@contextlib.contextmanager
def serving(base, model_name, probe):
    """`python -m kerasbert.serve` for the export folder `base` on a free loopback port; yields a
    `Client` once `probe(client)` succeeds (the model has loaded), stops the server afterwards."""
    import socket

    from kerasbert.client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "kerasbert.serve", "--port", str(port), "--model_name", model_name]
    server = subprocess.Popen(
        command + ["--model_base_path", str(base)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        with Client(f"127.0.0.1:{port}", model_name=model_name, timeout=60) as client:
            for _ in range(120):  # wait for the model to load
                try:
                    probe(client)
                    break
                except Exception:
                    if server.poll() is not None:
                        raise RuntimeError(f"kerasbert.serve exited with {server.returncode}") from None
                    time.sleep(1)
            yield client
    finally:
        server.terminate()
        server.wait(30)


def serve_and_score(args, base, dev_file):
    """Serves the export on a free loopback port and scores testa through Client.entities()."""
    dev = read_conll(dev_file)
    texts, spans = [], []
    for words, _ in dev:
        offsets, pos = [], 0
        for w in words:
            offsets.append((pos, pos + len(w)))
            pos += len(w) + 1
        texts.append(" ".join(words))
        spans.append(offsets)
    with serving(base, "conll", lambda client: client.entities(texts[:2])) as client:
        client.entities(texts[: args.batch_size])  # warm-up
        start = time.perf_counter()
        found = []
        for b in range(0, len(texts), args.batch_size):
            found += client.entities(texts[b : b + args.batch_size])
        seconds = time.perf_counter() - start
    load = load_average()
    preds = [spans_to_tags(ents, offsets) for ents, offsets in zip(found, spans)]
    gold = [tags for _, tags in dev]
    return {
        "dev_served": f1_report(gold, preds),
        "served_sentences_per_second": round(len(texts) / seconds, 1),
        "load_average": load,
    }


def spans_to_tags(entities, word_offsets):
    """Character spans from the served model → IOB2 word tags (a word belongs to the entity whose
    span contains its first character)."""
    tags = ["O"] * len(word_offsets)
    for ent in entities:
        inside = [i for i, (s, _) in enumerate(word_offsets) if ent["start"] <= s < ent["end"]]
        for k, i in enumerate(inside):
            tags[i] = ("B-" if k == 0 else "I-") + ent["label"]
    return tags


def run_sides(script, forwarded, cores, extra=None, sides=("ours", "hf"), rounds=1):
    """Runs `script --side ours`, then `--side hf` (or each of `sides`), each in its own process with the arguments
    `forwarded` (plus `extra(side, results so far)`), `rounds` times in alternating order (A B A B ...: a busy
    spell on the machine hits every side, as in harness.run). Returns {side: its first round's JSON}, with
    `loaded` set (any round LOADED), and, per speed figure (`*_per_second`, `*_seconds`), the median over the
    rounds in its place and `<figure>_range` [min, max]. Every round's JSON is kept under `rounds`: a full
    fine-tune per round, so quality figures (seeded) are reported from the first and listed for the others."""
    per_side = {side: [] for side in sides}
    for _ in range(rounds):
        for side in sides:
            so_far = {s: runs[0] for s, runs in per_side.items() if runs}
            with tempfile.TemporaryDirectory() as tmp:
                out = str(Path(tmp) / f"{side}.json")
                more = extra(side, so_far) if extra else []
                command = [sys.executable, str(script), "--side", side, "--json_out", out] + forwarded + more
                subprocess.run(command, check=True, cwd=REPO)
                result = json.loads(Path(out).read_text())
            la = result["load_average"]
            result["loaded"] = loaded(min(la), max(la), cores)
            per_side[side].append(result)
    results = {}
    for side, runs in per_side.items():
        merged = dict(runs[0])
        if len(runs) > 1:
            for key in runs[0]:
                speed = key.endswith("_per_second") or key.endswith("_seconds")
                numbers = [r.get(key) for r in runs]
                if speed and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
                    s = summarize(numbers)
                    merged[key] = round(s["median"], 2)
                    merged[f"{key}_range"] = [s["min"], s["max"]]
            merged["loaded"] = any(r["loaded"] for r in runs)
            merged["load_average"] = [x for r in runs for x in r["load_average"]]
            merged["rounds"] = runs
        results[side] = merged
    return results


def add_common_arguments(p, sides=("hf", "ours")):
    """The flags every side-by-side benchmark shares (training settings, --side, --tag, --json_out)."""
    p.add_argument("--side", choices=["both", *sides], default="both")
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--learning_rate", type=float, default=1e-4)
    p.add_argument("--warmup_proportion", type=float, default=0.1)
    p.add_argument("--weight_decay", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--tag", default="")
    p.add_argument(
        "--rounds", type=int, default=1, help="full runs per side, alternating sides; speeds: median and range"
    )
    p.add_argument("--json_out", default=None, help="(internal) where a side writes its result")


def run_one_side(args, run_hf, run_ours):
    """`--side hf|ours`: runs that side (ours with a temporary work folder), its JSON to --json_out."""
    with tempfile.TemporaryDirectory() as work:
        result = run_hf(args) if args.side == "hf" else run_ours(args, work)
    Path(args.json_out).write_text(json.dumps(result, indent=2))
    return 0


# --------------------------------------------------------------------------------------------
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max_train_sentences", type=int, default=None)
    p.add_argument("--max_dev_sentences", type=int, default=None)
    p.add_argument("--sequence_length", type=int, default=128)
    add_common_arguments(p)
    args = p.parse_args(argv)
    if not CONLL.exists():
        sys.exit(f"{CONLL} is absent: this benchmark needs ../shared beside the repo")
    if args.side != "both":
        return run_one_side(args, run_hf, run_ours)
    info = machine()
    cores = info["cores"]
    sides = run_sides(__file__, list(argv if argv is not None else sys.argv[1:]), cores, rounds=args.rounds)
    summary = {
        "machine": info,
        "settings": {k: v for k, v in vars(args).items() if k not in ("side", "json_out")},
        "ours": sides["ours"],
        "huggingface": sides["hf"],
        "served_minus_in_process_f1": round(
            sides["ours"]["dev_served"]["f1"] - sides["ours"]["dev_in_process"]["f1"], 4
        ),
        "ours_minus_hf_f1": round(sides["ours"]["dev_served"]["f1"] - sides["hf"]["dev"]["f1"], 4),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"ner_conll{('_' + args.tag) if args.tag else ''}.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    o, h = sides["ours"], sides["hf"]
    print(f"machine: {info['cpu']} ({', '.join(info['flags'])}), {cores} cores")
    print(f"{'':24}{'F1':>8}{'train sent/s':>14}{'infer sent/s':>14}  load")
    print(
        f"{'kerasbert in-process':24}{o['dev_in_process']['f1']:8.4f}{o['train_sentences_per_second']:14.1f}"
        f"{'':>14}  {o['load_average']}{' LOADED' if o['loaded'] else ''}"
    )
    print(f"{'kerasbert served (gRPC)':24}{o['dev_served']['f1']:8.4f}{'':>14}{o['served_sentences_per_second']:14.1f}")
    print(
        f"{'Hugging Face (torch)':24}{h['dev']['f1']:8.4f}{h['train_sentences_per_second']:14.1f}"
        f"{h['inference_sentences_per_second']:14.1f}  {h['load_average']}{' LOADED' if h['loaded'] else ''}"
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
