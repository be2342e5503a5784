"""SQuAD v1.1 question answering with all-MiniLM-L6-v2: kerasbert (in-process and served) vs Hugging Face.

Data: `../shared/data/squad_v1.1/dev-v1.1.articles-00-37.json` split by article: training on articles
0-29 (7,010 questions), scoring on the held-out articles 30-37 (1,572 questions) with the official SQuAD
v1.1 EM and F1 (`kerasbert.training.squad_metrics`, the same function for all three):

* **ours, in-process**: `python -m kerasbert.train --task question_answering --train_file <squad>
  --train_articles 0-29 --init_checkpoint <minilm> ...` in a subprocess (with `--max_train_questions`
  the sample goes to a file of its own); the run is then reloaded (`load_run`) and
  `QuestionAnsweringTask.predict` (Python post-processing, what the training's dev evaluation calls)
  answers every held-out question, timed. `--dev_eval_in_training` also passes `--dev_file <squad>
  --dev_articles 30-37` so the training run scores them itself (the quick test checks both agree; the
  full run skips it to save the time of a fourth evaluation).
* **ours, served**: the export that training wrote, served by `python -m kerasbert.serve` on a free
  loopback port; every held-out (question, context) goes over gRPC (`Client.predict`, the `question` and
  `context` inputs; windows, max context, span search and the raw-context answer are all in the graph).
* **Hugging Face**: `BertForQuestionAnswering` from the same folder, the standard HF SQuAD preprocessing of
  `run_qa.py` (`tokenizer(question, context, truncation="only_second", max_length, stride,
  return_overflowing_tokens, return_offsets_mapping)`, start/end token positions from the offsets, `[CLS]`
  for windows without the whole answer) and its post-processing (`postprocess_qa_predictions`: the 20 best
  start and end logits of each window, ``end >= start``, at most `max_answer_length` tokens, the best
  start+end logit over the windows, cut from the context by the offsets). Torch AdamW (eps 1e-6, no decay on
  biases and LayerNorm), global-norm clipping 1.0, warmup + linear decay, the same steps (taken from our
  run), batch size, peak lr, weight decay and seed.

Same windows on both sides: HF's `stride` is the overlap of consecutive windows, run_squad.py's
`doc_stride` the step between their starts; examples are grouped by question length and each group gets
``stride = (max_seq_length - question tokens - 3) - doc_stride``, which gives run_squad.py's windows
exactly (the JSON counts both sides' training windows). No question of this file is longer than
`max_query_length` (the longest has 38 WordPieces); longer ones would be cut to it on the HF side too.
Batches of both sides are cut to their longest row (HF: `tokenizer.pad` per batch).

**Settings of the committed run** (`results/qa_squad_minilm.json`, the README's table): `max_seq_length`
256, `doc_stride` 128, `max_query_length` 64 (run_squad.py's, except the length: the contexts of articles
0-29 have 159 WordPieces on average and 95% have fewer than 290, so a 256-token window holds most of them
whole: 8,180 windows for the 7,010 questions against 7,195 at 384, and batches cut to their longest row pay
less padding); 2,800 of the 7,010 training questions (`--max_train_questions 2800`: evenly spaced, so all
30 articles keep their share), one epoch = 101 steps of 32 windows; peak lr 1e-4, 10% warmup, weight decay
0.01, seed 42; all 1,572 held-out questions. Sized from measured runs on this shared 2-core machine (load
average 3-5 from other jobs): ours trained 2.4-4.5 windows/s and HF 1.9-3.2, the three evaluations and the
export take about 7 minutes, so one epoch over all 7,010 questions (8,180 windows) would take about 80
minutes; 2,800 questions took 27 (1,400: 21). (The cap is on questions, not `--epochs`: a fraction of an epoch still
runs the whole epoch in `kerasbert.train`, the steps after the schedule's end at learning rate 0.)

Each side runs in its own process (torch's and TF's thread pools slow each other down in one process).
Training throughput (windows/s) and inference throughput (questions/s; served over gRPC for ours, the
whole HF pipeline from tokenization to answer text for HF) are printed next to each other, with the
machine (CPU model, flags, cores) and the load average before and after each side; a figure measured with
the load above the core count is marked LOADED.

    python benchmarks/bench_qa.py --max_train_questions 2800       # the committed run (27 min on 2 cores)
    python benchmarks/bench_qa.py                                  # every training question (~80 min)
    python benchmarks/bench_qa.py --max_train_questions 24 --max_dev_questions 12 --sequence_length 128 \\
        --batch_size 12 --dev_eval_in_training --json /tmp/qa_quick.json     # quick mode (tests/test_bench_qa.py)

Results go to `benchmarks/results/qa_squad_minilm[_<tag>].json` (or `--json`).
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ner import (  # noqa: E402  (also puts the repo on sys.path and sets USE_TF=0)
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
    serving,
)

SQUAD = SHARED / "data" / "squad_v1.1" / "dev-v1.1.articles-00-37.json"
MODEL_NAME = "squad"


# --------------------------------------------------------------------------------------------
# Data (shared by both sides)
# --------------------------------------------------------------------------------------------
def read_questions(spec, limit=None):
    """The questions of articles `spec` ("0-29") of the SQuAD file; with `limit`, that many of them
    evenly spaced in file order (every article keeps its share)."""
    from kerasbert.data import squad

    examples = list(squad.read_squad(SQUAD, squad.parse_articles(spec)))
    if limit and limit < len(examples):
        examples = [examples[i * len(examples) // limit] for i in range(limit)]
    return examples


def write_squad(path, examples):
    """`SquadExample`s back to a SQuAD v1.1 file (articles and paragraphs in their order)."""
    articles = {}
    for ex in examples:
        paragraphs = articles.setdefault(ex.article, {"title": ex.title, "paragraphs": {}})["paragraphs"]
        qas = paragraphs.setdefault(ex.context, [])
        answers = [{"text": t, "answer_start": s} for t, s in zip(ex.answers, ex.answer_starts)]
        qas.append({"id": ex.id, "question": ex.question, "answers": answers})
    data = [
        {"title": a["title"], "paragraphs": [{"context": c, "qas": q} for c, q in a["paragraphs"].items()]}
        for a in articles.values()
    ]
    Path(path).write_text(json.dumps({"version": "1.1", "data": data}), encoding="utf-8")


def scores(examples, answers):
    """Official SQuAD v1.1 EM/F1 (percent) of `answers` (one text per example)."""
    from kerasbert.training import squad_metrics

    return squad_metrics.squad_scores(
        {ex.id: list(ex.answers) for ex in examples}, {ex.id: a for ex, a in zip(examples, answers)}
    )


# --------------------------------------------------------------------------------------------
# Hugging Face side (own process)
# --------------------------------------------------------------------------------------------
def hf_features(tok, examples, args, with_labels):
    """run_qa.py's windows of `examples`: one dict per window (ids, offsets, example, positions).

    Grouped by question length, so HF's overlap `stride` reproduces run_squad.py's `doc_stride` step.
    """
    questions = [ex.question for ex in examples]
    q_enc = tok(questions, add_special_tokens=False, return_offsets_mapping=True)
    groups = collections.defaultdict(list)
    for i, offsets in enumerate(q_enc["offset_mapping"]):
        if len(offsets) > args.max_query_length:  # keep the first max_query_length WordPieces
            questions[i] = questions[i][: offsets[args.max_query_length - 1][1]]
        groups[min(len(offsets), args.max_query_length)].append(i)
    features = []
    for q_len, rows in sorted(groups.items()):
        window = args.sequence_length - q_len - 3
        enc = tok(
            [questions[i] for i in rows],
            [examples[i].context for i in rows],
            truncation="only_second",
            max_length=args.sequence_length,
            stride=max(window - args.doc_stride, 0),
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        for j, ids in enumerate(enc["input_ids"]):
            e = rows[enc["overflow_to_sample_mapping"][j]]
            seq = enc.sequence_ids(j)
            offsets = [o if s == 1 else None for o, s in zip(enc["offset_mapping"][j], seq)]
            feature = {
                "input_ids": ids,
                "token_type_ids": enc["token_type_ids"][j],
                "attention_mask": enc["attention_mask"][j],
                "example": e,
                "offsets": offsets,
            }
            if with_labels:  # run_qa.py's prepare_train_features
                ex = examples[e]
                start_char = ex.answer_starts[0]
                end_char = start_char + len(ex.answers[0])
                first = seq.index(1)
                last = len(ids) - 1 - seq[::-1].index(1)
                offs = enc["offset_mapping"][j]
                start = end = ids.index(tok.cls_token_id)
                if offs[first][0] <= start_char and offs[last][1] >= end_char:
                    while first < len(offs) and offs[first][0] <= start_char:
                        first += 1
                    while offs[last][1] >= end_char:
                        last -= 1
                    start, end = first - 1, last + 1
                feature["start_positions"], feature["end_positions"] = start, end
            features.append(feature)
    return features


def hf_batch(tok, features, rows, with_labels=False):
    import torch

    keys = ("input_ids", "token_type_ids", "attention_mask")
    batch = tok.pad({k: [features[i][k] for i in rows] for k in keys}, return_tensors="pt")
    if with_labels:
        for k in ("start_positions", "end_positions"):
            batch[k] = torch.tensor([features[i][k] for i in rows])
    return batch


def hf_postprocess(examples, features, start_logits, end_logits, n_best, max_answer_length):
    """run_qa.py's postprocess_qa_predictions (SQuAD v1.1): the best answer text per example."""
    import numpy as np

    by_example = collections.defaultdict(list)
    for f, feature in enumerate(features):
        by_example[feature["example"]].append(f)
    answers = []
    for e, ex in enumerate(examples):
        best = None
        for f in by_example[e]:
            offsets, s_log, e_log = features[f]["offsets"], start_logits[f], end_logits[f]
            for si in np.argsort(s_log)[-1 : -n_best - 1 : -1]:
                for ei in np.argsort(e_log)[-1 : -n_best - 1 : -1]:
                    if si >= len(offsets) or ei >= len(offsets) or offsets[si] is None or offsets[ei] is None:
                        continue
                    if ei < si or ei - si + 1 > max_answer_length:
                        continue
                    score = s_log[si] + e_log[ei]
                    if best is None or score > best[0]:
                        best = (score, offsets[si][0], offsets[ei][1])
        answers.append(ex.context[best[1] : best[2]] if best else "")
    return answers


def run_hf(args):
    import os

    import numpy as np
    import torch
    import transformers
    from transformers import BertForQuestionAnswering, BertTokenizerFast

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(os.cpu_count())
    train = read_questions(args.train_articles, args.max_train_questions)
    dev = read_questions(args.dev_articles, args.max_dev_questions)
    ckpt = minilm_checkpoint()
    tok = BertTokenizerFast.from_pretrained(str(ckpt))
    model = BertForQuestionAnswering.from_pretrained(str(ckpt))
    features = hf_features(tok, train, args, with_labels=True)
    total = args.steps or max(1, int(round(max(1, len(features) // args.batch_size) * args.epochs)))
    train_seconds, load0, load1 = hf_train(
        model, lambda rows: hf_batch(tok, features, rows, True), len(features), total, args
    )

    model.eval()
    start = time.perf_counter()
    dev_features = hf_features(tok, dev, args, with_labels=False)
    starts, ends = [], []
    with torch.no_grad():
        for b in range(0, len(dev_features), args.batch_size):
            rows = list(range(b, min(len(dev_features), b + args.batch_size)))
            out = model(**hf_batch(tok, dev_features, rows))
            for k, i in enumerate(rows):
                n = len(dev_features[i]["input_ids"])
                starts.append(out.start_logits[k, :n].numpy())
                ends.append(out.end_logits[k, :n].numpy())
    answers = hf_postprocess(dev, dev_features, starts, ends, args.hf_n_best, args.max_answer_length)
    infer_seconds = time.perf_counter() - start
    load2 = load_average()
    return {
        "side": "huggingface",
        "train_questions": len(train),
        "train_windows": len(features),
        "dev_questions": len(dev),
        "dev_windows": len(dev_features),
        "steps": total,
        "train_seconds": round(train_seconds, 1),
        "train_windows_per_second": round(total * args.batch_size / train_seconds, 2),
        "inference_seconds": round(infer_seconds, 1),
        "inference_questions_per_second": round(len(dev) / infer_seconds, 1),
        "load_average": [load0, load1, load2],
        "dev": scores(dev, answers),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }


# --------------------------------------------------------------------------------------------
# kerasbert side (own processes: train + export, then serve + client)
# --------------------------------------------------------------------------------------------
def shown_command(command, work, checkpoint):
    """`command` as the JSON records it: no machine paths (the scratch folder, the checkpoint's cache, ../shared)."""
    replacements = {str(work): "<work>", str(checkpoint): "<minilm-checkpoint>", str(SHARED): "../shared"}
    words = ["python", *map(str, command[1:])]
    for path, name in replacements.items():
        words = [w.replace(path, name) for w in words]
    return " ".join(words)


def run_ours(args, work):
    work = Path(work)
    train = read_questions(args.train_articles, args.max_train_questions)
    dev = read_questions(args.dev_articles, args.max_dev_questions)
    data = []  # --train_file/--dev_file: the SQuAD file with its articles, or a sample in a file of its own
    for split, spec, limit, examples in (
        ("train", args.train_articles, args.max_train_questions, train),
        ("dev", args.dev_articles, args.max_dev_questions, dev),
    ):
        if limit:
            write_squad(work / f"{split}.json", examples)
            data.append([f"--{split}_file", str(work / f"{split}.json")])
        else:
            data.append([f"--{split}_file", str(SQUAD), f"--{split}_articles", spec])
    export_dir, run_dir = work / "exports", work / "run"
    flags = {
        "sequence_length": args.sequence_length,
        "doc_stride": args.doc_stride,
        "max_query_length": args.max_query_length,
        "max_answer_length": args.max_answer_length,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "warmup_proportion": args.warmup_proportion,
        "weight_decay": args.weight_decay,
        "seed": args.seed,
        "output_dir": run_dir,
        "export_dir": export_dir,
        "model_name": MODEL_NAME,
    }
    command = [sys.executable, "-m", "kerasbert.train", "--task", "question_answering"]
    command += data[0]
    if args.dev_eval_in_training:  # the same task.predict + squad_scores as predict_in_process, once more
        command += data[1]
    checkpoint = minilm_checkpoint()
    command += ["--init_checkpoint", str(checkpoint), "--quiet"]
    command += [x for k, v in flags.items() for x in (f"--{k}", str(v))]
    load0, start = load_average(), time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO)
    wall = time.perf_counter() - start
    load1 = load_average()
    results = json.loads((run_dir / "results.json").read_text())
    steps, train_seconds = results["steps"], results.get("fit_seconds") or results["train_seconds"]

    in_process = predict_in_process(run_dir, train, dev, args.batch_size)
    served = serve_and_score(args, export_dir / MODEL_NAME, dev)
    same = sum(a == b for a, b in zip(in_process.pop("answers"), served.pop("answers")))
    return {
        "side": "kerasbert",
        "train_questions": results["train_examples"],
        "alignment": results.get("alignment"),
        "train_windows": in_process.pop("train_windows"),
        "dev_questions": len(dev),
        "dev_windows": in_process.pop("dev_windows"),
        "steps": steps,
        "train_seconds": train_seconds,
        "train_windows_per_second": round(steps * args.batch_size / train_seconds, 2),
        "train_command": shown_command(command, work, checkpoint),
        "wall_seconds_train_export": round(wall, 1),
        "load_average": [load0, load1, in_process.pop("load_average"), served.pop("load_average")],
        "dev_in_process": in_process.pop("dev"),
        "dev_in_training": results.get("dev_metrics"),
        "in_process_questions_per_second": in_process.pop("questions_per_second"),
        "served_answers_equal_to_in_process": same,
        **served,
    }


def predict_in_process(run_dir, train, dev, batch_size):
    """The trained run reloaded and predicted in this process (task.predict, Python post-processing);
    also counts the windows of both sets (training: those of questions whose answer aligned)."""
    from kerasbert.training.finetune import load_run

    run = load_run(run_dir)
    windows = {
        "train_windows": int(run.task.features(train, run.preprocessor)[0].trainable.sum()),
        "dev_windows": len(run.task.features(dev, run.preprocessor, with_labels=False)[0]),
    }
    run.task.predict(run.model, run.preprocessor, dev[:batch_size], batch_size)  # warm-up (tracing)
    start = time.perf_counter()
    predictions = run.task.predict(run.model, run.preprocessor, dev, batch_size)
    seconds = time.perf_counter() - start
    answers = [p["answer"] for p in predictions]
    return {
        "answers": answers,
        "dev": scores(dev, answers),
        "questions_per_second": round(len(dev) / seconds, 1),
        "load_average": load_average(),
        **windows,
    }


def serve_and_score(args, base, dev):
    """Serves the export on a free loopback port; every dev question goes through gRPC."""
    inputs = {"question": [ex.question for ex in dev], "context": [ex.context for ex in dev]}
    outputs = ["answer", "start", "end"]

    def probe(client):
        client.predict({k: v[:1] for k, v in inputs.items()}, output_filter=outputs)

    with serving(base, MODEL_NAME, probe) as client:
        client.predict({k: v[: args.batch_size] for k, v in inputs.items()}, output_filter=outputs)  # warm-up
        start = time.perf_counter()
        out = client.predict(inputs, output_filter=outputs, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
    load = load_average()
    answers = [str(a) for a in out["answer"]]
    exact_offsets = sum(ex.context[s:e] == a for ex, a, s, e in zip(dev, answers, out["start"], out["end"]))
    return {
        "answers": answers,
        "dev_served": scores(dev, answers),
        "served_answers_equal_context_slice": int(exact_offsets),
        "served_questions_per_second": round(len(dev) / seconds, 1),
        "load_average": load,
    }


# --------------------------------------------------------------------------------------------
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train_articles", default="0-29")
    p.add_argument("--dev_articles", default="30-37")
    p.add_argument("--max_train_questions", type=int, default=None, help="N training questions (evenly spaced)")
    p.add_argument("--max_dev_questions", type=int, default=None, help="N held-out questions (evenly spaced)")
    p.add_argument("--sequence_length", type=int, default=256)
    p.add_argument("--doc_stride", type=int, default=128)
    p.add_argument("--max_query_length", type=int, default=64)
    p.add_argument("--max_answer_length", type=int, default=30)
    p.add_argument("--hf_n_best", type=int, default=20, help="HF post-processing: top start/end logits")
    p.add_argument("--steps", type=int, default=None, help="(HF side) steps; main passes ours")
    p.add_argument(
        "--dev_eval_in_training",
        action="store_true",
        help="also score the dev questions in the training run (its --dev_file evaluation: the same task.predict)",
    )
    p.add_argument("--json", default=None, help="where the summary goes (default results/qa_squad_minilm[_tag].json)")
    add_common_arguments(p)
    args = p.parse_args(argv)
    if not SQUAD.exists():
        sys.exit(f"{SQUAD} is absent: this benchmark needs ../shared beside the repo")
    if args.side != "both":
        return run_one_side(args, run_hf, run_ours)
    info = machine()
    cores = info["cores"]
    started = time.perf_counter()
    forwarded = list(argv if argv is not None else sys.argv[1:])

    def same_steps(side, done):
        return ["--steps", str(done["ours"]["steps"])] if side == "hf" else []

    sides = run_sides(__file__, forwarded, cores, extra=same_steps, rounds=args.rounds)
    o, h = sides["ours"], sides["hf"]
    settings = {k: v for k, v in vars(args).items() if k not in ("side", "json_out", "json", "steps")}
    settings["steps"] = o["steps"]
    summary = {
        "machine": info,
        "settings": settings,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "ours": o,
        "huggingface": h,
        "served_minus_in_process": {
            k: round(o["dev_served"][k] - o["dev_in_process"][k], 4) for k in ("exact_match", "f1")
        },
        "ours_served_minus_hf": {k: round(o["dev_served"][k] - h["dev"][k], 4) for k in ("exact_match", "f1")},
        "ours_in_process_minus_hf": {k: round(o["dev_in_process"][k] - h["dev"][k], 4) for k in ("exact_match", "f1")},
    }
    path = Path(args.json) if args.json else RESULTS / f"qa_squad_minilm{('_' + args.tag) if args.tag else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    mark = {side: " LOADED" if s["loaded"] else "" for side, s in sides.items()}
    print(f"machine: {info['cpu']} ({', '.join(info['flags'])}), {cores} cores")
    print(f"{'':26}{'EM':>7}{'F1':>7}{'train win/s':>13}{'infer q/s':>11}  load")
    ip, sv, hd = o["dev_in_process"], o["dev_served"], h["dev"]
    print(
        f"{'kerasbert in-process':26}{ip['exact_match']:7.2f}{ip['f1']:7.2f}{o['train_windows_per_second']:13.2f}"
        f"{o['in_process_questions_per_second']:11.1f}  {o['load_average']}{mark['ours']}"
    )
    print(
        f"{'kerasbert served (gRPC)':26}{sv['exact_match']:7.2f}{sv['f1']:7.2f}{'':13}"
        f"{o['served_questions_per_second']:11.1f}"
    )
    print(
        f"{'Hugging Face (torch)':26}{hd['exact_match']:7.2f}{hd['f1']:7.2f}{h['train_windows_per_second']:13.2f}"
        f"{h['inference_questions_per_second']:11.1f}  {h['load_average']}{mark['hf']}"
    )
    print(f"wall {summary['wall_seconds']:.0f}s; results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
