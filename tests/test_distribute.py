"""Distributed pretraining: strategy selection, chief detection, and the same
loss trajectory on 1 device, on 2 mirrored replicas and on 2 workers.

Logical CPU devices must be configured before TensorFlow initialises, and a
MultiWorkerMirroredStrategy needs one process per worker, so the training
runs happen in subprocesses (`DRIVER`), each printing its per-step losses
as JSON on its last line.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kerasbert.training import distribute
from test_pretraining import pretrain_argv, write_corpus

REPO = Path(__file__).resolve().parents[1]

DRIVER = textwrap.dedent(
    """
    import json, os, sys
    import tensorflow as tf
    if os.environ.get("KERASBERT_LOGICAL_CPUS"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        count = int(os.environ["KERASBERT_LOGICAL_CPUS"])
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    from kerasbert.training import distribute, pretrain
    from kerasbert.preprocessing.bert_preprocessor import load_vocabulary
    results = {}
    for name in sys.argv[1].split(","):
        argv = sys.argv[2:] + ["--output_dir", sys.argv[2 + sys.argv[2:].index("--output_dir") + 1] + "_" + name]
        args = pretrain.build_parser().parse_args(argv)
        strategy = distribute.get_strategy(name)
        config = pretrain.config_from_args(args, len(load_vocabulary(args.vocab_file)))
        data = pretrain.pipeline_dataset_fn(args, args.input_files, 0.0, "train", args.seed)
        trainer = pretrain.Pretrainer(config, data, strategy, verbose=False)
        history = trainer.train()
        results[name] = {"losses": history["losses"],
                         "replicas": strategy.num_replicas_in_sync,
                         "chief": distribute.is_chief()}
    print(json.dumps(results))
    """
)


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _result(completed_or_output):
    lines = [l for l in completed_or_output.strip().splitlines() if l.startswith("{")]
    assert lines, completed_or_output[-3000:]
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def _argv(corpus, output_dir, *extra):
    return pretrain_argv(*corpus, output_dir, "--num_train_steps", 4, "--save_checkpoints_steps", 100, *extra)


@pytest.fixture(scope="module")
def single_and_mirrored(corpus, tmp_path_factory):
    """One device vs MirroredStrategy over 2 logical CPUs, same global batch,
    same seed, XLA on; gradient accumulation on in both."""
    out = tmp_path_factory.mktemp("mirrored") / "run"
    argv = _argv(corpus, out, "--jit_compile", "--gradient_accumulation_steps", 2)
    completed = subprocess.run(
        [sys.executable, "-c", DRIVER, "default,mirrored", *argv],
        env=_env(KERASBERT_LOGICAL_CPUS="2"),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return _result(completed.stdout)


def test_mirrored_matches_one_device(single_and_mirrored):
    single, mirrored = single_and_mirrored["default"], single_and_mirrored["mirrored"]
    assert single["replicas"] == 1 and mirrored["replicas"] == 2
    assert len(single["losses"]) == len(mirrored["losses"]) == 4
    np.testing.assert_allclose(mirrored["losses"], single["losses"], rtol=1e-4)
    assert single["losses"][0] != single["losses"][-1]


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_two_processes_agree(corpus, tmp_path, single_and_mirrored):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    argv = _argv(corpus, tmp_path / "run")
    workers = []
    for index in range(2):
        config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        workers.append(
            subprocess.Popen(
                [sys.executable, "-c", DRIVER, "multi_worker", *argv],
                env=_env(TF_CONFIG=json.dumps(config)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    try:
        for worker in workers:
            stdout, stderr = worker.communicate(timeout=400)
            assert worker.returncode == 0, stderr[-3000:]
            outputs.append(_result(stdout)["multi_worker"])
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    chief, other = outputs
    assert chief["chief"] and not other["chief"]
    assert chief["replicas"] == other["replicas"] == 2
    assert len(chief["losses"]) == 4
    np.testing.assert_allclose(chief["losses"], other["losses"], rtol=1e-6)
    # Worker w reads examples w, w+2, ...: together the same global batch as
    # one device, so the same trajectory.
    np.testing.assert_allclose(chief["losses"], single_and_mirrored["default"]["losses"], rtol=1e-4)
    # Only the chief wrote checkpoints, to the real folder.
    assert (tmp_path / "run_multi_worker" / "checkpoints" / "checkpoint").exists()


def test_chief_detection(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.is_chief() and distribute.write_dir("x") == "x"
    cluster = {"worker": ["a:1", "b:2"]}
    for task, chief in [
        ({"type": "worker", "index": 0}, True),
        ({"type": "worker", "index": 1}, False),
    ]:
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
        assert distribute.is_chief() is chief
    with_chief = {"chief": ["c:0"], "worker": ["a:1"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}}))
    assert not distribute.is_chief()
    written = distribute.write_dir("x")
    assert written != "x" and os.path.isdir(written)
    distribute.cleanup_write_dir("x", written)
    assert not os.path.exists(written)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": with_chief, "task": {"type": "chief", "index": 0}}))
    assert distribute.is_chief()


def test_strategy_errors(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="strategy must be one of"):
        distribute.get_strategy("horovod")
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.get_strategy("multi_worker")
    assert distribute.get_strategy("one_device").num_replicas_in_sync == 1
