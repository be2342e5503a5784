"""`python -m kerasbert.export`: write a raw-text SavedModel from a checkpoint.

Mode `embedding` (the only one so far) turns a pretrained BERT checkpoint
into a sentence-embedding service: `serving_default` maps `text` to
`embeddings`, `tokens` returns per-token vectors (see
`kerasbert.export.embedding`). Fine-tuned classifiers are exported by
`python -m kerasbert.train` itself.

Example:

    python -m kerasbert.export --init_checkpoint path/to/all-MiniLM-L6-v2 \\
        --mode embedding --pooling mean --layer -1 --l2_normalize \\
        --sequence_length 128 --export_dir exports --model_name minilm
"""

import argparse
import json
import os
import sys
import time

from kerasbert import cli

MODES = ("embedding",)
POOLINGS = ("cls", "pooled", "mean", "max", "mean_max", "first_last_avg")

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
"""


def build_parser(prog="python -m kerasbert.export"):
    p = cli.ArgumentParser(
        prog=prog,
        description="Export a BERT checkpoint as a TF Serving SavedModel that takes raw text "
        "(<export_dir>/<model_name>/<version>/, written atomically).",
        epilog=EXAMPLES,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(
            prog, max_help_position=30
        ),
    )
    p.add_argument("--init_checkpoint", required=True,
                   help="checkpoint folder: Hugging Face BERT (config.json + model.safetensors/"
                   "pytorch_model.bin + vocab.txt), Google TF1 (bert_config.json + "
                   "bert_model.ckpt.* + vocab.txt), a keras-hub preset folder, or a kerasbert "
                   "pretrain output (<output_dir>/pretrained); the format is detected")
    p.add_argument("--mode", default="embedding", choices=MODES,
                   help="what to export; embedding: text -> sentence vectors (default: embedding)")
    e = p.add_argument_group("embedding")
    e.add_argument("--pooling", default="mean", choices=POOLINGS,
                   help="how token vectors become one sentence vector: cls ([CLS] vector), "
                   "pooled (BERT's tanh pooler, last layer only), mean (average over real tokens "
                   "incl. [CLS]/[SEP], as sentence-transformers), max (element-wise max over real "
                   "tokens), mean_max (both concatenated, 2x wide), first_last_avg (mean of the "
                   "average of the first and the chosen layer) (default: mean)")
    e.add_argument("--layer", type=int, default=-1,
                   help="hidden state to pool: 0 = embedding output, 1..N = transformer layers, "
                   "negative counts from the end (-1 = last, -2 = second-to-last, "
                   "bert-as-service's default) (default: -1)")
    e.add_argument("--l2_normalize", action="store_true",
                   help="scale embeddings to unit length (cosine similarity = dot product)")
    e.add_argument("--sequence_length", type=int, default=None,
                   help="max tokens per sentence incl. [CLS]/[SEP]; longer text is truncated "
                   "(default: 128, or the model's max positions if fewer)")
    e.add_argument("--jit_compile", action="store_true",
                   help="XLA-compile encoder + pooling (compiles once per batch shape; on a "
                   "2-core CPU it measured no faster than TF's oneDNN kernels); stock "
                   "tensorflow_model_server then needs --xla_cpu_compilation_enabled=true")
    o = p.add_argument_group("output")
    o.add_argument("--export_dir", default="exports",
                   help="TF Serving base folder; writes <export_dir>/<model_name>/<version>/ "
                   "(default: exports)")
    o.add_argument("--model_name", default=None,
                   help="served model name (default: the checkpoint folder's name)")
    o.add_argument("--version", type=int, default=None,
                   help="version number (default: one more than the newest present)")
    o.add_argument("--json", action="store_true",
                   help="print a JSON summary (path, metadata, seconds) instead of text")
    return p


def _model_name(args):
    if args.model_name:
        return args.model_name
    name = os.path.basename(os.path.normpath(args.init_checkpoint))
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") or "model"


def _check_args(args):
    """Validates flags before anything heavy is imported; raises cli.UsageError."""
    if args.sequence_length is not None and args.sequence_length < 3:
        raise cli.UsageError(f"--sequence_length must be at least 3, got {args.sequence_length}")
    if args.version is not None and args.version < 1:
        raise cli.UsageError(f"--version must be a positive integer, got {args.version}")
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


def main(args):
    """Runs the export described by parsed `args`; returns 0."""
    fmt = _check_args(args)
    from kerasbert.export.embedding import export_checkpoint_embedder
    from kerasbert.export.layout import read_metadata

    start = time.perf_counter()
    try:
        path = export_checkpoint_embedder(
            args.init_checkpoint,
            args.export_dir,
            _model_name(args),
            sequence_length=args.sequence_length,
            pooling=args.pooling,
            layer=args.layer,
            l2_normalize=args.l2_normalize,
            jit_compile=args.jit_compile,
            version=args.version,
        )
    except FileExistsError as e:
        raise cli.UsageError(f"--version: {e}") from e
    except ValueError as e:
        message = _one_line(e)
        flag = "--init_checkpoint"
        if message.startswith(("layer ", "pooling 'pooled'")):
            flag = "--layer"
        elif message.startswith("sequence_length"):
            flag = "--sequence_length"
        raise cli.UsageError(f"{flag}: {message}") from e
    seconds = time.perf_counter() - start
    meta = read_metadata(path)
    if args.json:
        print(json.dumps({"export": path, "seconds": round(seconds, 2), "metadata": meta}))
    else:
        print(
            f"exported {fmt} checkpoint as {meta['task']} model to {path} in {seconds:.1f}s: "
            f"{meta['pooling']} pooling of layer {meta['layer_index']}/{meta['num_layers']}"
            f"{', L2-normalised' if meta['l2_normalize'] else ''}, "
            f"{meta['embedding_dim']}-d, up to {meta['sequence_length']} tokens"
            f"{', XLA' if meta['jit_compile'] else ''}"
        )
        print(f"serve it: python -m kerasbert.serve --model_base_path "
              f"{os.path.dirname(path)} --model_name {os.path.basename(os.path.dirname(path))}")
    return 0


def run(argv=None):
    """Parses `argv` and runs; `UsageError` -> one line on stderr, exit 2."""
    return cli.run(lambda a: main(build_parser().parse_args(a)), argv)


if __name__ == "__main__":
    sys.exit(run())
