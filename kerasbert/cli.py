"""Shared command-line plumbing: one-line errors that name the flag to fix."""

import argparse
import contextlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile


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


# ----------------------------------------------------- TensorFlow's start-up noise

VERBOSE_FLAG = "--verbose"
VERBOSE_HELP = "show TensorFlow's start-up and C++ log lines (oneDNN, CUDA, CPU features), hidden by default"


def add_verbose_flag(parser):
    """Adds `--verbose` (read early by `quiet_tensorflow`, before TensorFlow is imported)."""
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)


def quiet_tensorflow(argv=None):
    """Hides TensorFlow's start-up noise unless `--verbose` is in `argv`.

    Call it before anything imports tensorflow. It sets `TF_CPP_MIN_LOG_LEVEL=3`
    (unless the environment sets a level: C++ log lines such as `failed call to
    cuInit`, oneDNN notices) and, since TensorFlow prints its first lines before that
    variable is read, sends file descriptor 2 to a temporary file while
    `tensorflow` itself is imported; if that import fails, what it printed is
    written to stderr before the error. Our own messages are Python prints and
    exceptions, which are not touched.

    Returns:
        Whether `--verbose` was given (then nothing is changed).
    """
    argv = sys.argv[1:] if argv is None else argv
    verbose = any(
        arg == VERBOSE_FLAG
        or (arg.startswith(VERBOSE_FLAG + "=") and arg.split("=", 1)[1].lower() in ("1", "true", "yes", "on"))
        for arg in map(str, argv)
    )
    if verbose or "tensorflow" in sys.modules:
        return verbose
    if not os.environ.get("TF_CPP_MIN_LOG_LEVEL"):  # (a level the user set is kept)
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if not any(isinstance(finder, _QuietTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
    return verbose


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` once and runs its `__init__` with fd 2 captured."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader, exec_module = spec.loader, spec.loader.exec_module

        def quiet_exec_module(module):
            try:
                with _stderr_captured():
                    exec_module(module)
            finally:
                del loader.exec_module  # (the instance attribute set below; the class's method again)
            _quiet_python_loggers()

        loader.exec_module = quiet_exec_module
        return spec


@contextlib.contextmanager
def _stderr_captured():
    """Sends fd 2 (and so C++ and Python writes to stderr) to a temporary file;
    replays it to stderr when the body raises."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded use)
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                captured.seek(0)
                os.write(2, captured.read())


def _quiet_python_loggers():
    """TensorFlow's and absl's Python loggers: errors only."""
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass
