"""Chinese Resume NER from scratch vs after a short pretraining, with the bert-base-chinese vocab.

No Chinese pretrained weights are available offline, so both arms start from BERT-tiny (2 x 128):

* **from scratch**: `python -m kerasbert.train --task token_classification` on
  `chinese_ner_resume/train.char.bmes` (BMES, one sentence per line) with
  `--vocab bert-base-chinese/vocab.txt`, random initialisation;
* **pretrained**: first `python -m kerasbert.train pretrain` (MLM + NSP) on the Chinese text in
  ../shared with no labels (ChnSentiCorp train reviews, CLUE TNEWS train headlines, and the
  sentences of the Resume and Weibo *training* files, characters joined), for at most
  `--pretrain_minutes` (default 20), then the same fine-tuning from its `pretrained/` folder.

Both fine-tunes use the same steps, learning rate and seed and report entity F1 (micro,
conlleval semantics) on `dev.char.bmes`. Figures go to `benchmarks/results/ner_resume.json`.

    python benchmarks/bench_ner_chinese.py                       # 20 min pretraining + 2 fine-tunes
    python benchmarks/bench_ner_chinese.py --pretrain_minutes 2 --epochs 1 --tag quick
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"
VOCAB = SHARED / "vocab" / "bert-base-chinese" / "vocab.txt"
RESUME = SHARED / "chinese_ner_resume"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench_ner import load_average, loaded, machine  # noqa: E402


def corpus_lines(out):
    """Unlabelled Chinese text, one document per line (blank line between documents)."""
    from kerasbert.data import tagging

    lines = []
    with open(SHARED / "chnsenticorp" / "train.tsv", encoding="utf-8") as f:
        lines += [row[1] for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][1:]
    with open(SHARED / "clue_tnews" / "train.tsv", encoding="utf-8") as f:
        lines += [line.split("\t")[0] for line in f]
    for path in (RESUME / "train.char.bmes", SHARED / "chinese_ner_weibo" / "train.all.bmes"):
        lines += ["".join(s.words) for s in tagging.read_tagged(str(path), fmt="bmes")]
    lines = [x.strip() for x in lines if x.strip()]
    Path(out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines), sum(len(x) for x in lines)


def finetune(args, work, name, init=None):
    command = [
        sys.executable,
        "-m",
        "kerasbert.train",
        "--task",
        "token_classification",
        "--train_file",
        str(RESUME / "train.char.bmes"),
        "--dev_file",
        str(RESUME / "dev.char.bmes"),
        "--format",
        "bmes",
        "--sequence_length",
        str(args.sequence_length),
        "--batch_size",
        str(args.batch_size),
        "--epochs",
        str(args.epochs),
        "--learning_rate",
        str(args.learning_rate),
        "--seed",
        str(args.seed),
        "--output_dir",
        str(Path(work) / name),
        "--no_export",
        "--quiet",
    ]
    command += ["--init_checkpoint", str(init)] if init else ["--vocab", str(VOCAB), "--model_size", "tiny"]
    before, start = load_average(), time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO)
    results = json.loads((Path(work) / name / "results.json").read_text())
    return {
        "dev": results["dev_metrics"],
        "steps": results["steps"],
        "seconds": round(time.perf_counter() - start, 1),
        "load_average": [before, load_average()],
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pretrain_minutes", type=float, default=20)
    p.add_argument("--epochs", type=float, default=5)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--learning_rate", type=float, default=5e-4)
    p.add_argument("--sequence_length", type=int, default=128)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--work_dir", default="runs/bench_ner_chinese")
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    if not RESUME.exists() or not VOCAB.exists():
        sys.exit(f"{RESUME} or {VOCAB} is absent: this benchmark needs ../shared beside the repo")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    info = machine()
    scratch = finetune(args, work, "scratch")
    corpus = work / "corpus.txt"
    documents, characters = corpus_lines(corpus)
    start, before = time.perf_counter(), load_average()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "kerasbert.train",
            "pretrain",
            "--input_files",
            str(corpus),
            "--input_format",
            "lines",
            "--vocab_file",
            str(VOCAB),
            "--model_size",
            "tiny",
            "--max_seq_length",
            str(args.sequence_length),
            "--num_train_steps",
            "1000000",
            "--num_warmup_steps",
            "500",
            "--learning_rate",
            "1e-3",
            "--max_minutes",
            str(args.pretrain_minutes),
            "--output_dir",
            str(work / "pretrain"),
            "--log_steps",
            "500",
        ],
        check=True,
        cwd=REPO,
    )
    pretrain = {
        "minutes": round((time.perf_counter() - start) / 60, 1),
        "documents": documents,
        "characters": characters,
        "load_average": [before, load_average()],
    }
    summary_file = work / "pretrain" / "pretraining_summary.json"
    if summary_file.exists():
        pretrain["summary"] = json.loads(summary_file.read_text())
    pretrained = finetune(args, work, "pretrained", init=work / "pretrain" / "pretrained")
    for arm in (scratch, pretrained):
        arm["loaded"] = loaded(*arm["load_average"], info["cores"])
    result = {
        "machine": info,
        "settings": vars(args),
        "from_scratch": scratch,
        "pretraining": pretrain,
        "after_pretraining": pretrained,
        "f1_difference": round(pretrained["dev"]["f1"] - scratch["dev"]["f1"], 4),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"ner_resume{('_' + args.tag) if args.tag else ''}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(
        f"Resume dev F1: from scratch {scratch['dev']['f1']:.4f}, after {pretrain['minutes']} min "
        f"pretraining {pretrained['dev']['f1']:.4f}; results: {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
