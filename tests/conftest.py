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
# transformers/sentence-transformers (test-only peers) must not load their
# TensorFlow side: it needs tf-keras, and we run Keras 3.
os.environ.setdefault("USE_TF", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(Path(__file__).resolve().parent))


def shared_path(*parts):
    """A path under ../shared/, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (tests that use real data need ../shared beside the repo)")
    return path


def minilm_checkpoint() -> Path:
    """The all-MiniLM-L6-v2 folder `../shared/tools/minilm-checkpoint` prints, or skip with the reason.

    The tool downloads the model on first use; an exclusive file lock keeps two test processes (pytest-xdist
    workers) from fetching it at the same time.
    """
    import fcntl
    import subprocess
    import tempfile

    tool = shared_path("tools", "minilm-checkpoint")
    with open(Path(tempfile.gettempdir()) / "kerasbert-minilm-checkpoint.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run([str(tool)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.skip(f"minilm-checkpoint could not provide all-MiniLM-L6-v2: {proc.stderr.strip()[-300:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


class FinetuneRun(dict):
    """finetune's JSON results (a dict), with the `FinetuneResult` as
    `.result` and its `model`, `preprocessor`, `task` as attributes."""

    def __init__(self, result):
        super().__init__(result.results)
        self.result = result
        self.model, self.preprocessor, self.task = result.model, result.preprocessor, result.task


def run_finetune(argv):
    """Runs the finetune command in-process; returns a `FinetuneRun`."""
    from kerasbert.training import finetune

    return FinetuneRun(finetune.run(finetune.build_parser().parse_args([str(a) for a in argv])))


POSITIVE = ["good", "great", "excellent", "wonderful", "perfect"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "broken"]
FILLER = ["the", "room", "food", "was", "really", "quite", "service", "staff", "and", "it", "very"]


def write_polarity_task(path, n, seed):
    """A quickly learnable sentiment TSV: filler words plus one polar word."""
    import random

    rng = random.Random(seed)
    lines = ["sentence\tlabel"]
    for i in range(n):
        label = "positive" if i % 2 else "negative"
        words = rng.sample(FILLER, 5)
        words.insert(rng.randrange(6), rng.choice(POSITIVE if i % 2 else NEGATIVE))
        lines.append(" ".join(words) + "\t" + label)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_export(tmp_path_factory):
    """A tiny classifier fine-tuned (from scratch, ~80 steps) on a polarity
    task with the sample vocabulary, and exported.

    Returns a dict with `results` (finetune's results), `export` (the
    version folder), `base` (the TF Serving model base path) and
    `model_name`.
    """
    root = tmp_path_factory.mktemp("finetune")
    train = write_polarity_task(root / "train.tsv", 640, seed=1)
    dev = write_polarity_task(root / "dev.tsv", 100, seed=2)
    results = run_finetune(
        [
            "--train_file",
            train,
            "--dev_file",
            dev,
            "--vocab",
            REPO / "kerasbert" / "data" / "sample" / "vocab.txt",
            "--epochs",
            4,
            "--batch_size",
            32,
            "--sequence_length",
            16,
            "--learning_rate",
            1e-3,
            "--dropout",
            0.0,
            "--output_dir",
            root / "run",
            "--export_dir",
            root / "exports",
            "--model_name",
            "sentiment",
            "--quiet",
        ]
    )
    return {
        "results": results,
        "export": results["export"],
        "base": str(root / "exports" / "sentiment"),
        "model_name": "sentiment",
    }


class TinyQA:
    """The tiny QA model of `test_question_answering.train_tiny_qa`: `.result` (its `FinetuneResult`),
    `.squad_file` (its synthetic SQuAD file), `.base` (the TF Serving model base path), `.model_name`."""

    def __init__(self, result, squad_file, base, model_name):
        self.result, self.squad_file, self.base, self.model_name = result, squad_file, base, model_name


@pytest.fixture(scope="session")
def tiny_qa(tmp_path_factory):
    """A tiny extractive-QA model trained once per session (tens of seconds) and exported; used by
    tests/test_question_answering.py, tests/test_client_qa.py and tests/test_ui.py."""
    from test_question_answering import train_tiny_qa

    root = tmp_path_factory.mktemp("tiny_qa")
    result = train_tiny_qa(root, model_name="qa")
    return TinyQA(result, str(root / "squad.json"), str(root / "exports" / "qa"), "qa")


# The slowest files first (seconds under a loaded 2-core run of the whole suite, rounded), so that with
# `-n 2 --dist loadfile --no-loadscope-reorder` (the Makefile) the two workers start on the longest files and
# finish together: longest-processing-time-first. xdist's default order (files with the most tests first)
# left the few-test heavy files (README commands, notebooks, the task harness) for the end, on one worker.
# Files not listed keep their collection order after these.
SLOW_FILES = {
    "test_readme.py": 500,
    "test_notebooks.py": 280,
    "test_task_harness.py": 270,
    "test_finetune.py": 180,
    "test_serve_batching.py": 150,
    "test_ui.py": 150,  # the four former UI files (60 + 45 + 30 + the embeddings page) in one
    "test_serve_versions.py": 130,
    "test_distribute.py": 110,
    "test_serve_hostile.py": 100,
    "test_serve.py": 90,
    "test_compat_runtimes.py": 80,
    "test_tasks.py": 70,
    "test_pretrain_pipeline.py": 65,
    "test_bench_qa.py": 80,
    "test_bench_client.py": 160,
    "test_bench_finetune.py": 60,
    "test_bench_cost.py": 80,
    "test_padding_cut.py": 60,
    "test_embedding_bf16.py": 75,
    "test_resume.py": 55,
    "test_question_answering.py": 50,
    "test_tagging_export.py": 50,
    "test_pretraining.py": 60,
    "test_export_cli.py": 40,
    "test_serve_load.py": 40,
    "test_client_qa.py": 35,
    "test_client_tasks.py": 35,
    "test_client_embeddings.py": 35,
    "test_client.py": 30,
    "test_client_pipeline.py": 30,
    "test_embedding.py": 30,
}


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: -SLOW_FILES.get(item.path.name, 0))  # stable: a file's own order is kept


# A full run peaks at about 4 GB in the temporary folder (MiniLM checkpoints and exports).
NEEDED_TMP_BYTES = 5 * 2**30


def pytest_sessionstart(session):
    if hasattr(session.config, "workerinput"):
        return  # xdist workers: the controller already checked
    import shutil
    import tempfile

    free = shutil.disk_usage(tempfile.gettempdir()).free
    if free < NEEDED_TMP_BYTES:
        raise pytest.UsageError(
            f"the test suite needs about {NEEDED_TMP_BYTES / 2**30:.0f} GB free in {tempfile.gettempdir()} "
            f"and has {free / 2**30:.1f} GB: free some space or set TMPDIR to a larger disk"
        )
