"""`python -m kerasbert.export`: every checkpoint format gives the same
embedding service; bad folders and flags fail with one line and exit 2.

Checkpoints are tiny random models written by the helpers of
`test_checkpoints` in each format (Hugging Face, Google TF1, keras-hub
preset, kerasbert pretrain output).
"""

import json
import os
import subprocess
import sys

import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from kerasbert.export import cli, layout
from kerasbert.modeling.checkpoints import load_checkpoint
from test_checkpoints import VOCAB, tiny_config, tiny_hf_weights, write_google_tf1, write_hf

TEXTS = ["the quick brown fox jumps over the lazy dog.", "the dog", "", "fox fox fox"]


def export(argv, capsys):
    """Runs the CLI in-process; returns (exit code, stdout, stderr)."""
    code = cli.run([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def embeddings(version_dir):
    fn = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    return fn(text=tf.constant(TEXTS))["embeddings"].numpy()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One tiny model in all four folder layouts the command accepts."""
    from kerasbert.tasks.pretraining import build_pretraining_model, save_pretrained

    root = tmp_path_factory.mktemp("checkpoints")
    # The tanh GELU for both, since Google TF1 "gelu" means that one.
    config = tiny_config(hidden_act="gelu_new")
    weights = tiny_hf_weights(seed=3, config=config)
    folders = {
        "huggingface": write_hf(root / "hf", weights, config),
        "google_tf1": write_google_tf1(root / "tf1", weights, config),
    }
    backbone = load_checkpoint(folders["huggingface"]).backbone
    preset = root / "preset"
    backbone.save_to_preset(str(preset))
    keras_hub.models.BertTokenizer(vocabulary=VOCAB).save_to_preset(str(preset))
    folders["keras_hub"] = preset
    save_pretrained(build_pretraining_model(backbone), str(root / "pretrained"), folders["huggingface"] / "vocab.txt")
    folders["kerasbert_pretrained"] = root / "pretrained"
    return folders


def test_every_checkpoint_format_exports_the_same_embedder(checkpoints, tmp_path, capsys):
    results = {}
    for kind, folder in checkpoints.items():
        code, out, err = export(
            [
                "--init_checkpoint",
                folder,
                "--mode",
                "embedding",
                "--pooling",
                "mean",
                "--layer",
                "-1",
                "--l2_normalize",
                "--sequence_length",
                16,
                "--export_dir",
                tmp_path,
                "--model_name",
                kind,
                "--json",
            ],
            capsys,
        )
        assert code == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["export"] == str(tmp_path / kind / "1")
        meta = layout.read_metadata(summary["export"])
        assert meta["checkpoint_format"] == ("keras_hub" if "keras" in kind else kind)
        assert (meta["pooling"], meta["layer_index"], meta["sequence_length"]) == ("mean", 2, 16)
        results[kind] = embeddings(summary["export"])
    reference = results.pop("huggingface")
    assert reference.shape == (len(TEXTS), 8)
    np.testing.assert_allclose(np.linalg.norm(reference, axis=1), 1.0, atol=1e-5)
    for kind, got in results.items():
        np.testing.assert_allclose(got, reference, atol=1e-5, err_msg=kind)


def test_text_summary_default_model_name_and_existing_version(checkpoints, tmp_path, capsys):
    argv = [
        "--init_checkpoint",
        checkpoints["huggingface"],
        "--export_dir",
        tmp_path,
        "--pooling",
        "cls",
        "--layer",
        "-2",
        "--sequence_length",
        12,
    ]
    code, out, err = export(argv, capsys)
    assert code == 0, err
    # The model name defaults to the checkpoint folder's name.
    assert f"to {tmp_path / 'hf' / '1'} " in out and "cls pooling of layer 1/2" in out
    assert out.startswith(
        f"loaded Hugging Face BERT checkpoint from {checkpoints['huggingface']} (model.safetensors): "
        "2 layers x 8, gelu_approximate, uncased, MLM/NSP heads\n"
    )
    assert "python -m kerasbert.serve --model_base_path" in out
    code, out, err = export(argv + ["--version", 1], capsys)
    assert code == 2 and "--version" in err and "already exists" in err
    assert layout.versions(tmp_path / "hf") == [1]


def _one_error_line(err):
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_flag_errors_are_one_line_with_exit_2(checkpoints, tmp_path, capsys):
    hf = checkpoints["huggingface"]
    cases = [
        (["--init_checkpoint", tmp_path / "missing"], "--init_checkpoint: no such folder"),
        (["--init_checkpoint", hf, "--layer", 3], "--layer: layer 3 does not exist"),
        (["--init_checkpoint", hf, "--layer", -4], "must be in -3..2"),
        (["--init_checkpoint", hf, "--pooling", "pooled", "--layer", -2], "--layer: --pooling pooled"),
        (["--init_checkpoint", hf, "--pooling", "pooled", "--layer", 1], "--layer: pooling 'pooled'"),
        (["--init_checkpoint", hf, "--sequence_length", 2], "--sequence_length must be at least 3"),
        (["--init_checkpoint", hf, "--sequence_length", 17], "--sequence_length: sequence_length 17"),
    ]
    for argv, message in cases:
        code, out, err = export(argv + ["--export_dir", tmp_path, "--model_name", "m"], capsys)
        assert code == 2, (argv, out, err)
        assert message in _one_error_line(err), (argv, err)
    # Nothing was written, not even a temporary folder.
    assert layout.versions(tmp_path / "m") == []
    assert not (tmp_path / "m").exists() or os.listdir(tmp_path / "m") == []

    # A non-BERT Hugging Face model is named as such.
    roberta = write_hf(tmp_path / "roberta", tiny_hf_weights(), tiny_config(model_type="roberta"))
    code, _, err = export(["--init_checkpoint", roberta, "--export_dir", tmp_path], capsys)
    assert code == 2 and "only BERT" in _one_error_line(err)
    # argparse's own errors (unknown choice, missing required flag) exit 2 too.
    for argv in (["--init_checkpoint", hf, "--pooling", "median"], []):
        with pytest.raises(SystemExit) as exit_info:
            cli.build_parser().parse_args([str(a) for a in argv])
        assert exit_info.value.code == 2


def test_help_documents_every_flag():
    parser = cli.build_parser()
    text = parser.format_help()
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert {a.dest for a in flags} >= {
        "init_checkpoint",
        "mode",
        "pooling",
        "layer",
        "l2_normalize",
        "sequence_length",
        "jit_compile",
        "export_dir",
        "model_name",
        "version",
    }
    for action in flags:
        assert action.help and len(action.help) > 20, action.dest
        assert action.option_strings[0] in text
    for pooling in ("cls", "pooled", "mean", "max", "mean_max", "first_last_avg"):
        assert pooling in text
    assert "--xla_cpu_compilation_enabled" in text  # what stock TF Serving needs for --jit_compile


def test_entry_point_rejects_a_folder_that_is_no_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kerasbert.export",
            "--init_checkpoint",
            str(tmp_path),
            "--export_dir",
            str(tmp_path / "exports"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = _one_error_line(proc.stderr)
    assert line.startswith("error: --init_checkpoint: ") and "notes.txt" in line
    for needed in ("huggingface: config.json", "google_tf1: bert_config.json", "keras_hub: config.json"):
        assert needed in line
    assert proc.stdout == "" and not (tmp_path / "exports").exists()


def test_entry_point_prints_no_tensorflow_noise(checkpoints, tmp_path):
    """A real export (TensorFlow imported, ops run, a SavedModel written) from a user's shell, without
    TF_CPP_MIN_LOG_LEVEL: stderr has none of TensorFlow's start-up lines (issue 14); stdout says what was loaded."""
    from test_cli import NOISE, _clean_env

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kerasbert.export",
            "--init_checkpoint",
            str(checkpoints["google_tf1"]),
            "--sequence_length",
            "16",
            "--export_dir",
            str(tmp_path),
            "--model_name",
            "tf1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=_clean_env(),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not [line for line in proc.stderr.splitlines() if any(marker in line for marker in NOISE)], proc.stderr
    assert proc.stdout.startswith(
        f"loaded Google TF1 BERT checkpoint from {checkpoints['google_tf1']} (bert_model.ckpt)"
    )
    assert layout.versions(tmp_path / "tf1") == [1]
