"""Shared test fixtures: paths to ../shared and one tiny fine-tuned export.

The fine-tuned export is trained once per session (tiny model, a few dozen
steps on the sample data shipped in the package) and reused by the export,
serving and UI end-to-end tests.
"""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(Path(__file__).resolve().parent))


def shared_path(*parts):
    """A path under ../shared/, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (tests that use real data need ../shared beside the repo)")
    return path


def run_finetune(argv):
    """Runs the finetune command in-process; returns its results dict."""
    from kerasbert.training import finetune

    return finetune.run(finetune.build_parser().parse_args([str(a) for a in argv]))


@pytest.fixture(scope="session")
def trained_export(tmp_path_factory):
    """A tiny classifier fine-tuned on the sample data and exported.

    Returns a dict with `results` (finetune's results), `export` (the
    version folder), `base` (the TF Serving model base path) and
    `model_name`.
    """
    root = tmp_path_factory.mktemp("finetune")
    results = run_finetune(
        [
            "--max_train_examples", 320, "--epochs", 2, "--batch_size", 32,
            "--sequence_length", 32, "--learning_rate", 2e-3,
            "--output_dir", root / "run", "--export_dir", root / "exports",
            "--model_name", "sentiment", "--quiet",
        ]
    )
    return {
        "results": results,
        "export": results["export"],
        "base": str(root / "exports" / "sentiment"),
        "model_name": "sentiment",
    }
