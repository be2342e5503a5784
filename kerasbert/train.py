"""`python -m kerasbert.train [SUBCOMMAND] [flags]`: the training entry point.

Subcommands (the first argument; `finetune` when omitted):

* `finetune` – fine-tune a registered task (`--task`: classification,
  regression, ...) and export it; with no flags at all it runs on the
  sample dataset shipped in the package.
* `pretrain` – pretrain BERT (MLM + NSP) from raw text.
* `vocab`    – learn a WordPiece `vocab.txt` from text files.

`python -m kerasbert.train SUBCOMMAND --help` documents every flag;
`--verbose` shows TensorFlow's start-up log lines.
"""

import importlib
import sys

from kerasbert import cli

# name -> (module with `build_parser()` and `main(args)`, one-line summary)
SUBCOMMANDS = {
    "finetune": (
        "kerasbert.training.finetune",
        "fine-tune a task (--task classification, regression, ...) and export it (default)",
    ),
    "pretrain": ("kerasbert.training.pretrain", "pretrain BERT (MLM + NSP) from raw text"),
    "vocab": ("kerasbert.preprocessing.vocab", "learn a WordPiece vocab.txt from text files"),
}


def _usage():
    """`--help` as argparse would write it (the module docstring is Markdown for the reader of the code)."""
    lines = [
        "usage: python -m kerasbert.train [SUBCOMMAND] [flags]",
        "",
        "Train BERT: fine-tune a task and export it, pretrain, or learn a vocabulary.",
        "",
        "subcommands (the first argument; finetune when omitted):",
    ]
    lines += [f"  {name:<9} {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    lines += [
        "",
        "python -m kerasbert.train SUBCOMMAND --help documents every flag of a subcommand;",
        "--verbose shows TensorFlow's start-up log lines (hidden by default).",
    ]
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    cli.quiet_tensorflow(argv)  # before a subcommand imports tensorflow
    if argv and argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name = "finetune"
    if argv and not argv[0].startswith("-"):
        name = argv.pop(0)
        if name not in SUBCOMMANDS:
            raise cli.UsageError(f"unknown subcommand {name!r}; choose one of {', '.join(SUBCOMMANDS)}")
    module = importlib.import_module(SUBCOMMANDS[name][0])
    parser = module.build_parser(prog=f"python -m kerasbert.train {name}")
    return module.main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli.run(main))
