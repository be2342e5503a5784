"""`python -m kerasbert.export --run_dir`: a fine-tuned run re-exported from
its folder (run.json + vocab.txt + model.weights.h5), with no retraining,
serves exactly what the training-time export served."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kerasbert import contract
from kerasbert.export import cli, layout

TEXTS = ["the food was really good", "the staff was awful and rude", "", "Ünïcödé wonderful !!", "x " * 300]


def _outputs(version_dir, **inputs):
    loaded = tf.saved_model.load(str(version_dir))
    out = loaded.signatures[contract.SERVING_DEFAULT](**{k: tf.constant(v) for k, v in inputs.items()})
    meta = loaded.signatures[contract.METADATA_SIGNATURE]()[contract.METADATA].numpy().decode()
    return {k: v.numpy() for k, v in out.items()}, json.loads(meta)


def test_run_folder_holds_what_a_reexport_needs(trained_export):
    run_dir = trained_export["results"]["run_dir"]
    assert sorted(os.listdir(run_dir)) >= ["logs", "model.weights.h5", "results.json", "run.json", "vocab.txt"]
    with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as f:
        spec = json.load(f)
    assert spec["task"] == "classification" and spec["model_name"] == "sentiment"
    assert spec["task_config"]["class_names"] == ["negative", "positive"]
    assert spec["preprocessor"]["vocabulary"] == "vocab.txt" and spec["sequence_length"] == 16
    assert spec["encoder"]["class_name"] == "GeluBertBackbone"
    assert spec["encoder"]["config"]["num_layers"] == 2
    # Not a path into the repo: the vocabulary is copied.
    from kerasbert.preprocessing.bert_preprocessor import load_vocabulary

    assert load_vocabulary(os.path.join(run_dir, "vocab.txt")) == trained_export["results"].preprocessor.vocabulary


def test_reexport_gives_identical_outputs(trained_export, tmp_path, capsys):
    run_dir = trained_export["results"]["run_dir"]
    code = cli.run(["--run_dir", str(run_dir), "--export_dir", str(tmp_path), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    # The model name defaults to the run's.
    assert summary["export"] == str(tmp_path / "sentiment" / "1")

    before, meta_before = _outputs(trained_export["export"], text=TEXTS)
    after, meta_after = _outputs(summary["export"], text=TEXTS)
    assert set(after) == set(contract.signatures_for("classification")[contract.SERVING_DEFAULT].outputs)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    assert meta_after == meta_before
    assert meta_after["task"] == "classification" and meta_after["class_names"] == ["negative", "positive"]
    assert layout.read_metadata(summary["export"]) == meta_after

    # Again, with an explicit name and version.
    code = cli.run(
        ["--run_dir", str(run_dir), "--export_dir", str(tmp_path), "--model_name", "again", "--version", "3"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"to {tmp_path / 'again' / '3'} " in out and "classification run" in out
    np.testing.assert_array_equal(
        _outputs(tmp_path / "again" / "3", text=TEXTS)[0]["probabilities"], before["probabilities"]
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--run_dir", "{tmp}/missing"], "--run_dir: no such folder"),
        (["--run_dir", "{tmp}"], "has no run.json"),
        (["--run_dir", "{run}", "--pooling", "cls"], "--pooling is for --init_checkpoint"),
        (["--run_dir", "{run}", "--init_checkpoint", "{tmp}"], "not allowed with argument"),
    ],
)
def test_run_dir_errors_are_one_line(trained_export, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, run=trained_export["results"]["run_dir"]) for a in argv]
    try:
        code = cli.run(argv + ["--export_dir", str(tmp_path / "exports")])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    _, err = capsys.readouterr()
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "exports").exists()
