"""Shared command-line plumbing: TensorFlow's start-up noise is hidden unless --verbose, and nothing else is."""

import os
import subprocess
import sys

from conftest import REPO
from kerasbert import cli

# What TensorFlow 2.21 prints at start-up and at the first op on a machine without a GPU (issue 14).
NOISE = ("absl::InitializeLog", "oneDNN", "cuInit", "cuda drivers", "cpu_feature_guard")


def test_verbose_flag_is_read_before_parsing():
    assert cli.quiet_tensorflow(["finetune", "--verbose"]) is True
    assert cli.quiet_tensorflow(["--verbose=true"]) is True
    assert "tensorflow" in sys.modules  # (here it is imported already, so nothing is changed)
    assert cli.quiet_tensorflow(["--epochs", "1"]) is False


def test_captured_stderr_is_dropped_on_success_and_replayed_on_failure(capfd):
    with cli._stderr_captured():
        os.write(2, b"noise from C++\n")  # (what TensorFlow's libraries do; Python's sys.stderr writes to fd 2 too)
    assert capfd.readouterr().err == ""
    try:
        with cli._stderr_captured():
            os.write(2, b"why the import failed\n")
            raise ImportError("libtensorflow.so: cannot open shared object file")
    except ImportError:
        pass
    assert capfd.readouterr().err == "why the import failed\n"


def _clean_env():
    """The environment of a user's shell: no TF_CPP_MIN_LOG_LEVEL (conftest sets one for the tests)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _train(*args):
    """`python -m kerasbert.train ARGS` from a user's shell."""
    command = [sys.executable, "-m", "kerasbert.train", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, env=_clean_env())


def test_train_hides_tensorflow_noise_but_not_our_errors():
    """A real command that imports TensorFlow, then fails on a flag: stderr is our one line, nothing else."""
    proc = _train("--max_train_examples", "0")
    assert proc.returncode == 2
    assert proc.stderr == "error: --max_train_examples must be at least 1\n"


def test_verbose_shows_tensorflow_noise():
    """The control: the same machine does print TensorFlow's lines when asked to."""
    proc = _train("finetune", "--help", "--verbose")
    assert proc.returncode == 0 and "--verbose" in proc.stdout
    assert any(marker in proc.stderr for marker in NOISE), proc.stderr


def test_a_latin1_training_file_is_one_line_naming_the_encoding_and_the_line(tmp_path, capsys):
    """TSV, CoNLL and SQuAD JSON files in Latin-1, through `python -m kerasbert.train` (in-process)."""
    from kerasbert import train

    vocab = REPO / "kerasbert" / "data" / "sample" / "vocab.txt"
    squad = '{"version": "1.1", "data": [{"title": "Café", "paragraphs": []}]}'
    for task, name, text, line, column in (
        ("classification", "train.tsv", "sentence\tlabel\ngood\tpositive\nun café froid\tnegative\n", 3, 7),
        ("token_classification", "eng.train", "-DOCSTART- O\n\nJosé B-PER\n", 3, 4),
        ("question_answering", "train.json", squad, 1, squad.index("é") + 1),
    ):
        path = tmp_path / name
        path.write_bytes(text.encode("latin-1"))
        argv = ["--task", task, "--train_file", path, "--vocab", vocab, "--output_dir", tmp_path / task, "--no_export"]
        assert cli.run(train.main, [str(a) for a in argv]) == 2
        err = capsys.readouterr().err
        assert err == (
            f"error: {path}:{line}: not UTF-8 (byte 0xe9 at column {column}, 'é' in Latin-1); kerasbert reads "
            f"UTF-8 text: convert the file, e.g. iconv -f latin1 -t utf-8 {path} > utf8{path.suffix}\n"
        ), task


def test_train_help_lists_subcommands_without_markdown(capsys):
    from kerasbert import train

    assert train.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m kerasbert.train [SUBCOMMAND] [flags]\n")
    for name in train.SUBCOMMANDS:
        assert f"\n  {name} " in out
    assert "SUBCOMMAND --help" in out and "--verbose" in out
    assert "`" not in out and "* " not in out


def test_no_entry_point_help_shows_markdown_backticks():
    """Help is read in a terminal: no literal `code` or ``code`` quoting from docstrings (issue 14)."""
    from kerasbert.client import cli as client_cli
    from kerasbert.export import cli as export_cli
    from kerasbert.preprocessing import vocab
    from kerasbert.serving import server
    from kerasbert.training import finetune, pretrain

    for module in (finetune, pretrain, vocab, export_cli, server, client_cli):
        text = module.build_parser().format_help()
        assert "`" not in text, (module.__name__, [line for line in text.splitlines() if "`" in line])
        assert "--verbose" in text or module is client_cli, module.__name__


def test_question_answering_start_up_line_keeps_the_alignment_report_apart():
    """It ran into the next field: '... 0 unalignable train=64 dev=113 ...'."""
    from kerasbert.tasks import get_task

    task = get_task("question_answering")()
    task.alignment = {"summary": "64 answers: 60 exact, 0 narrowed by improve-answer-span, 4 inside WordPieces"}
    assert task.describe() == (
        "doc_stride=128 max_query_length=64 "
        "(training 64 answers: 60 exact, 0 narrowed by improve-answer-span, 4 inside WordPieces)"
    )
