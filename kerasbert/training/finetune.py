"""Fine-tuning BERT for classification or regression: `python -m kerasbert.train`.

Reads TSV/CSV files, tokenizes in the tf.data pipeline with the same layer the
export contains, trains with BERT's optimiser, evaluates each epoch with the
task's metrics, keeps resumable checkpoints and TensorBoard logs, and exports
a raw-string SavedModel in TF Serving's layout.

With no flags it fine-tunes a `tiny` BERT on the sample dataset shipped in
`kerasbert/data/sample/` (a few minutes on 2 CPU cores).
"""

import argparse
import json
import os
import sys
import time

from kerasbert import cli

SAMPLE_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "sample")

EXAMPLES = """examples:
  python -m kerasbert.train                       # sample data, tiny model
  python -m kerasbert.train --train_file ../shared/data/glue_sst2/train.tsv \\
      --dev_file ../shared/data/glue_sst2/dev.tsv \\
      --vocab ../shared/data/vocab/bert-base-uncased/vocab.txt \\
      --text_column sentence --label_column label --model_name sst2
  python -m kerasbert.train --train_file ../shared/data/glue_stsb/train.tsv \\
      --dev_file ../shared/data/glue_stsb/dev.tsv --task regression \\
      --text_column sentence1 --text_pair_column sentence2 --label_column score \\
      --init_checkpoint path/to/bert_checkpoint --model_name stsb
"""


def build_parser(prog="python -m kerasbert.train finetune"):
    p = cli.ArgumentParser(
        prog=prog,
        description="Fine-tune BERT for text (pair) classification or regression "
        "and export a raw-string SavedModel for TF Serving. With no flags, runs "
        "on the sample dataset shipped in the package.",
        epilog=EXAMPLES,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(
            prog, max_help_position=34
        ),
    )
    d = p.add_argument_group("data")
    d.add_argument("--train_file", help="training TSV/CSV (default: the shipped sample)")
    d.add_argument("--dev_file", help="evaluation TSV/CSV, scored after every epoch")
    d.add_argument("--format", default="auto", choices=["auto", "tsv", "csv"],
                   help="file format; auto: .csv is CSV, anything else TSV (default: auto)")
    d.add_argument("--no_header", action="store_true",
                   help="files have no header row; give columns as 0-based indices")
    d.add_argument("--text_column", default="sentence",
                   help="column with the text: header name or 0-based index (default: sentence)")
    d.add_argument("--text_pair_column", default=None,
                   help="column with the second text, for sentence-pair tasks")
    d.add_argument("--label_column", default="label",
                   help="column with the label or score (default: label)")
    d.add_argument("--task", default="classification", choices=["classification", "regression"],
                   help="classification (labels are class names) or regression (labels are numbers)")
    d.add_argument("--labels", default=None,
                   help="comma-separated class names in output order (default: sorted "
                   "distinct training labels, numeric order for integers)")
    d.add_argument("--max_train_examples", type=int, default=None,
                   help="use only the first N training rows (quick experiments)")

    m = p.add_argument_group("model")
    m.add_argument("--init_checkpoint", default=None,
                   help="start from pretrained weights: a Hugging Face BERT folder, a Google "
                   "TF1 checkpoint folder, a keras-hub preset folder, or a kerasbert pretrain "
                   "output (the vocab comes with it)")
    m.add_argument("--vocab", default=None,
                   help="BERT vocab.txt (default: the checkpoint's, or the sample vocab "
                   "with the sample data)")
    m.add_argument("--cased", action="store_true",
                   help="keep case and accents (cased vocabularies); default: lower-case")
    m.add_argument("--model_size", default="tiny",
                   choices=["tiny", "mini", "small", "medium", "base", "large", "custom"],
                   help="encoder size when training from scratch (Google's table; default: tiny)")
    m.add_argument("--num_layers", type=int, help="override the number of layers")
    m.add_argument("--hidden_dim", type=int, help="override the hidden size")
    m.add_argument("--num_heads", type=int, help="override attention heads (default hidden/64)")
    m.add_argument("--intermediate_dim", type=int, help="override the FFN size (default 4*hidden)")
    m.add_argument("--sequence_length", type=int, default=128,
                   help="tokens per example after packing (default: 128)")
    m.add_argument("--dropout", type=float, default=0.1, help="dropout rate (default: 0.1)")
    m.add_argument("--pooling", default="cls", choices=["cls", "mean"],
                   help="what the head reads: cls = BERT's pooler on [CLS] (Google's head, "
                        "default); mean = the mean of the last layer's token vectors")

    t = p.add_argument_group("training")
    t.add_argument("--batch_size", type=int, default=32, help="global batch size (default: 32)")
    t.add_argument("--epochs", type=float, default=3,
                   help="training epochs; fractions allowed (default: 3)")
    t.add_argument("--learning_rate", type=float, default=None,
                   help="peak learning rate (default: 5e-5 with --init_checkpoint, 5e-4 from scratch)")
    t.add_argument("--warmup_proportion", type=float, default=0.1,
                   help="fraction of steps with linear warmup (default: 0.1)")
    t.add_argument("--weight_decay", type=float, default=0.01,
                   help="AdamW weight decay, not applied to LayerNorm/bias (default: 0.01)")
    t.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    t.add_argument("--strategy", default="default",
                   choices=["default", "mirrored", "multi_worker", "tpu", "one_device"],
                   help="tf.distribute strategy; multi_worker reads TF_CONFIG (default: default)")
    t.add_argument("--tpu", default=None, help="TPU address for --strategy tpu")
    t.add_argument("--jit_compile", default="auto", choices=["auto", "true", "false"],
                   help="XLA-compile the train step (default: auto = Keras decides)")

    o = p.add_argument_group("output")
    o.add_argument("--output_dir", default=os.path.join("runs", "kerasbert"),
                   help="checkpoints, TensorBoard logs and results.json (default: runs/kerasbert); "
                   "an interrupted run resumes from here")
    o.add_argument("--export_dir", default="exports",
                   help="TF Serving base folder; the model goes to <export_dir>/<model_name>/<version>/")
    o.add_argument("--model_name", default="kerasbert", help="served model name (default: kerasbert)")
    o.add_argument("--no_export", action="store_true", help="skip the SavedModel export")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _check_args(args):
    """Fills defaults and validates flags; raises cli.UsageError."""
    using_sample = args.train_file is None
    if using_sample:
        if args.dev_file is not None:
            raise cli.UsageError("--dev_file given without --train_file")
        args.train_file = os.path.join(SAMPLE_DIR, "train.tsv")
        args.dev_file = os.path.join(SAMPLE_DIR, "dev.tsv")
        if args.vocab is None and args.init_checkpoint is None:
            args.vocab = os.path.join(SAMPLE_DIR, "vocab.txt")
        if args.sequence_length == 128:  # the sample's sentences are short
            args.sequence_length = 48
    for flag in ("train_file", "dev_file", "vocab"):
        path = getattr(args, flag)
        if path is not None and not os.path.isfile(path):
            raise cli.UsageError(f"--{flag}: no such file: {path}")
    if args.init_checkpoint is not None and not os.path.exists(args.init_checkpoint):
        raise cli.UsageError(f"--init_checkpoint: no such file or folder: {args.init_checkpoint}")
    if args.vocab is None and args.init_checkpoint is None:
        raise cli.UsageError(
            "no vocabulary: pass --vocab path/to/vocab.txt or --init_checkpoint "
            "(learn one with `python -m kerasbert.train vocab`)"
        )
    for flag, low in (("batch_size", 1), ("sequence_length", 3)):
        if getattr(args, flag) < low:
            raise cli.UsageError(f"--{flag} must be at least {low}")
    if args.epochs <= 0:
        raise cli.UsageError("--epochs must be positive")
    if not 0 <= args.warmup_proportion < 1:
        raise cli.UsageError("--warmup_proportion must be in [0, 1)")
    if args.task == "regression" and args.labels:
        raise cli.UsageError("--labels is for classification; drop it or use --task classification")
    if args.learning_rate is None:
        args.learning_rate = 5e-5 if args.init_checkpoint else 5e-4
    return using_sample


def _read(args, path):
    from kerasbert.data import tables

    columns = tables.Columns(args.text_column, args.text_pair_column, args.label_column)
    try:
        return tables.read_examples(path, columns, fmt=args.format, header=not args.no_header)
    except tables.TableError as e:
        raise cli.UsageError(str(e)) from e


def _look_like_scores(names):
    """True when the distinct labels are numbers and some are not integers."""
    try:
        values = [float(n) for n in names]
    except ValueError:
        return False
    return any(v != int(v) for v in values)


def _targets(args, train, dev):
    """Class names and encoded labels; raises UsageError on mismatches."""
    from kerasbert.data import tables

    try:
        if args.task == "classification":
            given = args.labels.split(",") if args.labels else None
            names = tables.class_names_from_labels(train.labels, given)
            if not given and _look_like_scores(names):
                raise cli.UsageError(
                    f"labels such as {names[1]!r} look like real-valued scores; use "
                    "--task regression (or pass --labels to treat them as classes)"
                )
            if len(names) < 2:
                raise cli.UsageError(
                    f"only one class ({names}) in {train.path}; check --label_column"
                )
        else:
            names = []
        y_train = tables.encode_labels(train.labels, args.task, names)
        y_dev = tables.encode_labels(dev.labels, args.task, names) if dev else None
    except tables.TableError as e:
        raise cli.UsageError(str(e)) from e
    return names, y_train, y_dev


def _dev_metrics(model, features_ds, y_true, task):
    """The task's metrics of `model` on the dev set."""
    from kerasbert.training import metrics as M

    y = model.predict(features_ds, verbose=0)
    if task.kind == "classification":
        return M.classification_metrics(y_true, y.argmax(-1), len(task.class_names))
    return M.regression_metrics(y_true, y.reshape(-1))


def _dev_callback(model, features_ds, y_true, task, log_dir, history):
    """Keras callback scoring the dev set after every epoch: printed, added to
    the epoch logs as `dev_*`, written to TensorBoard and appended to `history`."""
    import keras
    import tensorflow as tf

    writer = tf.summary.create_file_writer(os.path.join(log_dir, "dev"))

    def on_epoch_end(epoch, logs):
        result = _dev_metrics(model, features_ds, y_true, task)
        history.append(result)
        print(f"epoch {epoch + 1} dev: " + " ".join(f"{k}={v:.4f}" for k, v in result.items()), flush=True)
        if logs is not None:
            logs.update({f"dev_{k}": v for k, v in result.items()})
        with writer.as_default():
            for k, v in result.items():
                tf.summary.scalar(f"epoch_{k}", v, step=epoch)
        writer.flush()

    return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)


def _strategy(args):
    from kerasbert.training.distribute import get_strategy

    try:
        return get_strategy(args.strategy, tpu=args.tpu)
    except ValueError as e:
        raise cli.UsageError(f"--strategy: {e}") from e


def run(args):
    """Fine-tunes and exports; returns a results dict (also in results.json)."""
    using_sample = _check_args(args)
    started = time.time()
    import keras
    import numpy as np

    from kerasbert.data import tables
    from kerasbert.export import export_classifier
    from kerasbert.modeling import build_encoder
    from kerasbert.preprocessing import BertPreprocessor
    from kerasbert.tasks import TaskSpec, build_classifier
    from kerasbert.training.optimization import create_optimizer

    from kerasbert.training.distribute import cleanup_write_dir, is_chief, write_dir

    # Multi-worker and TPU strategies must be created before any other op runs.
    strategy = _strategy(args)
    if using_sample:
        print(f"no --train_file: fine-tuning on the sample data in {SAMPLE_DIR}")
    keras.utils.set_random_seed(args.seed)

    checkpoint = None
    if args.init_checkpoint:
        from kerasbert.modeling.checkpoints import load_checkpoint

        try:
            checkpoint = load_checkpoint(args.init_checkpoint)
        except (ValueError, FileNotFoundError) as e:
            raise cli.UsageError(f"--init_checkpoint: {e}") from e
    vocab = args.vocab or checkpoint.vocabulary_path
    lowercase = not args.cased
    if checkpoint is not None and not args.cased:
        lowercase = checkpoint.lowercase
    try:
        preprocessor = BertPreprocessor(vocab, lowercase=lowercase, sequence_length=args.sequence_length)
    except ValueError as e:
        raise cli.UsageError(f"--vocab: {e}") from e

    train = _read(args, args.train_file)
    if args.max_train_examples:
        train = tables.Examples(
            train.texts[: args.max_train_examples],
            train.text_pairs[: args.max_train_examples] if train.text_pairs else None,
            train.labels[: args.max_train_examples],
            train.path,
        )
    if train.labels is None:
        raise cli.UsageError(f"--label_column: {train.path} has no labels")
    dev = _read(args, args.dev_file) if args.dev_file else None
    class_names, y_train, y_dev = _targets(args, train, dev)
    task = TaskSpec(args.task, class_names, text_pair=train.text_pairs is not None)

    batch_size = args.batch_size
    steps_per_epoch = max(1, len(train) // batch_size)
    total_steps = max(1, int(round(steps_per_epoch * args.epochs)))
    epochs = int(np.ceil(total_steps / steps_per_epoch))
    warmup_steps = int(total_steps * args.warmup_proportion)

    with strategy.scope():
        if checkpoint is not None:
            encoder = checkpoint.backbone
            if encoder.max_sequence_length < args.sequence_length:
                raise cli.UsageError(
                    f"--sequence_length {args.sequence_length} exceeds the checkpoint's "
                    f"max_sequence_length {encoder.max_sequence_length}"
                )
        else:
            try:
                encoder = build_encoder(
                    args.model_size,
                    preprocessor.vocabulary_size,
                    num_layers=args.num_layers,
                    hidden_dim=args.hidden_dim,
                    num_heads=args.num_heads,
                    intermediate_dim=args.intermediate_dim,
                    dropout=args.dropout,
                    max_sequence_length=max(512, args.sequence_length),
                )
            except ValueError as e:
                raise cli.UsageError(f"--model_size/--num_layers/--hidden_dim: {e}") from e
        model = build_classifier(encoder, task, dropout=args.dropout, pooling=args.pooling)
        optimizer = create_optimizer(
            args.learning_rate, total_steps, warmup_steps, weight_decay=args.weight_decay
        )
        if task.kind == "classification":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            train_metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        else:
            loss = keras.losses.MeanSquaredError()
            train_metrics = [keras.metrics.MeanAbsoluteError(name="mae")]
        jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
        model.compile(optimizer=optimizer, loss=loss, metrics=train_metrics, jit_compile=jit)

    train_ds = tables.make_dataset(
        train, preprocessor, y_train, batch_size, shuffle=True, seed=args.seed,
        drop_remainder=len(train) >= batch_size,
    ).repeat()
    # Only the chief keeps what it writes; BackupAndRestore coordinates
    # multi-worker backups itself.
    output_dir = write_dir(args.output_dir)
    os.makedirs(output_dir, exist_ok=True)
    log_dir = os.path.join(output_dir, "logs")
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(args.output_dir, "backup")),
        keras.callbacks.TensorBoard(log_dir, update_freq=max(1, steps_per_epoch // 10)),
    ]
    dev_history = []
    if dev is not None:
        dev_features = tables.make_dataset(dev, preprocessor, None, batch_size)
        callbacks.insert(0, _dev_callback(model, dev_features, y_dev, task, log_dir, dev_history))

    print(
        f"task={task.kind} classes={class_names or '-'} pair={task.text_pair} "
        f"train={len(train)} dev={len(dev) if dev else 0} encoder="
        f"{encoder.num_layers}x{encoder.hidden_dim} params={model.count_params():,} "
        f"steps={total_steps} (warmup {warmup_steps}) lr={args.learning_rate:g} "
        f"strategy={type(strategy).__name__}",
        flush=True,
    )
    model.fit(
        train_ds,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        shuffle=False,  # tf.data already shuffles
        # A live bar on a terminal; one line per epoch in logs and CI.
        verbose=0 if args.quiet else (1 if sys.stdout.isatty() else 2),
    )
    weights_path = os.path.join(output_dir, "model.weights.h5")
    model.save_weights(weights_path)

    results = {
        "task": task.kind,
        "class_names": class_names,
        "train_examples": len(train),
        "dev_examples": len(dev) if dev else 0,
        "steps": total_steps,
        "train_seconds": round(time.time() - started, 1),
        "weights": weights_path,
    }
    if dev is not None:
        # (No epoch ran when a resumed run had already finished them all.)
        results["dev_metrics"] = (
            dev_history[-1] if dev_history else _dev_metrics(model, dev_features, y_dev, task)
        )
    if not args.no_export and is_chief():
        meta = {
            "dev_metrics": results.get("dev_metrics"),
            "train_file": os.path.basename(args.train_file),
            "encoder": {"num_layers": encoder.num_layers, "hidden_dim": encoder.hidden_dim},
        }
        results["export"] = export_classifier(
            preprocessor, model, task, args.export_dir, args.model_name, metadata=meta
        )
    with open(os.path.join(output_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    cleanup_write_dir(args.output_dir, output_dir)
    # In-memory objects for callers in Python (not part of results.json).
    results.update(_model=model, _preprocessor=preprocessor, _task=task)
    return results


def main(args):
    results = run(args)
    if "dev_metrics" in results:
        print("dev metrics: " + " ".join(f"{k}={v:.4f}" for k, v in results["dev_metrics"].items()))
    print(f"finished in {results['train_seconds']:.0f}s; weights: {results['weights']}")
    if "export" in results:
        base = os.path.dirname(results["export"])
        print(f"exported SavedModel: {results['export']}")
        print(
            "serve it: python -m kerasbert.serve --port 8500 "
            f"--model_name {os.path.basename(base)} --model_base_path {base}"
        )
    return 0
