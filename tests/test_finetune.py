"""The fine-tuning command: it learns, and bad flags/files give one-line errors."""

import subprocess
import sys

import pytest

from conftest import REPO, shared_path


def test_finetuning_learns_a_polarity_task(trained_export):
    results = trained_export["results"]
    print("polarity task dev metrics:", results["dev_metrics"])
    assert results["class_names"] == ["negative", "positive"]
    assert results["dev_metrics"]["accuracy"] >= 0.9
    assert results["dev_metrics"]["mcc"] >= 0.8


def _train_cli(*args):
    proc = subprocess.run(
        [sys.executable, "-m", "kerasbert.train", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    return proc.returncode, proc.stdout, proc.stderr


def _last_line(stderr):
    return [line for line in stderr.strip().splitlines() if line.strip()][-1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--train_file", "missing.tsv"], "--train_file: no such file"),
        (["--bogus_flag"], "unrecognized arguments: --bogus_flag"),
        (["--epochs", "zero"], "--epochs: invalid float value"),
        (["nosuchcommand"], "unknown subcommand 'nosuchcommand'"),
        (["--train_file", "README.md"], "no vocabulary: pass --vocab"),
    ],
)
def test_cli_errors_are_one_line_and_name_the_flag(args, message):
    code, _, stderr = _train_cli(*args)
    assert code == 2
    assert message in _last_line(stderr)
    assert "Traceback" not in stderr


def test_cli_data_errors_name_the_flag(tmp_path):
    vocab = REPO / "kerasbert" / "data" / "sample" / "vocab.txt"
    stsb = shared_path("data", "glue_stsb", "train.tsv")
    code, _, stderr = _train_cli("--train_file", stsb, "--vocab", vocab, "--text_column", "sentence1",
                                 "--text_pair_column", "sentence2", "--label_column", "score")
    assert code == 2 and "use --task regression" in _last_line(stderr) and "Traceback" not in stderr
    code, _, stderr = _train_cli("--train_file", stsb, "--vocab", vocab, "--text_column", "text")
    assert code == 2 and "--text_column='text': no such column" in _last_line(stderr)


def test_help_documents_every_flag():
    code, stdout, _ = _train_cli("finetune", "--help")
    assert code == 0
    for flag in ("--train_file", "--dev_file", "--text_pair_column", "--task", "--init_checkpoint",
                 "--vocab", "--model_size", "--sequence_length", "--batch_size", "--epochs",
                 "--learning_rate", "--warmup_proportion", "--seed", "--export_dir", "--model_name"):
        assert flag in stdout


def test_killed_finetune_resumes_at_the_next_epoch(tmp_path):
    """SIGKILL after epoch 1; the same command continues with epoch 2."""
    import signal
    import time

    from conftest import write_polarity_task

    train = write_polarity_task(tmp_path / "train.tsv", 640, seed=3)
    args = [sys.executable, "-m", "kerasbert.train", "--train_file", str(train),
            "--vocab", str(REPO / "kerasbert" / "data" / "sample" / "vocab.txt"),
            "--epochs", "3", "--sequence_length", "16", "--output_dir", str(tmp_path / "run"),
            "--no_export"]
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        first = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while "Epoch 2/3" not in log.read_text() and time.monotonic() < deadline:
            assert first.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert "Epoch 2/3" in log.read_text()
    second = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "Epoch 1/3" not in second.stdout and "Epoch 2/3" in second.stdout
    assert (tmp_path / "run" / "model.weights.h5").exists()
