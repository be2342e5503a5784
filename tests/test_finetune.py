"""The fine-tuning command: it learns, and bad flags/files give one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_finetune, shared_path, write_polarity_task
from test_checkpoints import minilm_dir  # noqa: F401  (fixture: the real MiniLM folder)

SAMPLE_VOCAB = REPO / "kerasbert" / "data" / "sample" / "vocab.txt"


def test_finetuning_learns_a_polarity_task(trained_export):
    results = trained_export["results"]
    print("polarity task dev metrics:", results["dev_metrics"])
    assert results["class_names"] == ["negative", "positive"]
    assert results["dev_metrics"]["accuracy"] >= 0.9
    assert results["dev_metrics"]["mcc"] >= 0.8


def _train_cli(*args):
    proc = subprocess.run(
        [sys.executable, "-m", "kerasbert.train", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
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
        (["--export_dir", "README.md"], "--export_dir: README.md is a file, not a folder"),
        (["--model_name", "a/b"], "--model_name must be a plain folder name"),
        (["--task", "regression", "--labels", "a,b"], "--labels is for classification"),
        (["--task", "embedding"], "--task: invalid choice: 'embedding'"),
        (["--label_names", "good,bad,ugly"], "--label_names has 3 names but there are 2 classes"),
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
    code, _, stderr = _train_cli(
        "--train_file",
        stsb,
        "--vocab",
        vocab,
        "--text_column",
        "sentence1",
        "--text_pair_column",
        "sentence2",
        "--label_column",
        "score",
    )
    assert code == 2 and "use --task regression" in _last_line(stderr) and "Traceback" not in stderr
    code, _, stderr = _train_cli("--train_file", stsb, "--vocab", vocab, "--text_column", "text")
    assert code == 2 and "--text_column='text': no such column" in _last_line(stderr)
    empty = tmp_path / "empty_label.tsv"
    empty.write_text("sentence\tlabel\ngood\tpositive\nbad\t\n", encoding="utf-8")
    code, _, stderr = _train_cli("--train_file", empty, "--vocab", vocab, "--no_export")
    assert code == 2 and "Traceback" not in stderr
    assert f"{empty}:3: empty label in column 'label' (check --label_column" in _last_line(stderr)


def test_help_documents_every_flag():
    code, stdout, _ = _train_cli("finetune", "--help")
    assert code == 0
    for flag in (
        "--train_file",
        "--dev_file",
        "--text_pair_column",
        "--task",
        "--init_checkpoint",
        "--vocab",
        "--model_size",
        "--sequence_length",
        "--batch_size",
        "--epochs",
        "--learning_rate",
        "--warmup_proportion",
        "--seed",
        "--export_dir",
        "--model_name",
        "--mixed_precision",
        "--pad_to_sequence_length",
    ):
        assert flag in stdout


def test_killed_finetune_resumes_at_the_next_epoch(tmp_path):
    """SIGKILL after epoch 1; the same command continues with epoch 2."""
    import signal
    import time

    train = write_polarity_task(tmp_path / "train.tsv", 640, seed=3)
    args = [
        sys.executable,
        "-m",
        "kerasbert.train",
        "--train_file",
        str(train),
        "--vocab",
        str(SAMPLE_VOCAB),
        "--epochs",
        "3",
        "--sequence_length",
        "16",
        "--output_dir",
        str(tmp_path / "run"),
        "--no_export",
    ]
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
    # Another configuration in the same folder is refused in one line (was a
    # 55-line Keras traceback restoring mismatched weights).
    for other, what in (
        (["--num_layers", "1"], "encoder num_layers 2 -> 1"),
        (["--labels", "positive,negative"], "class_names ['negative', 'positive'] -> ['positive', 'negative']"),
    ):
        refused = subprocess.run(args + other, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
        line = _last_line(refused.stderr)
        assert line.startswith(f"error: --output_dir {tmp_path / 'run'} holds an unfinished run") and what in line
    second = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "Epoch 1/3" not in second.stdout and "Epoch 2/3" in second.stdout
    assert (tmp_path / "run" / "model.weights.h5").exists()


def test_default_output_dir_is_per_model(tmp_path):
    from kerasbert.training import finetune

    def resolved(*argv):
        args = finetune.build_parser().parse_args([str(a) for a in argv])
        return finetune._resolve(finetune.config_from_args(args))[0].output_dir

    assert resolved("--model_name", "sst2", "--no_export") == str(Path("runs") / "sst2")
    assert resolved("--no_export") == str(Path("runs") / "kerasbert")
    assert resolved("--model_name", "sst2", "--output_dir", tmp_path) == str(tmp_path)
    # The programmatic entry point resolves the same way.
    config = finetune.FinetuneConfig(model_name="stsb", export=False)
    assert finetune._resolve(config)[0].output_dir == str(Path("runs") / "stsb")


def test_label_names_rename_what_the_export_returns(tmp_path):
    """GLUE's 0/1 labels served as negative/positive (--label_names)."""
    import tensorflow as tf

    polarity = write_polarity_task(tmp_path / "words.tsv", 96, seed=4).read_text().splitlines()
    glue = tmp_path / "train.tsv"
    glue.write_text(
        "\n".join(
            [polarity[0]] + [line.replace("\tpositive", "\t1").replace("\tnegative", "\t0") for line in polarity[1:]]
        )
        + "\n",
        encoding="utf-8",
    )
    results = run_finetune(
        [
            "--train_file",
            glue,
            "--dev_file",
            glue,
            "--vocab",
            SAMPLE_VOCAB,
            "--label_names",
            "negative,positive",
            "--epochs",
            1,
            "--sequence_length",
            16,
            "--output_dir",
            tmp_path / "run",
            "--export_dir",
            tmp_path / "exports",
            "--model_name",
            "glue",
            "--quiet",
        ]
    )
    assert results["labels"] == ["0", "1"] and results["class_names"] == ["negative", "positive"]
    assert results.task.class_names == ["0", "1"]
    served = tf.saved_model.load(results["export"]).signatures["serving_default"]
    out = served(text=tf.constant(["the food was good", "it was awful"]))
    assert set(out["labels"].numpy().astype(str)) <= {"negative", "positive"}
    assert out["class_names"].numpy().astype(str).tolist() == [["negative", "positive"]] * 2
    # label=name pairs work too, and the classes keep their order.
    from kerasbert.tasks import ClassificationTask

    task = ClassificationTask(label_names="1=good")
    task.prepare(task.read_examples(glue), None)
    assert task.display_names == ["0", "good"]


def test_readme_stsb_command_pair_regression_with_dev_file(minilm_dir, tmp_path, capsys):  # noqa: F811
    """The README's STS-B command on a slice (was: TypeError in dev scoring
    of pairs), then `python -m kerasbert.export --run_dir` of the pair task."""
    import tensorflow as tf

    from kerasbert.export import cli as export_cli

    data = {}
    for split, rows in (("train", 64), ("dev", 40)):
        lines = shared_path("data", "glue_stsb", f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        data[split] = tmp_path / f"{split}.tsv"
        data[split].write_text("\n".join(lines[: rows + 1]) + "\n", encoding="utf-8")
    results = run_finetune(
        [
            "--train_file",
            data["train"],
            "--dev_file",
            data["dev"],
            "--task",
            "regression",
            "--text_column",
            "sentence1",
            "--text_pair_column",
            "sentence2",
            "--label_column",
            "score",
            "--init_checkpoint",
            minilm_dir,
            "--model_name",
            "stsb",
            "--epochs",
            1,
            "--batch_size",
            16,
            "--sequence_length",
            32,
            "--output_dir",
            tmp_path / "run",
            "--export_dir",
            tmp_path / "exports",
            "--quiet",
        ]
    )
    assert set(results["dev_metrics"]) == {"pearson", "spearman", "corr"}
    assert results["task"] == "regression" and results["text_pair"] is True
    assert -1 <= results["dev_metrics"]["pearson"] <= 1

    code = export_cli.run(["--run_dir", str(tmp_path / "run"), "--export_dir", str(tmp_path / "again")])
    assert code == 0, capsys.readouterr().err
    pairs = dict(text=tf.constant(["A man plays.", "A cat."]), text_pair=tf.constant(["A man plays.", "Rain."]))
    scores = [
        tf.saved_model.load(str(path)).signatures["serving_default"](**pairs)["score"].numpy()
        for path in (results["export"], tmp_path / "again" / "stsb" / "1")
    ]
    np.testing.assert_array_equal(scores[0], scores[1])
    meta = json.loads((tmp_path / "again" / "stsb" / "1" / "assets.extra" / "kerasbert.json").read_text())
    assert meta["task"] == "regression" and meta["signatures"]["serving_default"]["inputs"] == ["text", "text_pair"]


def test_progress_lines_when_stdout_is_not_a_terminal(tmp_path, capsys):
    """Logs and CI get step, loss, steps/s and ETA lines (here after every step: --progress_seconds 0)."""
    import re

    run_finetune(
        [
            "--train_file",
            write_polarity_task(tmp_path / "train.tsv", 96, seed=5),
            "--vocab",
            SAMPLE_VOCAB,
            "--sequence_length",
            16,
            "--batch_size",
            16,
            "--epochs",
            2,
            "--progress_seconds",
            0,
            "--output_dir",
            tmp_path / "run",
            "--no_export",
        ]
    )
    out = capsys.readouterr().out
    pattern = r"^step (\d+)/12 \((\d+)%\)  loss (\d+\.\d{4})  (\d+\.\d\d) steps/s  ETA (\w+)$"
    lines = re.findall(pattern, out, re.M)
    # The first step only starts the clock (its time is tracing); steps count on across the two epochs.
    assert [int(step) for step, *_ in lines] == list(range(2, 13)), out
    for step, percent, loss, rate, eta in lines:
        assert int(percent) == round(100 * int(step) / 12) and 0.1 < float(loss) < 2 and float(rate) > 0
        assert re.fullmatch(r"(\d+m)?\d+s", eta), eta
    assert lines[-1][-1] == "0s"
    # Keras' own line per epoch stays.
    assert len(re.findall(r"^6/6 - ", out, re.M)) == 2, out


def test_progress_seconds_must_not_be_negative(capsys):
    from kerasbert import cli, train

    assert cli.run(train.main, ["--progress_seconds", "-1"]) == 2
    assert capsys.readouterr().err == "error: --progress_seconds must be >= 0, got -1\n"


def test_max_dev_examples_must_be_positive(capsys):
    from kerasbert import cli, train

    assert cli.run(train.main, ["--max_dev_examples", "0"]) == 2
    assert capsys.readouterr().err == "error: --max_dev_examples must be at least 1\n"
