"""Resumability: SIGKILL `python -m kerasbert.train pretrain` mid-run, restart
it, and it continues from the last checkpoint (step, weights, optimizer
state AND data position) to the planned number of steps, with exactly the
losses an uninterrupted run has at the same steps.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from kerasbert.training import pretrain
from test_pretraining import pretrain_argv, write_corpus

REPO = Path(__file__).resolve().parents[1]
STEPS = 60
STEP_LINE = re.compile(r"^step (\d+)/\d+\s+loss (\S+)", re.M)


def _losses(text):
    return {int(step): float(loss) for step, loss in STEP_LINE.findall(text)}


def _command(argv):
    return [sys.executable, "-m", "kerasbert.train", "pretrain", *argv]


def test_killed_run_resumes_where_it_stopped(tmp_path, capsys):
    corpus, vocab = write_corpus(tmp_path)
    argv = pretrain_argv(
        corpus,
        vocab,
        tmp_path / "run",
        "--num_train_steps",
        STEPS,
        "--save_checkpoints_steps",
        5,
        "--dropout",
        0.1,
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))

    # 1. Start, wait for the first checkpoint, SIGKILL.
    state = tmp_path / "run" / "checkpoints" / "checkpoint"
    process = subprocess.Popen(
        _command(argv),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not state.exists() and process.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        first_output = process.communicate(timeout=60)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL, first_output[-2000:]
    saved = int(tf.train.latest_checkpoint(str(state.parent)).rsplit("-", 1)[1])
    assert 0 < saved < STEPS
    assert "done:" not in first_output

    # 2. Restart: continues from the saved step and finishes.
    completed = subprocess.run(_command(argv), env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"at step {saved}" in completed.stdout
    resumed = _losses(completed.stdout)
    assert sorted(resumed) == list(range(saved + 1, STEPS + 1))
    assert f"done: {STEPS} steps ({STEPS - saved} in this run, resumed from {saved})" in (completed.stdout)
    assert (tmp_path / "run" / "pretrained" / "model.weights.h5").exists()

    # 3. An uninterrupted run (in-process) has the same loss at every step:
    # weights, optimizer, dropout RNG and data position were all restored.
    reference_argv = pretrain_argv(
        corpus,
        vocab,
        tmp_path / "reference",
        "--num_train_steps",
        STEPS,
        "--save_checkpoints_steps",
        1000,
        "--dropout",
        0.1,
    )
    capsys.readouterr()
    assert pretrain.main(pretrain.build_parser().parse_args(reference_argv)) == 0
    reference = _losses(capsys.readouterr().out)
    assert sorted(reference) == list(range(1, STEPS + 1))
    steps = sorted(resumed)
    np.testing.assert_allclose([resumed[s] for s in steps], [reference[s] for s in steps], rtol=1e-4)
