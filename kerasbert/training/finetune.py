"""Fine-tuning BERT on a task: `python -m kerasbert.train [--task NAME]`.

A generic driver over the tasks of `kerasbert.tasks` (classification,
regression, ...): the task reads its files, learns what it needs (class
names...), builds its head, loss and metrics, scores the dev set after every
epoch and says what its export serves. The driver tokenizes in the tf.data
pipeline with the same layer the export contains, trains with BERT's
optimiser, keeps resumable checkpoints and TensorBoard logs, saves what a
re-export needs (`run.json`, `vocab.txt`, `model.weights.h5`) and exports a
raw-string SavedModel in TF Serving's layout.

With no flags it fine-tunes a `tiny` BERT on the sample dataset shipped in
`kerasbert/data/sample/` (a few minutes on 2 CPU cores).

From Python, without argparse:

    from kerasbert.training.finetune import FinetuneConfig, finetune
    result = finetune(FinetuneConfig(
        task="classification", task_options={"label_names": ["negative", "positive"]},
        train_file="train.tsv", dev_file="dev.tsv", vocab="vocab.txt",
        model_name="sst2", epochs=1))
    result.results["dev_metrics"], result.model, result.export

The run folder (`--output_dir`, default `runs/<model_name>`):

    run.json            what a re-export needs (see `RUN_SPEC_VERSION`):
                        {"format", "task", "task_config", "preprocessor":
                         {"vocabulary": "vocab.txt", "lowercase",
                          "sequence_length", "truncation"},
                         "encoder": Keras-serialised backbone (class + get_config(),
                          dtype float32 whatever --mixed_precision trained it),
                         "sequence_length", "model_name", "dropout",
                         "weights": "model.weights.h5", "export_extra", "config"}
    vocab.txt           the vocabulary, copied
    model.weights.h5    the fine-tuned weights (written at the end)
    results.json        the run's results
    backup/             Keras BackupAndRestore (while a run is unfinished)
    logs/               TensorBoard

`python -m kerasbert.export --run_dir runs/NAME` re-exports it (`load_run`).
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any

from kerasbert import cli, contract
from kerasbert.tasks.base import Task, TaskDataError, get_task, task_names

SAMPLE_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "sample")
DEFAULT_SEQUENCE_LENGTH = 128
SAMPLE_SEQUENCE_LENGTH = 48  # the sample's sentences are short
RUN_SPEC = "run.json"
RUN_VOCAB = "vocab.txt"
RUN_WEIGHTS = "model.weights.h5"
RUN_SPEC_VERSION = 1
JIT_CHOICES = ("auto", "true", "false")
# --mixed_precision: the Keras dtype policy of the encoder and head (weights stay float32, the logits
# are float32). bfloat16 pays off on CPUs with AVX512_BF16 or AMX; float16 is for GPUs.
MIXED_PRECISION = {"none": None, "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
# Encoder config entries that do not change which weights fit.
_NON_ARCHITECTURE = ("name", "trainable", "dtype", "dropout")

EXAMPLES = """examples:
  python -m kerasbert.train                       # sample data, tiny model
  python -m kerasbert.train --train_file ../shared/data/glue_sst2/train.tsv \\
      --dev_file ../shared/data/glue_sst2/dev.tsv \\
      --vocab ../shared/data/vocab/bert-base-uncased/vocab.txt \\
      --text_column sentence --label_column label \\
      --label_names negative,positive --model_name sst2
  python -m kerasbert.train --train_file ../shared/data/glue_stsb/train.tsv \\
      --dev_file ../shared/data/glue_stsb/dev.tsv --task regression \\
      --text_column sentence1 --text_pair_column sentence2 --label_column score \\
      --init_checkpoint path/to/bert_checkpoint --model_name stsb
  python -m kerasbert.export --run_dir runs/sst2  # re-export a finished run
"""


class ConfigError(ValueError):
    """A problem with the configuration or the files; the message names the
    flag (the `FinetuneConfig` field of the same name) to fix."""


@dataclasses.dataclass
class FinetuneConfig:
    """Everything a fine-tuning run needs (the flags of `python -m kerasbert.train`).

    Attributes:
        task: a registered task name (`kerasbert.tasks.task_names(True)`) or
            a `Task` instance.
        task_options: the task's options when `task` is a name (the fields
            of its class, e.g. `text_column`, `label_names`).
        train_file, dev_file: the task's files; no `train_file`: the sample
            data shipped in the package (with its vocab and 48 tokens).
        max_train_examples: use only the first N training examples.
        max_dev_examples: score only the first N dev examples (dev sentences,
            questions).
        init_checkpoint: pretrained weights (any format `load_checkpoint`
            reads); else a random encoder of `model_size`.
        vocab: vocab.txt (default: the checkpoint's).
        cased: keep case and accents.
        model_size, num_layers, hidden_dim, num_heads, intermediate_dim: the
            encoder when training from scratch.
        sequence_length: tokens per example (default 128, or the task's
            `default_sequence_length`, e.g. 384 for question answering; 48
            on the sample).
        dropout: dropout rate of encoder and head.
        batch_size, epochs, learning_rate (default 5e-5 with a checkpoint,
            5e-4 from scratch), warmup_proportion, weight_decay, seed: training.
        strategy, tpu: `kerasbert.training.distribute.get_strategy`.
        jit_compile: "auto", True or False.
        mixed_precision: "none", "bfloat16" or "float16": train (and score
            dev) with that compute dtype; the weights, the run folder and the
            export stay float32.
        output_dir: the run folder (default `runs/<model_name>`).
        export_dir, model_name, export: the SavedModel export.
        verbose: Keras fit verbosity (default: a bar on a terminal, else a
            line per epoch); 0 is quiet.
        progress_seconds: when stdout is not a terminal (and `verbose` is
            not 0), a line with step, loss, steps/s and ETA this often.
    """

    task: Any = contract.CLASSIFICATION
    task_options: dict = dataclasses.field(default_factory=dict)
    train_file: str | None = None
    dev_file: str | None = None
    max_train_examples: int | None = None
    max_dev_examples: int | None = None
    init_checkpoint: str | None = None
    vocab: str | None = None
    cased: bool = False
    model_size: str = "tiny"
    num_layers: int | None = None
    hidden_dim: int | None = None
    num_heads: int | None = None
    intermediate_dim: int | None = None
    sequence_length: int | None = None
    dropout: float = 0.1
    batch_size: int = 32
    epochs: float = 3
    learning_rate: float | None = None
    warmup_proportion: float = 0.1
    weight_decay: float = 0.01
    seed: int = 42
    strategy: str = "default"
    tpu: str | None = None
    jit_compile: Any = "auto"
    mixed_precision: str = "none"
    output_dir: str | None = None
    export_dir: str = "exports"
    model_name: str = "kerasbert"
    export: bool = True
    verbose: int | None = None
    progress_seconds: float = 30.0

    def summary(self):
        """The config as JSON-able data (a `Task` instance as its name and options)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if isinstance(self.task, Task):
            data["task"], data["task_options"] = self.task.name, self.task.get_config()
        return json.loads(json.dumps(data, default=str))


@dataclasses.dataclass
class FinetuneResult:
    """What `finetune` returns.

    Attributes:
        results: the JSON-able results (also `<run_dir>/results.json`):
            `task`, the task's metadata (e.g. `class_names`),
            `train_examples`, `dev_examples`, `steps`, `train_seconds`,
            `weights`, `dev_metrics` (with a dev file), `export` (when
            exported), `run_dir`.
        model, preprocessor, task, encoder: the trained objects.
        run_dir: the run folder.
        export: the export's version folder, or None.
    """

    results: dict
    model: Any = None
    preprocessor: Any = None
    task: Any = None
    encoder: Any = None
    run_dir: str = ""
    export: str | None = None

    def __getitem__(self, key):
        """`result["dev_metrics"]`: a JSON result (what `run` returned before)."""
        return self.results[key]


# --------------------------------------------------------------------- flags


class _FirstDefinitionWins:
    """An argparse group that adds a flag the parser has already (a flag
    shared by several tasks' `add_arguments`, e.g. `--format`) only once:
    the first definition stays, its `choices` grow by the later ones' (each
    task checks its own values in `from_args`) and their help is appended."""

    def __init__(self, parser, task):
        self._parser, self._task, self._group = parser, task, None

    def add_argument(self, *names, **kwargs):
        existing = next(
            (self._parser._option_string_actions[n] for n in names if n in self._parser._option_string_actions), None
        )
        if existing is None:
            if self._group is None:  # (no empty groups in --help)
                self._group = self._parser.add_argument_group(
                    f"{self._task} task", "(flags shared with a task above are listed there)"
                )
            return self._group.add_argument(*names, **kwargs)
        new_choices = [c for c in kwargs.get("choices") or () if c not in (existing.choices or ())]
        if existing.choices is not None and new_choices:
            existing.choices = [*existing.choices, *new_choices]
            if kwargs.get("help"):
                existing.help = f"{existing.help}; {self._task}: {kwargs['help']}"
        return existing


def build_parser(prog="python -m kerasbert.train finetune"):
    from kerasbert.modeling.encoder import ENCODER_SIZES
    from kerasbert.training.distribute import STRATEGIES

    tasks = task_names(trainable_only=True)
    p = cli.ArgumentParser(
        prog=prog,
        description="Fine-tune BERT on a task (" + ", ".join(tasks) + ") and export a "
        "raw-string SavedModel for TF Serving. With no flags, runs on the sample "
        "dataset shipped in the package.",
        epilog=EXAMPLES,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, max_help_position=34),
    )
    d = p.add_argument_group("data")
    d.add_argument(
        "--task", default=tasks[0], choices=tasks, help="; ".join(f"{n}: {get_task(n).description}" for n in tasks)
    )
    d.add_argument("--train_file", help="training file (default: the shipped sample)")
    d.add_argument("--dev_file", help="evaluation file, scored after every epoch")
    d.add_argument(
        "--max_train_examples",
        type=int,
        default=None,
        help="use only the first N training examples (quick experiments)",
    )
    d.add_argument(
        "--max_dev_examples",
        type=int,
        default=None,
        help="score only the first N dev examples (quick experiments; the metrics are then of those N)",
    )
    for name in tasks:
        get_task(name).add_arguments(_FirstDefinitionWins(p, name))

    m = p.add_argument_group("model")
    m.add_argument(
        "--init_checkpoint",
        default=None,
        help="start from pretrained weights: a Hugging Face BERT folder, a Google "
        "TF1 checkpoint folder, a keras-hub preset folder, or a kerasbert pretrain "
        "output (the vocab comes with it)",
    )
    m.add_argument(
        "--vocab",
        default=None,
        help="BERT vocab.txt (default: the checkpoint's, or the sample vocab with the sample data)",
    )
    m.add_argument(
        "--cased", action="store_true", help="keep case and accents (cased vocabularies); default: lower-case"
    )
    m.add_argument(
        "--model_size",
        default="tiny",
        choices=[*ENCODER_SIZES, "custom"],
        help="encoder size when training from scratch (Google's table; default: tiny)",
    )
    m.add_argument("--num_layers", type=int, help="override the number of layers")
    m.add_argument("--hidden_dim", type=int, help="override the hidden size")
    m.add_argument("--num_heads", type=int, help="override attention heads (default hidden/64)")
    m.add_argument("--intermediate_dim", type=int, help="override the FFN size (default 4*hidden)")
    m.add_argument(
        "--sequence_length",
        type=int,
        default=None,
        help=f"tokens per example after packing (default: {DEFAULT_SEQUENCE_LENGTH}; 384 for question_answering; "
        f"{SAMPLE_SEQUENCE_LENGTH} on the sample data)",
    )
    m.add_argument("--dropout", type=float, default=0.1, help="dropout rate (default: 0.1)")

    t = p.add_argument_group("training")
    t.add_argument("--batch_size", type=int, default=32, help="global batch size (default: 32)")
    t.add_argument("--epochs", type=float, default=3, help="training epochs; fractions allowed (default: 3)")
    t.add_argument(
        "--learning_rate",
        type=float,
        default=None,
        help="peak learning rate (default: 5e-5 with --init_checkpoint, 5e-4 from scratch)",
    )
    t.add_argument(
        "--warmup_proportion", type=float, default=0.1, help="fraction of steps with linear warmup (default: 0.1)"
    )
    t.add_argument(
        "--weight_decay",
        type=float,
        default=0.01,
        help="AdamW weight decay, not applied to LayerNorm/bias (default: 0.01)",
    )
    t.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    t.add_argument(
        "--strategy",
        default="default",
        choices=STRATEGIES,
        help="tf.distribute strategy; multi_worker reads TF_CONFIG (default: default)",
    )
    t.add_argument("--tpu", default=None, help="TPU address for --strategy tpu")
    t.add_argument(
        "--jit_compile",
        default="auto",
        choices=JIT_CHOICES,
        help="XLA-compile the train step (default: auto = Keras decides)",
    )
    t.add_argument(
        "--mixed_precision",
        default="none",
        choices=list(MIXED_PRECISION),
        help="compute dtype of training: bfloat16 for CPUs with AVX512_BF16/AMX, float16 for GPUs; weights "
        "and the export stay float32 (default: none)",
    )

    o = p.add_argument_group("output")
    o.add_argument(
        "--output_dir",
        default=None,
        help="checkpoints, TensorBoard logs, run.json, weights and results.json "
        "(default: runs/<model_name>); an interrupted run resumes from here",
    )
    o.add_argument(
        "--export_dir",
        default="exports",
        help="TF Serving base folder; the model goes to <export_dir>/<model_name>/<version>/",
    )
    o.add_argument("--model_name", default="kerasbert", help="served model name (default: kerasbert)")
    o.add_argument("--no_export", action="store_true", help="skip the SavedModel export")
    o.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    o.add_argument(
        "--progress_seconds",
        type=float,
        default=30.0,
        help="when stdout is not a terminal: a line with step, loss, steps/s and ETA this often "
        "(default: 30; on a terminal Keras shows its bar)",
    )
    cli.add_verbose_flag(o)
    return p


def config_from_args(args):
    """The `FinetuneConfig` of parsed flags (the task built by its `from_args`).

    Raises:
        TaskDataError: the task's flags are inconsistent.
    """
    names = {f.name for f in dataclasses.fields(FinetuneConfig)} - {"task", "task_options"}
    options = {name: getattr(args, name) for name in names if hasattr(args, name)}
    options["export"] = not getattr(args, "no_export", False)
    options["verbose"] = 0 if getattr(args, "quiet", False) else None
    return FinetuneConfig(task=get_task(args.task).from_args(args), **options)


# ------------------------------------------------------------------- checks


def _resolve(config):
    """A copy of `config` with defaults filled in, validated; raises ConfigError.

    Returns:
        `(config, task, using_sample)`.
    """
    c = dataclasses.replace(config)
    using_sample = c.train_file is None
    if using_sample:
        if c.dev_file is not None:
            raise ConfigError("--dev_file given without --train_file")
        c.train_file = os.path.join(SAMPLE_DIR, "train.tsv")
        c.dev_file = os.path.join(SAMPLE_DIR, "dev.tsv")
        if c.vocab is None and c.init_checkpoint is None:
            c.vocab = os.path.join(SAMPLE_DIR, "vocab.txt")
        if c.sequence_length is None:
            c.sequence_length = SAMPLE_SEQUENCE_LENGTH
    if c.sequence_length is None:
        task_class = type(c.task) if isinstance(c.task, Task) else get_task(c.task)
        c.sequence_length = task_class.default_sequence_length or DEFAULT_SEQUENCE_LENGTH
    for flag in ("train_file", "dev_file", "vocab"):
        path = getattr(c, flag)
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"--{flag}: no such file: {path}")
    if c.init_checkpoint is not None and not os.path.exists(c.init_checkpoint):
        raise ConfigError(f"--init_checkpoint: no such file or folder: {c.init_checkpoint}")
    if c.vocab is None and c.init_checkpoint is None:
        raise ConfigError(
            "no vocabulary: pass --vocab path/to/vocab.txt or --init_checkpoint "
            "(learn one with `python -m kerasbert.train vocab`)"
        )
    for flag, low in (("batch_size", 1), ("sequence_length", 3)):
        if getattr(c, flag) < low:
            raise ConfigError(f"--{flag} must be at least {low}")
    if c.epochs <= 0:
        raise ConfigError("--epochs must be positive")
    if c.progress_seconds < 0:
        raise ConfigError(f"--progress_seconds must be >= 0, got {c.progress_seconds:g}")
    if not 0 <= c.warmup_proportion < 1:
        raise ConfigError("--warmup_proportion must be in [0, 1)")
    if c.max_train_examples is not None and c.max_train_examples < 1:
        raise ConfigError("--max_train_examples must be at least 1")
    if c.max_dev_examples is not None and c.max_dev_examples < 1:
        raise ConfigError("--max_dev_examples must be at least 1")
    name = c.model_name
    if not name or os.sep in name or name.startswith(".") or (os.altsep and os.altsep in name):
        raise ConfigError(f"--model_name must be a plain folder name, got {name!r}")
    if c.output_dir is None:
        c.output_dir = os.path.join("runs", name)
    if os.path.exists(c.output_dir) and not os.path.isdir(c.output_dir):
        raise ConfigError(f"--output_dir: {c.output_dir} is a file, not a folder")
    if c.export:
        from kerasbert.export.saved_model import ExportError, check_export_dir

        try:
            check_export_dir(c.export_dir, name)
        except ExportError as e:
            raise ConfigError(str(e)) from e
    jit = {"auto": "auto", "true": True, "false": False}
    if c.jit_compile not in (True, False) and str(c.jit_compile).lower() not in jit:
        raise ConfigError(f"--jit_compile must be one of {', '.join(JIT_CHOICES)}")
    if c.jit_compile not in (True, False):
        c.jit_compile = jit[str(c.jit_compile).lower()]
    if c.mixed_precision not in MIXED_PRECISION:
        raise ConfigError(f"--mixed_precision must be one of {', '.join(MIXED_PRECISION)}")
    if c.learning_rate is None:
        c.learning_rate = 5e-5 if c.init_checkpoint else 5e-4

    if isinstance(c.task, Task):
        task = type(c.task).from_config(c.task.get_config())
    else:
        task = get_task(c.task).from_config(dict(c.task_options))
    if not task.trainable:
        raise ConfigError(
            f"--task: {task.name} has nothing to fine-tune; choose one of {', '.join(task_names(trainable_only=True))}"
        )
    return c, task, using_sample


# ------------------------------------------------------------- the run folder


def _architecture(encoder_spec):
    config = dict(encoder_spec.get("config", {}))
    for key in _NON_ARCHITECTURE:
        config.pop(key, None)
    return {"class_name": encoder_spec.get("class_name"), **config}


def _differences(old, new):
    """Human-readable differences between two run specs' identities."""
    found = []
    if old.get("task") != new["task"]:
        found.append(f"task {old.get('task')} -> {new['task']}")
    else:
        before, after = old.get("task_config", {}), new["task_config"]
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                found.append(f"{key} {before.get(key)!r} -> {after.get(key)!r}")
    before, after = _architecture(old.get("encoder", {})), _architecture(new["encoder"])
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            found.append(f"encoder {key} {before.get(key)!r} -> {after.get(key)!r}")
    if old.get("sequence_length") != new["sequence_length"]:
        found.append(f"sequence_length {old.get('sequence_length')} -> {new['sequence_length']}")
    return found


def _check_resumable(output_dir, spec):
    """Raises ConfigError when `output_dir` holds an unfinished run (a Keras
    backup) of another configuration than `spec`."""
    backup = os.path.join(output_dir, "backup")
    if not os.path.isdir(backup) or not os.listdir(backup):
        return
    spec_path = os.path.join(output_dir, RUN_SPEC)
    if not os.path.isfile(spec_path):
        raise ConfigError(
            f"--output_dir {output_dir} holds an unfinished run without {RUN_SPEC} (from an "
            f"older kerasbert), so it cannot be checked against this configuration; pass "
            f"another --output_dir or delete {backup} to start afresh"
        )
    with open(spec_path, encoding="utf-8") as f:
        old = json.load(f)
    found = _differences(old, spec)
    if found:
        raise ConfigError(
            f"--output_dir {output_dir} holds an unfinished run of another configuration "
            f"({'; '.join(found)}); rerun with its flags to resume, pass another "
            f"--output_dir, or delete {backup} to start afresh"
        )


def _run_spec(task, preprocessor, encoder, config):
    import keras

    encoder_spec = json.loads(json.dumps(keras.saving.serialize_keras_object(encoder)))
    encoder_spec["config"]["dtype"] = "float32"  # a mixed-precision run re-exports in float32
    return {
        "format": RUN_SPEC_VERSION,
        "task": task.name,
        "task_config": task.get_config(),
        "preprocessor": {
            "vocabulary": RUN_VOCAB,
            "lowercase": bool(preprocessor.lowercase),
            "sequence_length": int(preprocessor.sequence_length),
            "truncation": preprocessor.truncation,
        },
        "encoder": encoder_spec,
        "sequence_length": int(preprocessor.sequence_length),
        "model_name": config.model_name,
        "dropout": float(config.dropout),
        "weights": RUN_WEIGHTS,
        "config": config.summary(),
    }


def _write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def _write_vocab(path, vocabulary):
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(token + "\n" for token in vocabulary))


def load_run(run_dir):
    """Rebuilds a fine-tuned run from its folder, without training.

    Returns:
        A `FinetuneResult` whose `results` are `results.json` (empty when
        absent) and whose `model` has the saved weights; `export` is None.

    Raises:
        ConfigError: not a run folder, or one without weights (unfinished).
    """
    run_dir = os.fspath(run_dir)
    spec_path = os.path.join(run_dir, RUN_SPEC)
    if not os.path.isfile(spec_path):
        raise ConfigError(f"--run_dir: {run_dir} has no {RUN_SPEC} (not a fine-tuning run folder)")
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    if spec.get("format") != RUN_SPEC_VERSION:
        raise ConfigError(
            f"--run_dir: {spec_path} has format {spec.get('format')!r}, this kerasbert reads {RUN_SPEC_VERSION}"
        )
    weights = os.path.join(run_dir, spec.get("weights", RUN_WEIGHTS))
    if not os.path.isfile(weights):
        raise ConfigError(f"--run_dir: {weights} is missing (the run has not finished)")
    import keras

    import kerasbert.modeling  # noqa: F401  (registers GeluBertBackbone)
    from kerasbert.preprocessing import BertPreprocessor

    pre = dict(spec["preprocessor"])
    pre["vocabulary"] = os.path.join(run_dir, pre["vocabulary"])
    preprocessor = BertPreprocessor(**pre)
    task = get_task(spec["task"]).from_config(spec["task_config"])
    encoder = keras.saving.deserialize_keras_object(spec["encoder"])
    model = task.build_model(encoder, dropout=spec.get("dropout", 0.1))
    model.load_weights(weights)
    results = {}
    results_path = os.path.join(run_dir, "results.json")
    if os.path.isfile(results_path):
        with open(results_path, encoding="utf-8") as f:
            results = json.load(f)
    return FinetuneResult(
        results=results,
        model=model,
        preprocessor=preprocessor,
        task=task,
        encoder=encoder,
        run_dir=run_dir,
    )


def run_export_extra(run_dir):
    """The `extra` metadata a run's training-time export had (from run.json)."""
    with open(os.path.join(run_dir, RUN_SPEC), encoding="utf-8") as f:
        return json.load(f).get("export_extra", {})


# ------------------------------------------------------------------ training


def _dev_callback(evaluate, log_dir, history):
    """Keras callback scoring the dev set after every epoch: printed, added to
    the epoch logs as `dev_*`, written to TensorBoard and appended to `history`."""
    import keras
    import tensorflow as tf

    writer = tf.summary.create_file_writer(os.path.join(log_dir, "dev"))

    def on_epoch_end(epoch, logs):
        result = evaluate()
        history.append(result)
        print(f"epoch {epoch + 1} dev: " + " ".join(f"{k}={v:.4f}" for k, v in result.items()), flush=True)
        if logs is not None:
            logs.update({f"dev_{k}": v for k, v in result.items()})
        with writer.as_default():
            for k, v in result.items():
                tf.summary.scalar(f"epoch_{k}", v, step=epoch)
        writer.flush()

    return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)


def _build_encoder(c, checkpoint, preprocessor):
    from kerasbert.modeling import build_encoder

    if checkpoint is not None:
        encoder = checkpoint.backbone
        if encoder.max_sequence_length < c.sequence_length:
            raise ConfigError(
                f"--sequence_length {c.sequence_length} exceeds the checkpoint's "
                f"max_sequence_length {encoder.max_sequence_length}"
            )
        return encoder
    try:
        return build_encoder(
            c.model_size,
            preprocessor.vocabulary_size,
            num_layers=c.num_layers,
            hidden_dim=c.hidden_dim,
            num_heads=c.num_heads,
            intermediate_dim=c.intermediate_dim,
            dropout=c.dropout,
            max_sequence_length=max(512, c.sequence_length),
        )
    except ValueError as e:
        raise ConfigError(f"--model_size/--num_layers/--hidden_dim: {e}") from e


class _EpochTimer:
    """Adds up the seconds between each epoch's begin and end (hooked into a LambdaCallback), and keeps
    the seconds of the first step (tracing and graph building included) apart."""

    def __init__(self):
        self.seconds = 0.0
        self.first_step_seconds = None
        self._started = 0.0

    def begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def batch_end(self, batch, logs=None):
        if self.first_step_seconds is None:
            self.first_step_seconds = time.perf_counter() - self._started

    def end(self, epoch, logs=None):
        self.seconds += time.perf_counter() - self._started


def finetune(config):
    """Fine-tunes `config.task` and exports it.

    Args:
        config: a `FinetuneConfig`.

    Returns:
        A `FinetuneResult`.

    Raises:
        ConfigError, TaskDataError: bad configuration or data (the message
            names the flag to fix); both are ValueErrors.
    """
    c, task, using_sample = _resolve(config)
    import keras

    policy = MIXED_PRECISION[c.mixed_precision]
    previous_policy = keras.config.dtype_policy()
    if policy:
        keras.config.set_dtype_policy(policy)
    try:
        return _finetune(c, task, using_sample)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _finetune(c, task, using_sample):
    started = time.time()
    import keras
    import numpy as np

    from kerasbert.export.saved_model import export_task
    from kerasbert.preprocessing import BertPreprocessor
    from kerasbert.training.distribute import cleanup_write_dir, get_strategy, is_chief, write_dir
    from kerasbert.training.optimization import create_optimizer

    # Multi-worker and TPU strategies must be created before any other op runs.
    try:
        strategy = get_strategy(c.strategy, tpu=c.tpu)
    except ValueError as e:
        raise ConfigError(f"--strategy: {e}") from e
    if using_sample:
        print(f"no --train_file: fine-tuning on the sample data in {SAMPLE_DIR}")
    keras.utils.set_random_seed(c.seed)

    checkpoint = None
    if c.init_checkpoint:
        from kerasbert.modeling.checkpoints import load_checkpoint

        try:
            checkpoint = load_checkpoint(c.init_checkpoint)
        except (ValueError, FileNotFoundError) as e:
            raise ConfigError(f"--init_checkpoint: {e}") from e
        print(checkpoint.describe(), flush=True)
    vocab = c.vocab or checkpoint.vocabulary_path
    lowercase = not c.cased
    if checkpoint is not None and not c.cased:
        lowercase = checkpoint.lowercase
    try:
        preprocessor = BertPreprocessor(vocab, lowercase=lowercase, sequence_length=c.sequence_length)
    except ValueError as e:
        raise ConfigError(f"--vocab: {e}") from e

    train = task.read_split(c.train_file, "train")
    if c.max_train_examples:
        train = task.take(train, c.max_train_examples)
    dev = task.read_split(c.dev_file, "dev") if c.dev_file else None
    if dev is not None and c.max_dev_examples:
        dev = task.take(dev, c.max_dev_examples)
    task.prepare(train, dev)
    train_ds, train_rows = task.build_inputs(train, preprocessor, c.batch_size, training=True, seed=c.seed)

    steps_per_epoch = max(1, train_rows // c.batch_size)
    total_steps = max(1, int(round(steps_per_epoch * c.epochs)))
    epochs = int(np.ceil(total_steps / steps_per_epoch))
    # Keras runs whole epochs of `steps_per_epoch` steps. Spread the steps evenly over them, so a fractional
    # --epochs (0.5, 2.5) trains that many steps instead of finishing its last epoch at learning rate 0 after
    # the schedule has ended. Whole --epochs are unchanged; otherwise at most `epochs - 1` steps are added.
    steps_per_epoch = int(np.ceil(total_steps / epochs))
    total_steps = steps_per_epoch * epochs
    warmup_steps = int(total_steps * c.warmup_proportion)

    with strategy.scope():
        encoder = _build_encoder(c, checkpoint, preprocessor)
        model = task.build_model(encoder, dropout=c.dropout)
        optimizer = create_optimizer(c.learning_rate, total_steps, warmup_steps, weight_decay=c.weight_decay)
        model.compile(
            optimizer=optimizer,
            loss=task.build_loss(),
            metrics=task.build_metrics(),
            jit_compile=c.jit_compile,
        )

    # Only the chief keeps what it writes; BackupAndRestore coordinates
    # multi-worker backups itself.
    spec = _run_spec(task, preprocessor, encoder, c)
    _check_resumable(c.output_dir, spec)
    output_dir = write_dir(c.output_dir)
    os.makedirs(output_dir, exist_ok=True)
    _write_vocab(os.path.join(output_dir, RUN_VOCAB), preprocessor.vocabulary)
    _write_json(os.path.join(output_dir, RUN_SPEC), spec)
    log_dir = os.path.join(output_dir, "logs")
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(c.output_dir, "backup")),
        keras.callbacks.TensorBoard(log_dir, update_freq=max(1, steps_per_epoch // 10)),
    ]
    dev_history = []

    def evaluate():
        return task.evaluate(model, preprocessor, dev, c.batch_size)

    if dev is not None:
        callbacks.insert(0, _dev_callback(evaluate, log_dir, dev_history))
    # Seconds spent in training epochs, dev scoring excluded (it runs in a later callback).
    epoch_timer = _EpochTimer()
    callbacks.insert(
        0,
        keras.callbacks.LambdaCallback(
            on_epoch_begin=epoch_timer.begin, on_epoch_end=epoch_timer.end, on_train_batch_end=epoch_timer.batch_end
        ),
    )

    print(
        f"task={task.name} {task.describe()} train={len(train)} dev={len(dev) if dev else 0} "
        f"encoder={encoder.num_layers}x{encoder.hidden_dim} params={model.count_params():,} "
        f"steps={total_steps} (warmup {warmup_steps}) lr={c.learning_rate:g} "
        f"strategy={c.strategy}",
        flush=True,
    )
    verbose = c.verbose
    if verbose is None:  # a live bar on a terminal; one line per epoch in logs and CI
        verbose = 1 if sys.stdout.isatty() else 2
    if verbose and not sys.stdout.isatty():  # ... and a progress line every --progress_seconds
        from kerasbert.training.progress import progress_callback

        callbacks.append(progress_callback(total_steps, steps_per_epoch, c.progress_seconds))
    model.fit(
        train_ds.repeat(),
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        shuffle=False,  # tf.data already shuffles
        verbose=verbose,
    )
    weights_path = os.path.join(output_dir, RUN_WEIGHTS)
    model.save_weights(weights_path)

    results = {
        "task": task.name,
        **task.metadata(),
        "train_examples": len(train),
        "dev_examples": len(dev) if dev else 0,
        "steps": total_steps,
        "train_seconds": round(time.time() - started, 1),
        "fit_seconds": round(epoch_timer.seconds, 1),
        "first_step_seconds": epoch_timer.first_step_seconds and round(epoch_timer.first_step_seconds, 2),
        "weights": weights_path,
        "run_dir": c.output_dir,
    }
    if dev is not None:
        # (No epoch ran when a resumed run had already finished them all.)
        results["dev_metrics"] = dev_history[-1] if dev_history else evaluate()
    extra = {
        "dev_metrics": results.get("dev_metrics"),
        "train_file": os.path.basename(c.train_file),
        "encoder": {"num_layers": encoder.num_layers, "hidden_dim": encoder.hidden_dim},
    }
    spec["export_extra"] = extra
    _write_json(os.path.join(output_dir, RUN_SPEC), spec)
    export = None
    if c.export and is_chief():
        exported = model
        if c.mixed_precision != "none":  # export float32 weights computing in float32
            keras.config.set_dtype_policy("float32")
            exported = load_run(output_dir).model
        export = export_task(task, preprocessor, exported, c.export_dir, c.model_name, extra=extra)
        results["export"] = export
    _write_json(os.path.join(output_dir, "results.json"), results)
    cleanup_write_dir(c.output_dir, output_dir)
    return FinetuneResult(
        results=results,
        model=model,
        preprocessor=preprocessor,
        task=task,
        encoder=encoder,
        run_dir=c.output_dir,
        export=export,
    )


def run(args):
    """Fine-tunes and exports as parsed `args` say; returns a `FinetuneResult`
    (its JSON `results` are also in results.json). Raises cli.UsageError."""
    from kerasbert.export.saved_model import ExportError

    try:
        return finetune(config_from_args(args))
    except (ConfigError, TaskDataError, ExportError) as e:
        raise cli.UsageError(str(e)) from e


def main(args):
    results = run(args).results
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
