"""`python -m kerasbert.export`: write a raw-text SavedModel without training.

Two sources:

* `--init_checkpoint DIR --mode embedding`: a pretrained BERT checkpoint as
  a sentence-embedding service (`kerasbert.tasks.EmbeddingTask`):
  `serving_default` maps `text` to `embeddings`, `tokens` returns per-token
  vectors (see `kerasbert.export.embedding`).
* `--run_dir runs/NAME`: re-export a fine-tuned run from what training saved
  in its folder (`run.json`, `vocab.txt`, `model.weights.h5`; see
  `kerasbert.training.finetune`), with no retraining.

Example:

    python -m kerasbert.export --init_checkpoint path/to/all-MiniLM-L6-v2 \\
        --mode embedding --pooling mean --layer -1 --l2_normalize \\
        --sequence_length 128 --export_dir exports --model_name minilm
    python -m kerasbert.export --run_dir runs/sst2 --export_dir exports
"""

import argparse
import json
import os
import sys
import time

from kerasbert import cli
from kerasbert.tasks import get_task, task_names

# What --init_checkpoint can become: the tasks with nothing to train.
MODES = tuple(name for name in task_names() if not get_task(name).trainable)

EXAMPLES = """\
examples:
  # sentence-transformers' recipe for all-MiniLM-L6-v2 (mean pooling + L2)
  python -m kerasbert.export --init_checkpoint all-MiniLM-L6-v2 \\
      --pooling mean --l2_normalize --model_name minilm
  # bert-as-service's default: mean of the second-to-last layer
  python -m kerasbert.export --init_checkpoint uncased_L-12_H-768_A-12 \\
      --pooling mean --layer -2 --model_name bert_base
  # then serve it
  python -m kerasbert.serve --model_base_path exports/minilm --model_name minilm
  # re-export a fine-tuned run (python -m kerasbert.train --model_name sst2 ...)
  python -m kerasbert.export --run_dir runs/sst2
"""


def build_parser(prog="python -m kerasbert.export"):
    p = cli.ArgumentParser(
        prog=prog,
        description="Export a BERT checkpoint as a TF Serving SavedModel that takes raw text "
        "(<export_dir>/<model_name>/<version>/, written atomically).",
        epilog=EXAMPLES,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, max_help_position=30),
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--init_checkpoint",
        help="checkpoint folder: Hugging Face BERT (config.json + model.safetensors/"
        "pytorch_model.bin + vocab.txt), Google TF1 (bert_config.json + "
        "bert_model.ckpt.* + vocab.txt), a keras-hub preset folder, or a kerasbert "
        "pretrain output (<output_dir>/pretrained); the format is detected",
    )
    source.add_argument(
        "--run_dir",
        help="a fine-tuning run folder (python -m kerasbert.train's --output_dir, "
        "default runs/<model_name>): re-export it from its run.json and weights",
    )
    p.add_argument(
        "--mode",
        default=MODES[0],
        choices=MODES,
        help=f"what to make of --init_checkpoint; embedding: text -> sentence vectors (default: {MODES[0]})",
    )
    for mode in MODES:  # each mode's own flags (only embedding so far)
        e = p.add_argument_group(mode)
        get_task(mode).add_arguments(e)
    e.add_argument(
        "--sequence_length",
        type=int,
        default=None,
        help="max tokens per sentence incl. [CLS]/[SEP]; longer text is truncated "
        "(default: 128, or the model's max positions if fewer)",
    )
    o = p.add_argument_group("output")
    o.add_argument(
        "--export_dir",
        default="exports",
        help="TF Serving base folder; writes <export_dir>/<model_name>/<version>/ (default: exports)",
    )
    o.add_argument(
        "--model_name",
        default=None,
        help="served model name (default: the checkpoint folder's name, or the run's --model_name)",
    )
    o.add_argument(
        "--version", type=int, default=None, help="version number (default: one more than the newest present)"
    )
    o.add_argument("--json", action="store_true", help="print a JSON summary (path, metadata, seconds) instead of text")
    cli.add_verbose_flag(o)
    return p


def _model_name(args, default=None):
    if args.model_name:
        return args.model_name
    if default:
        return default
    name = os.path.basename(os.path.normpath(args.init_checkpoint))
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") or "model"


def _check_args(args):
    """Validates flags before anything heavy is imported; raises cli.UsageError.

    Returns the checkpoint's format (None with --run_dir).
    """
    if args.sequence_length is not None and args.sequence_length < 3:
        raise cli.UsageError(f"--sequence_length must be at least 3, got {args.sequence_length}")
    if args.version is not None and args.version < 1:
        raise cli.UsageError(f"--version must be a positive integer, got {args.version}")
    from kerasbert.export.saved_model import ExportError, check_export_dir

    try:
        check_export_dir(args.export_dir, args.model_name)
    except ExportError as e:
        raise cli.UsageError(str(e)) from e
    if args.run_dir is not None:
        if not os.path.isdir(args.run_dir):
            raise cli.UsageError(f"--run_dir: no such folder: {args.run_dir}")
        # The run fixes its own task, preprocessing and model.
        for flag, default in (
            ("sequence_length", None),
            ("pooling", "mean"),
            ("layer", -1),
            ("l2_normalize", False),
            ("jit_compile", False),
            ("graph", "fused"),
            ("mixed_precision", ""),
        ):
            if getattr(args, flag) != default:
                raise cli.UsageError(
                    f"--{flag} is for --init_checkpoint; a --run_dir export is configured by its run.json"
                )
        return None
    if args.pooling == "pooled" and args.layer < -1:
        # (A positive --layer is checked against the model's depth later.)
        raise cli.UsageError(
            "--layer: --pooling pooled is BERT's pooler on the last layer; use --layer -1 "
            "(or --pooling cls for the [CLS] vector of another layer)"
        )
    if not os.path.exists(args.init_checkpoint):
        raise cli.UsageError(f"--init_checkpoint: no such folder: {args.init_checkpoint}")
    from kerasbert.modeling.checkpoints import detect_format

    try:
        return detect_format(args.init_checkpoint)
    except ValueError as e:
        raise cli.UsageError("--init_checkpoint: " + _one_line(e)) from e


def _one_line(error):
    """A multi-line error message as one line ("a:\n- b\n- c" -> "a: b; c")."""
    text = ""
    for line in (ln.strip().lstrip("- ") for ln in str(error).splitlines()):
        if line:
            text += (" " if text.endswith(":") else "; " if text else "") + line
    return text


def _export_run(args):
    """Re-exports a fine-tuning run; returns (path, task name)."""
    from kerasbert.export.saved_model import ExportError, export_task
    from kerasbert.tasks import TaskDataError
    from kerasbert.training import finetune

    try:
        run = finetune.load_run(args.run_dir)
        name = _model_name(args, run_model_name(args.run_dir))
        path = export_task(
            run.task,
            run.preprocessor,
            run.model,
            args.export_dir,
            name,
            version=args.version,
            extra=finetune.run_export_extra(args.run_dir),
        )
    except FileExistsError as e:
        raise cli.UsageError(f"--version: {e}") from e
    except (finetune.ConfigError, TaskDataError, ExportError) as e:
        raise cli.UsageError(_one_line(e)) from e
    return path, run.task.name


def run_model_name(run_dir):
    """The --model_name a run was trained with (from its run.json), or None."""
    try:
        with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as f:
            return json.load(f).get("model_name")
    except (OSError, ValueError):
        return None


def _export_checkpoint(args):
    from kerasbert.export.embedding import export_checkpoint_embedder
    from kerasbert.export.saved_model import ExportError
    from kerasbert.tasks import TaskDataError

    try:
        options = get_task(args.mode).from_args(args).get_config()
        return export_checkpoint_embedder(
            args.init_checkpoint,
            args.export_dir,
            _model_name(args),
            sequence_length=args.sequence_length,
            version=args.version,
            log=None if args.json else lambda line: print(line, flush=True),
            **options,
        )
    except FileExistsError as e:
        raise cli.UsageError(f"--version: {e}") from e
    except (TaskDataError, ExportError) as e:
        raise cli.UsageError(_one_line(e)) from e
    except ValueError as e:
        message = _one_line(e)
        flag = "--init_checkpoint"
        if message.startswith(("layer ", "pooling 'pooled'")):
            flag = "--layer"
        elif message.startswith("sequence_length"):
            flag = "--sequence_length"
        raise cli.UsageError(f"{flag}: {message}") from e


def main(args):
    """Runs the export described by parsed `args`; returns 0."""
    fmt = _check_args(args)
    from kerasbert.export.layout import read_metadata

    start = time.perf_counter()
    if args.run_dir is not None:
        path, task_name = _export_run(args)
    else:
        path = _export_checkpoint(args)
    seconds = time.perf_counter() - start
    meta = read_metadata(path)
    if args.json:
        print(json.dumps({"export": path, "seconds": round(seconds, 2), "metadata": meta}))
    elif args.run_dir is not None:
        print(f"exported the {task_name} run {args.run_dir} to {path} in {seconds:.1f}s")
    else:
        print(
            f"exported {fmt} checkpoint as {meta['task']} model to {path} in {seconds:.1f}s: "
            f"{meta['pooling']} pooling of layer {meta['layer_index']}/{meta['num_layers']}"
            f"{', L2-normalised' if meta['l2_normalize'] else ''}, "
            f"{meta['embedding_dim']}-d, up to {meta['sequence_length']} tokens"
            f"{', XLA' if meta['jit_compile'] else ''}"
            f"{', bfloat16 matmuls' if meta.get('mixed_precision') else ''}"
        )
    if not args.json:
        print(
            f"serve it: python -m kerasbert.serve --model_base_path "
            f"{os.path.dirname(path)} --model_name {os.path.basename(os.path.dirname(path))}"
        )
    return 0


def run(argv=None):
    """Parses `argv` and runs; `UsageError` -> one line on stderr, exit 2."""
    return cli.run(lambda a: main(build_parser().parse_args(a)), argv)


if __name__ == "__main__":
    sys.exit(run())
