"""Shared command-line plumbing: one-line errors that name the flag to fix."""

import argparse
import sys


class UsageError(Exception):
    """A problem with the user's flags or files; printed as one line, exit 2.

    Example:

    >>> raise UsageError("--train_file: no such file 'x.tsv'")
    Traceback (most recent call last):
    ...
    kerasbert.cli.UsageError: --train_file: no such file 'x.tsv'
    """


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the one-line `prog: error: ...` form and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def run(main, argv=None):
    """Runs `main(argv)`, turning `UsageError` into a one-line error, exit 2."""
    try:
        return main(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
