"""Pretrain BERT-tiny on WikiText-2 (raw) for a fixed time budget, on this machine.

The corpus (`wikitext2_raw/wiki.test.raw.lines.txt`, 62 Wikipedia articles,
~241k words) is regrouped into BERT's format: one document per ARTICLE (its
paragraphs split into sentences, headings dropped, WikiText's ` @-@ `-style
escapes undone). 10% of the articles are held out: never trained on, and not
used to learn the vocabulary. A WordPiece vocabulary (default 8k) is learned
from the training articles (`kerasbert.preprocessing.vocab`); a 30k
bert-base-uncased softmax would dominate a tiny model's compute, and most of
its rows would never be trained on 200k words.

Reports, on the held-out articles:

* MLM accuracy vs the unigram baseline (always predict the most frequent
  masked token of the held-out set), NSP accuracy vs 50% / majority class;
* training throughput in sequences/s, and as a fraction of the float32
  matmul rate measured here (model FLOPs estimated analytically);
* a loss-curve PNG (`benchmarks/results/pretraining_loss.png`) and all
  figures in `benchmarks/results/pretraining.json`, with the machine load.

With `--finetune_sst2`, the pretrained encoder and a randomly initialised one
(same vocabulary, same architecture) are fine-tuned on the same SST-2 subset
(`kerasbert.training.finetune`) for each learning rate of a small grid and
each seed; each arm's learning rate is the one with the best mean dev
accuracy (872 sentences) over the seeds, and the arms are compared on that
mean.
A linear probe (logistic regression on the frozen, mean-pooled features of
each encoder) shows what the pretrained representation itself carries, and a
logistic regression on WordPiece bag-of-words features of the same labelled
rows is the reference point for both arms.

`--sst2_unlabelled` adds the *text* of the SST-2 training rows that are not
in the labelled subset (rows `--sst2_examples` onwards, or from
`--sst2_unlabelled_from`; their labels are not used) to the pretraining
corpus: the usual semi-supervised set-up of a few labelled and many
unlabelled in-domain sentences ("task-adaptive pretraining", Gururangan et
al. 2020). SST-2's rows are shuffled phrases, not documents, so they are
grouped into pseudo-documents of `--sst2_phrases_per_document` rows for NSP.
The held-out MLM/NSP figures stay on the held-out WikiText articles, and the
vocabulary is learned from the whole pretraining corpus; the random-init arm
uses the same vocabulary.
Results go to `pretraining_sst2_unlabelled.json`/`.png`.

Runs by hand, not in CI:

    python benchmarks/bench_pretraining.py --minutes 15 --finetune_sst2
    python benchmarks/bench_pretraining.py --minutes 20 --finetune_sst2 --sst2_unlabelled \
        --dupe_factor 3 --masked_lm_prob 0.3 --output_dir runs/bench_pretraining
    # the SST-2 comparison again, with all 67k labelled rows, for that encoder
    python benchmarks/bench_pretraining.py --pretrained runs/bench_pretraining/pretrained \
        --sst2_examples 67349 --sst2_epochs 1 --sst2_seeds 1
"""

import argparse
import functools
import json
import math
import os
import re
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

from kerasbert.data import pretraining as pdata  # noqa: E402
from kerasbert.modeling.encoder import encoder_config  # noqa: E402
from kerasbert.preprocessing import vocab as vocab_lib  # noqa: E402
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


# WikiText's escaped in-word punctuation (" @-@ " etc.): left in, BERT's
# tokenizer would make three easy-to-predict pieces of each.
_WIKITEXT_ESCAPES = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."))
_TITLE = re.compile(r"^ = [^=].* = $")
_HEADING = re.compile(r"^ (= )+.* (= )*=$")


def wikitext_articles(path):
    """The articles of a WikiText raw file, each a list of sentences.

    An article starts at a ` = Title = ` line; headings are dropped (as in
    BERT's Wikipedia data), paragraphs split into sentences.

    Example:

    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "w.txt"
    >>> _ = p.write_text(" = A = \\n Two @-@ way . It works .\\n = = B = = \\n Ok .\\n")
    >>> wikitext_articles(p)
    [['Two-way .', 'It works .', 'Ok .']]
    """
    articles = []
    with open(path, encoding="utf-8") as f:
        for line in f.read().splitlines():
            if _TITLE.match(line):
                articles.append([])
                continue
            if _HEADING.match(line.rstrip()) or not line.strip():
                continue
            if not articles:
                articles.append([])
            for escaped, plain in _WIKITEXT_ESCAPES:
                line = line.replace(escaped, plain)
            articles[-1].extend(pdata.split_sentences(line.strip()))
    return [a for a in articles if a]


def write_bert_format(articles, path):
    """One sentence per line, a blank line after each article."""
    with open(path, "w", encoding="utf-8") as f:
        for article in articles:
            f.write("\n".join(article) + "\n\n")
    return str(path)


SST2 = SHARED / "data" / "glue_sst2"


@functools.cache
def sst2_split(split):
    """SST-2 `train` or `dev` as `kerasbert.data.tables.Examples`, read once
    for the whole run."""
    from kerasbert.data import tables

    return tables.read_examples(SST2 / f"{split}.tsv")


def sst2_labelled(args):
    """(train texts, train labels, dev texts, dev labels) of the comparison:
    the first `--sst2_examples` training rows and the whole dev set."""
    train, dev = sst2_split("train"), sst2_split("dev")
    return (
        train.texts[: args.sst2_examples],
        np.array([int(v) for v in train.labels[: args.sst2_examples]]),
        dev.texts,
        np.array([int(v) for v in dev.labels]),
    )


def logistic_regression_accuracy(x_train, y_train, x_dev, y_dev, epochs, batch_size, l2=None, seed=None):
    """Dev accuracy of a 2-class logistic regression (Adam 1e-2) on fixed
    features; `l2` adds weight regularisation, `seed` reseeds Keras first."""
    import keras

    if seed is not None:
        keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((x_train.shape[1],)),
            keras.layers.Dense(2, kernel_regularizer=keras.regularizers.l2(l2) if l2 else None),
        ]
    )
    model.compile(
        keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=0)
    return float(model.evaluate(x_dev, y_dev, verbose=0)[1])


def results_stem(stem, args):
    """`stem`, suffixed with `_<--tag>` when one is given."""
    return f"{stem}_{args.tag}" if args.tag else stem


def command_line():
    """This run's command, as recorded in the results."""
    return " ".join(["python", "benchmarks/bench_pretraining.py"] + sys.argv[1:])


def write_results(stem, results):
    """`results` as `benchmarks/results/<stem>.json`; returns the path."""
    path = RESULTS / f"{stem}.json"
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    return path


def sst2_unlabelled_documents(skip, per_document):
    """SST-2 training rows from `skip` on as pseudo-documents of sentences
    (their labels are not used)."""
    rows = sst2_split("train").texts[skip:]
    rows = [r.strip() for r in rows if r.strip()]
    return [rows[i : i + per_document] for i in range(0, len(rows), per_document)]


def frozen_features_sst2(pretrained, args, epochs=30):
    """Dev accuracy of a logistic regression on FROZEN mean-pooled encoder
    features (pretrained vs randomly initialised, same architecture and
    vocabulary): what the pretrained representation itself knows about
    sentiment, before fine-tuning can change it."""
    import keras

    from kerasbert.modeling import build_encoder
    from kerasbert.modeling.checkpoints import load_checkpoint
    from kerasbert.preprocessing import BertPreprocessor
    from kerasbert.tasks import build_embedding_model

    checkpoint = load_checkpoint(pretrained)
    preprocessor = BertPreprocessor(checkpoint.vocabulary_path, sequence_length=args.max_seq_length)
    keras.utils.set_random_seed(0)
    random_init = build_encoder("tiny", checkpoint.backbone.vocabulary_size)

    def features(encoder, texts):
        embed = build_embedding_model(encoder, "mean")
        return np.concatenate(
            [
                embed(preprocessor(tf.constant(texts[i : i + 256])), training=False)["embeddings"].numpy()
                for i in range(0, len(texts), 256)
            ]
        )

    train_texts, y_train, dev_texts, y_dev = sst2_labelled(args)
    results = {}
    for arm, encoder in (("pretrained", checkpoint.backbone), ("random_init", random_init)):
        x_train, x_dev = features(encoder, train_texts), features(encoder, dev_texts)
        mean, std = x_train.mean(0), x_train.std(0) + 1e-6
        results[arm] = logistic_regression_accuracy(
            (x_train - mean) / std, y_train, (x_dev - mean) / std, y_dev, epochs, 256
        )
        print(f"SST-2 linear probe on frozen {arm} features: dev accuracy {results[arm]:.4f}", flush=True)
    return results


def bag_of_words_sst2(vocab, args, l2_grid=(1e-4, 1e-3), epochs=10):
    """Dev accuracy of a logistic regression on WordPiece bag-of-words
    features (which vocabulary entries occur in the sentence, after the same
    tokenisation and truncation as fine-tuning) of the same labelled SST-2
    rows, best of `l2_grid` like the fine-tuning arms' best lr.

    The reference point for both fine-tuned arms: a tiny transformer that
    does no better than this has learned only which words carry sentiment,
    and pretraining could help it only through what it knows about words
    the labels do not cover, or about composition."""
    from kerasbert.preprocessing import BertPreprocessor

    preprocessor = BertPreprocessor(str(vocab), sequence_length=args.max_seq_length)
    size = preprocessor.vocabulary_size

    def features(texts):
        x = preprocessor(tf.constant(texts))
        ids = tf.ragged.boolean_mask(x["token_ids"], x["padding_mask"])
        return tf.cast(tf.math.bincount(ids, minlength=size, maxlength=size, axis=-1) > 0, "float32").numpy()

    train_texts, y_train, dev_texts, y_dev = sst2_labelled(args)
    x_train, x_dev = features(train_texts), features(dev_texts)
    by_l2 = {
        f"{l2:g}": logistic_regression_accuracy(x_train, y_train, x_dev, y_dev, epochs, 64, l2=l2, seed=0)
        for l2 in l2_grid
    }
    best = max(by_l2, key=by_l2.get)
    print(f"SST-2 bag-of-words logistic regression: dev accuracy {by_l2[best]:.4f} (l2 {best})", flush=True)
    return {"accuracy": by_l2[best], "best_l2": float(best), "by_l2": by_l2}


def run_dir(sst2_dir, arm, lr, seed):
    """The folder of one SST-2 fine-tune (`<arm>_<lr>_<seed>`)."""
    return Path(sst2_dir) / f"{arm}_{float(lr):g}_{seed}"


def finetune_sst2(pretrained, vocab, out, args):
    """SST-2 dev metrics of tiny BERT fine-tuned from `pretrained` and from
    random init (same vocabulary and sizes), for each learning rate and seed."""
    from kerasbert.training import finetune

    common = [
        "--train_file",
        SST2 / "train.tsv",
        "--dev_file",
        SST2 / "dev.tsv",
        "--max_train_examples",
        args.sst2_examples,
        "--epochs",
        args.sst2_epochs,
        "--batch_size",
        32,
        "--sequence_length",
        args.max_seq_length,
        "--model_size",
        "tiny",
        "--no_export",
        "--quiet",
    ]
    arms = {"pretrained": ["--init_checkpoint", pretrained], "random_init": ["--vocab", vocab]}
    results = {}
    for arm, extra in arms.items():
        runs = {}
        for lr in args.sst2_lrs:
            by_seed = {}
            for seed in args.sst2_seeds:
                argv = (
                    common
                    + extra
                    + [
                        "--learning_rate",
                        lr,
                        "--seed",
                        seed,
                        "--output_dir",
                        run_dir(out, arm, lr, seed),
                    ]
                )
                start = time.perf_counter()
                r = finetune.run(finetune.build_parser().parse_args([str(a) for a in argv]))
                by_seed[str(seed)] = {k: float(v) for k, v in r["dev_metrics"].items()}
                by_seed[str(seed)]["seconds"] = round(time.perf_counter() - start, 1)
                print(f"SST-2 {arm} lr {lr:g} seed {seed}: {by_seed[str(seed)]}", flush=True)
            accuracies = [m["accuracy"] for m in by_seed.values()]
            runs[f"{lr:g}"] = {
                "mean_accuracy": float(np.mean(accuracies)),
                "std_accuracy": float(np.std(accuracies)),
                "mean_f1": float(np.mean([m["f1"] for m in by_seed.values()])),
                "by_seed": by_seed,
            }
        best = max(runs, key=lambda k: runs[k]["mean_accuracy"])
        results[arm] = {"best_learning_rate": float(best), **runs[best], "by_learning_rate": runs}
    gap = results["pretrained"]["mean_accuracy"] - results["random_init"]["mean_accuracy"]
    results["pretrained_minus_random_init"] = gap
    return results


def dev_correct(weights, encoder, dev_features, y_dev):
    """Per-sentence correctness (bool `[872]`) on SST-2 dev of a fine-tuned
    classifier rebuilt on `encoder` (its architecture) from the
    `model.weights.h5` the fine-tune saved. `dev_features` is the
    preprocessed dev set."""
    from kerasbert.tasks import TaskSpec, build_classifier

    model = build_classifier(encoder, TaskSpec("classification", ["0", "1"]))
    model.load_weights(str(weights))
    return model(dev_features, training=False).numpy().argmax(-1) == y_dev


def mcnemar_exact_p(b, c):
    """Two-sided exact McNemar p-value: P(a count as lopsided as b vs c) under
    Binomial(b + c, 1/2)."""
    n = b + c
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n) if n else 1.0


def paired_sst2(sst2_dir, pretrained, vocab_path, learning_rates, args, resamples=10000):
    """Pretrained vs random init on the SAME dev sentences, seed by seed (the
    two arms of a seed share the head's initialisation and the data order).

    For each seed: how many dev sentences only one arm gets right, and the
    exact two-sided McNemar p-value. Over the seeds: each sentence's accuracy
    is averaged over the seeds, per arm, and a paired bootstrap over the 872
    sentences gives a 95% interval for the difference of the two arms' mean
    accuracies. That interval covers dev-set sampling and fine-tuning seeds,
    not pretraining runs (compare several encoders for those).

    The classifiers are rebuilt from the weights each fine-tune saved, also
    right after fine-tuning, so that `--rescore` and a full run compute these
    figures the same way (a few seconds per model).

    Raises:
        FileNotFoundError: a fine-tune's `model.weights.h5` is missing.
    """
    from kerasbert.modeling import build_encoder
    from kerasbert.modeling.checkpoints import load_checkpoint
    from kerasbert.preprocessing import BertPreprocessor

    weights = {
        arm: [run_dir(sst2_dir, arm, learning_rates[arm], seed) / "model.weights.h5" for seed in args.sst2_seeds]
        for arm in ("pretrained", "random_init")
    }
    missing = [str(w.parent.name) for paths in weights.values() for w in paths if not w.is_file()]
    if missing:
        raise FileNotFoundError(f"no model.weights.h5 in {sst2_dir} for {', '.join(missing)}")
    preprocessor = BertPreprocessor(str(vocab_path), sequence_length=args.max_seq_length)
    dev = sst2_split("dev")
    dev_features = preprocessor(tf.constant(dev.texts))
    y_dev = np.array([int(v) for v in dev.labels])
    encoders = {
        "pretrained": lambda: load_checkpoint(pretrained).backbone,
        "random_init": lambda: build_encoder(
            "tiny", preprocessor.vocabulary_size, max_sequence_length=max(512, args.max_seq_length)
        ),
    }
    correct = {
        arm: np.stack([dev_correct(w, encoders[arm](), dev_features, y_dev) for w in paths])
        for arm, paths in weights.items()
    }
    by_seed = {}
    for i, seed in enumerate(args.sst2_seeds):
        only_pretrained = int(np.sum(correct["pretrained"][i] & ~correct["random_init"][i]))
        only_random = int(np.sum(~correct["pretrained"][i] & correct["random_init"][i]))
        by_seed[str(seed)] = {
            "accuracy_difference": float(correct["pretrained"][i].mean() - correct["random_init"][i].mean()),
            "only_pretrained_right": only_pretrained,
            "only_random_init_right": only_random,
            "mcnemar_exact_p": mcnemar_exact_p(only_pretrained, only_random),
        }
    difference = correct["pretrained"].mean(0) - correct["random_init"].mean(0)
    rng = np.random.default_rng(0)
    boot = difference[rng.integers(0, len(difference), (resamples, len(difference)))].mean(1)
    low, high = np.percentile(boot, [2.5, 97.5])
    result = {
        "learning_rates": {arm: f"{lr:g}" for arm, lr in learning_rates.items()},
        "seeds": list(args.sst2_seeds),
        "mean_accuracy_difference": float(difference.mean()),
        "bootstrap_95_interval": [float(low), float(high)],
        "seeds_pretrained_ahead": sum(v["accuracy_difference"] > 0 for v in by_seed.values()),
        "by_seed": by_seed,
    }
    print(
        f"SST-2 paired: pretrained - random init = {difference.mean():+.4f} "
        f"(95% bootstrap interval {low:+.4f} .. {high:+.4f})",
        flush=True,
    )
    return result


def evaluate_sst2(pretrained, vocab_path, out, args):
    """The SST-2 comparison: both fine-tuned arms, the frozen-feature probe
    and the bag-of-words reference."""
    sst2 = finetune_sst2(pretrained, vocab_path, out / "sst2", args)
    sst2["paired"] = paired_sst2(
        out / "sst2",
        pretrained,
        vocab_path,
        {arm: sst2[arm]["best_learning_rate"] for arm in ("pretrained", "random_init")},
        args,
    )
    sst2["linear_probe_on_frozen_features"] = frozen_features_sst2(pretrained, args)
    sst2["bag_of_words_logistic_regression"] = bag_of_words_sst2(vocab_path, args)
    return {
        "sst2": sst2,
        "sst2_setup": (
            f"first {args.sst2_examples} SST-2 train sentences, {args.sst2_epochs:g} epochs, "
            f"batch 32, seq {args.max_seq_length}, seeds {args.sst2_seeds}, both arms on the "
            f"same vocabulary; dev accuracy (872) after the last epoch, mean over the seeds "
            f"at each arm's best lr of {args.sst2_lrs}"
        ),
    }


def sst2_only(args):
    """`--pretrained DIR`: the SST-2 comparison for an encoder pretrained
    earlier (e.g. `<output_dir>/pretrained` of a previous run), without
    pretraining again. Results go to `pretraining_sst2_eval_<examples>[_<tag>].json`."""
    from kerasbert.modeling.checkpoints import load_checkpoint

    if not SST2.is_dir():
        sys.exit(f"missing {SST2} (needs ../shared beside the repo)")
    checkpoint = load_checkpoint(args.pretrained)
    if checkpoint.backbone.num_layers != 2 or checkpoint.backbone.hidden_dim != 128:
        sys.exit(f"--pretrained {args.pretrained}: not a tiny (2 x 128) encoder; the random-init arm is tiny")
    out = Path(args.output_dir or tempfile.mkdtemp(prefix="bench_pretraining_sst2_"))
    results = {
        "pretrained": str(args.pretrained),
        "command": command_line(),
        "load_average_1_5_15min_at_start": [round(x, 2) for x in os.getloadavg()],
        **evaluate_sst2(args.pretrained, checkpoint.vocabulary_path, out, args),
    }
    print(f"wrote {write_results(results_stem(f'pretraining_sst2_eval_{args.sst2_examples}', args), results)}")


def rescore(args, parser):
    """`--rescore OUTPUT_DIR`: `paired_sst2` for the fine-tuned weights an
    earlier run saved, without fine-tuning again. Results go to
    `pretraining_sst2_paired[_<tag>].json`."""
    from kerasbert.modeling.checkpoints import load_checkpoint

    if len(args.sst2_lrs) != 1:
        parser.error("--rescore compares both arms at one learning rate: pass --sst2_lrs LR")
    pretrained = args.pretrained or str(Path(args.rescore) / "pretrained")
    sst2_dir = Path(args.rescore) / "sst2"
    try:
        paired = paired_sst2(
            sst2_dir,
            pretrained,
            load_checkpoint(pretrained).vocabulary_path,
            dict.fromkeys(("pretrained", "random_init"), args.sst2_lrs[0]),
            args,
        )
    except FileNotFoundError as e:
        parser.error(f"--rescore {args.rescore}: {e} (check --sst2_lrs and --sst2_seeds)")
    results = {"sst2_dir": str(sst2_dir), "pretrained": pretrained, "command": command_line(), "paired": paired}
    print(f"wrote {write_results(results_stem('pretraining_sst2_paired', args), results)}")


def throughput(argv):
    """`--throughput`: ours vs Hugging Face `BertForPreTraining`, each in its own process
    (`pretraining_speed.py`); writes `results/pretraining_speed.json` unless --quick or --json."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import pretraining_speed

    argv = [a for a in argv if a != "--throughput"]
    if "--json" not in argv and "--quick" not in argv:
        argv += ["--json", str(RESULTS / "pretraining_speed.json")]
    return pretraining_speed.main(argv)


def main():
    if "--throughput" in sys.argv[1:]:
        sys.exit(throughput(sys.argv[1:]))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--throughput",
        action="store_true",
        help="only the speed comparison: ours vs Hugging Face BertForPreTraining (BERT-tiny, 32 x 128, 30522 vocab), "
        "sequences/s and MFU, each in its own process; takes pretraining_speed.py's flags "
        "(--quick, --rounds, --steps, --json)",
    )
    p.add_argument("--minutes", type=float, default=15, help="training budget (<= 20)")
    p.add_argument("--corpus", default=str(SHARED / "data" / "wikitext2_raw" / "wiki.test.raw.lines.txt"))
    p.add_argument(
        "--vocab_size", type=int, default=8000, help="WordPiece vocabulary learned from the training articles"
    )
    p.add_argument("--vocab", default=None, help="use this vocab.txt instead of learning one (e.g. bert-base-uncased)")
    p.add_argument(
        "--batch_size", type=int, default=32, help="small batches: more updates in the budget at the same sequences/s"
    )
    p.add_argument("--max_seq_length", type=int, default=64)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--warmup_fraction", type=float, default=0.06)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--masked_lm_prob", type=float, default=0.15)
    p.add_argument(
        "--dupe_factor", type=int, default=5, help="pairings of the corpus per epoch (masks are fresh every epoch)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=12345,
        help="pretraining seed: initialisation, pairing, masking, dropout (the pretrain default)",
    )
    p.add_argument("--tag", default="", help="suffix of the results files, to keep several runs side by side")
    p.add_argument("--output_dir", default=None, help="default: a temporary folder")
    p.add_argument("--finetune_sst2", action="store_true")
    p.add_argument("--sst2_examples", type=int, default=8000)
    p.add_argument("--sst2_epochs", type=float, default=3)
    p.add_argument("--sst2_lrs", type=float, nargs="+", default=[3e-4, 1e-3])
    p.add_argument("--sst2_seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument(
        "--sst2_unlabelled",
        action="store_true",
        help="also pretrain on the text of the SST-2 training rows outside the "
        "labelled subset (see the module docstring)",
    )
    p.add_argument(
        "--sst2_unlabelled_from",
        type=int,
        default=None,
        help="first SST-2 training row whose text --sst2_unlabelled adds (default: "
        "--sst2_examples); e.g. 8000 to pretrain as the 8,000-label runs did "
        "and then fine-tune on all 67,349 labels",
    )
    p.add_argument("--sst2_phrases_per_document", type=int, default=8)
    p.add_argument(
        "--pretrained",
        default=None,
        help="skip pretraining: run the SST-2 comparison (implies --finetune_sst2) "
        "for this earlier run's <output_dir>/pretrained",
    )
    p.add_argument(
        "--rescore",
        default=None,
        metavar="OUTPUT_DIR",
        help="only the paired dev comparison, from the fine-tuned weights an earlier "
        "run left in OUTPUT_DIR/sst2 (its encoder: --pretrained, default "
        "OUTPUT_DIR/pretrained; one --sst2_lrs value; its --sst2_seeds)",
    )
    args = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.rescore:
        return rescore(args, p)
    if args.pretrained:
        return sst2_only(args)
    if args.minutes > 20:
        p.error("--minutes must be at most 20")
    for path in (args.corpus, args.vocab):
        if path and not os.path.exists(path):
            sys.exit(f"missing {path} (needs ../shared beside the repo)")
    out = Path(args.output_dir or tempfile.mkdtemp(prefix="bench_pretraining_"))
    out.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()

    articles = wikitext_articles(args.corpus)
    train_articles, heldout_articles = pdata.split_holdout(articles, 0.1)
    corpus_name = "wikitext2_raw/wiki.test.raw.lines.txt regrouped into articles: "
    corpus_name += f"{len(train_articles)} training / {len(heldout_articles)} held-out"
    stem = "pretraining"
    if args.sst2_unlabelled:
        first = args.sst2_examples if args.sst2_unlabelled_from is None else args.sst2_unlabelled_from
        extra = sst2_unlabelled_documents(first, args.sst2_phrases_per_document)
        corpus_name += (
            f"; plus the text of SST-2 train rows {first}+ "
            f"({sum(map(len, extra))} phrases, {len(extra)} pseudo-documents)"
        )
        train_articles = train_articles + extra
        stem = "pretraining_sst2_unlabelled"
    stem = results_stem(stem, args)
    train_file = write_bert_format(train_articles, out / "train_articles.txt")
    heldout_file = write_bert_format(heldout_articles, out / "heldout_articles.txt")
    start = time.perf_counter()
    if args.vocab:
        vocab_path = args.vocab
    else:
        vocab_path = str(out / "vocab.txt")
        vocab_lib.write_vocabulary(
            vocab_lib.learn_vocabulary(texts=[s for a in train_articles for s in a], vocab_size=args.vocab_size),
            vocab_path,
        )
    vocab_seconds = time.perf_counter() - start
    vocabulary = load_vocabulary(vocab_path)
    vocabulary_size = len(vocabulary)
    heldout_unk = vocab_lib.unk_rate(vocabulary, [s for a in heldout_articles for s in a])
    print(
        f"{len(train_articles)} training / {len(heldout_articles)} held-out articles; "
        f"vocabulary {vocabulary_size} ({vocab_seconds:.0f}s), held-out [UNK] rate "
        f"{heldout_unk:.4f}",
        flush=True,
    )

    matmul_rate = matmul_flops_per_second()
    print(f"float32 matmul: {matmul_rate / 1e9:.1f} GFLOP/s", flush=True)

    def flags(steps, output_dir):
        return pretrain.build_parser().parse_args(
            [
                str(a)
                for a in [
                    "--input_files",
                    train_file,
                    "--vocab_file",
                    vocab_path,
                    "--output_dir",
                    output_dir,
                    "--input_format",
                    "bert",
                    "--max_seq_length",
                    args.max_seq_length,
                    "--train_batch_size",
                    args.batch_size,
                    "--num_train_steps",
                    steps,
                    "--num_warmup_steps",
                    max(1, int(steps * args.warmup_fraction)),
                    "--learning_rate",
                    args.learning_rate,
                    "--dupe_factor",
                    args.dupe_factor,
                    "--dropout",
                    args.dropout,
                    "--masked_lm_prob",
                    args.masked_lm_prob,
                    "--save_checkpoints_steps",
                    100000,
                    "--log_steps",
                    250,
                    "--seed",
                    args.seed,
                ]
            ]
        )

    def trainer_for(steps, output_dir, verbose):
        a = flags(steps, output_dir)
        data = pretrain.pipeline_dataset_fn(a, [train_file], 0.0, "train", a.seed)
        config = pretrain.config_from_args(a, vocabulary_size)
        return pretrain.Pretrainer(config, data, verbose=verbose), a

    # Calibrate the step rate (compile excluded) to size the LR schedule.
    calibration, _ = trainer_for(40, out / "calibration", False)
    times = []
    calibration.train(on_step=lambda step, m: times.append(time.perf_counter()))
    rate = 30 / (times[-1] - times[9])
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
    train_instances = len(trainer.dataset_fn.instances())  # built once, for training
    # Held-out articles: fixed masks (own seed), one pass.
    eval_fn = pretrain.pipeline_dataset_fn(a, [heldout_file], 0.0, "train", a.seed + 1, num_epochs=1)
    evaluation = trainer.evaluate(eval_fn, steps=100000)
    # Baselines on exactly the evaluated held-out predictions.
    counts = np.zeros(vocabulary_size)
    nsp = []
    for _, labels, weights in eval_fn(trainer.config.micro_batch_size, 1, 0):
        np.add.at(counts, labels["mlm"].numpy()[weights["mlm"].numpy() > 0], 1)
        nsp += list(labels["nsp"].numpy())
    unigram = counts.max() / counts.sum()
    nsp_majority = max(np.mean(nsp), 1 - np.mean(nsp))

    per_sequence = training_flops_per_sequence(
        "tiny",
        vocabulary_size,
        args.max_seq_length,
        pretrain.data.default_max_predictions(args.max_seq_length, args.masked_lm_prob),
    )
    # Steady state: from step 10 on (the first steps include XLA compiles).
    sequences_per_second = (len(curve) - 10) * args.batch_size / (curve[-1][4] - curve[9][4])
    results = {
        "machine": {
            "cpus": os.cpu_count(),
            "matmul_gflops": matmul_rate / 1e9,
            "load_average_1_5_15min_at_start": [round(x, 2) for x in load_start],
            "load_average_1_5_15min_after_pretraining": [round(x, 2) for x in os.getloadavg()],
        },
        "setup": {
            "model": "tiny (2 layers, hidden 128)",
            "vocabulary": (
                f"{vocabulary_size} WordPiece learned from the pretraining corpus"
                if not args.vocab
                else f"{vocabulary_size} from {args.vocab}"
            ),
            "vocabulary_seconds": round(vocab_seconds, 1),
            "heldout_unk_rate": heldout_unk,
            "corpus": corpus_name,
            "train_instances_per_epoch": train_instances,
            "epochs": round(history["steps"] * args.batch_size / train_instances, 2),
            "max_seq_length": args.max_seq_length,
            "global_batch": args.batch_size,
            "learning_rate": args.learning_rate,
            "warmup_fraction": args.warmup_fraction,
            "masked_lm_prob": args.masked_lm_prob,
            "dropout": args.dropout,
            "command": command_line(),
            "dupe_factor": args.dupe_factor,
            "seed": args.seed,
            "steps": history["steps"],
            "minutes": round(history["seconds"] / 60, 2),
            "jit_compile": True,
        },
        "throughput": {
            "sequences_per_second": sequences_per_second,
            "model_gflops_per_second": sequences_per_second * per_sequence / 1e9,
            "fraction_of_matmul_rate": sequences_per_second * per_sequence / matmul_rate,
        },
        "train_last_window": history["final"],
        "heldout": {
            "mlm_accuracy": evaluation["mlm_accuracy"],
            "mlm_unigram_baseline": unigram,
            "mlm_baseline_token": vocabulary[int(counts.argmax())],
            "nsp_accuracy": evaluation["nsp_accuracy"],
            "nsp_chance": 0.5,
            "nsp_majority_baseline": nsp_majority,
            "mlm_loss": evaluation["mlm_loss"],
            "nsp_loss": evaluation["nsp_loss"],
            "sequences": evaluation["sequences"],
            "predictions": evaluation["predictions"],
        },
    }
    print(json.dumps(results, indent=2), flush=True)
    window = max(1, min(25, len(curve) // 10))
    steps_, losses, accs = [], [], []
    for i in range(window, len(curve) + 1, max(1, len(curve) // 300)):
        chunk = curve[i - window : i]
        steps_.append(chunk[-1][0])
        losses.append(float(np.mean([c[1] for c in chunk])))
        accs.append(float(np.mean([c[2] for c in chunk])))
    loss_curve_png(
        RESULTS / f"{stem}_loss.png",
        steps_,
        losses,
        accs,
        f"BERT-tiny pretraining on WikiText-2 articles{' + SST-2 text' if args.sst2_unlabelled else ''}, "
        f"{history['steps']} steps x "
        f"{args.batch_size} seqs of {args.max_seq_length}, {results['setup']['minutes']} min "
        f"on {os.cpu_count()} CPU cores; held-out MLM acc {evaluation['mlm_accuracy']:.3f} "
        f"(unigram {unigram:.3f})",
    )
    pretrained = trainer.save_pretrained(str(out / "pretrained"))
    if args.finetune_sst2:
        results.update(evaluate_sst2(pretrained, vocab_path, out, args))
        results["machine"]["load_average_1_5_15min_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"wrote {write_results(stem, results)} and {RESULTS / (stem + '_loss.png')}")


if __name__ == "__main__":
    main()
