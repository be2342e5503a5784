"""`benchmarks/bench_finetune.py` in quick mode: MiniLM fine-tuned for 4 steps on 64 SST-2 sentences by
`python -m kerasbert.train` and by Hugging Face (each in its own process), scored on 64 dev sentences; the JSON
must hold both sides with the same settings, consistent rates and ratios, and the machine facts."""

import json
import subprocess
import sys

import pytest

from conftest import REPO, minilm_checkpoint, shared_path


def test_bench_finetune_quick_mode_writes_both_sides(tmp_path):
    shared_path("data", "glue_sst2", "train.tsv")
    pytest.importorskip("torch", reason="the Hugging Face side needs torch (a test-only peer: make test installs it)")
    pytest.importorskip("transformers", reason="the Hugging Face side needs transformers (a test-only peer)")
    minilm_checkpoint()
    out = tmp_path / "finetune_quick.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_finetune.py", "--quick", "--sides", "ours,hf", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,  # 69 s at a load average of 4 on the 2 cores, 8-10 min at 15-20
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(out.read_text())
    machine = data["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and isinstance(machine["flags"], list)
    settings = data["settings"]
    assert (settings["max_train_examples"], settings["batch_size"], settings["sequence_length"]) == (64, 16, 64)
    assert settings["steps"] == 4
    ours, hf = data["sides"]["ours"], data["sides"]["hf"]
    assert set(data["sides"]) == {"ours", "hf"}

    for side in (ours, hf):
        assert side["steps"] == 4 and side["train_examples"] == 64 and side["dev_examples"] == 64
        assert 0 <= side["dev_accuracy"] <= 1
        assert side["train_seconds"] > side["first_step_seconds"] > 0
        assert side["train_sequences_per_second"] == pytest.approx(4 * 16 / side["train_seconds"], rel=0.02)
        assert side["train_sequences_per_second_after_first_step"] >= side["train_sequences_per_second"] * 0.5
        assert len(side["load_average"]) == 2 and all(la >= 0 for la in side["load_average"])
        assert side["loaded"] == (max(side["load_average"]) > machine["cores"])
    assert ours["dev_accuracy"] == pytest.approx(ours["dev_metrics"]["accuracy"])
    # Hugging Face pads each batch to its longest row (DataCollatorWithPadding), not to the maximum length.
    assert 8 < hf["mean_batch_width"] < 64
    assert hf["versions"]["torch"] and hf["versions"]["transformers"]
    vs = data["vs_hf"]["ours"]
    assert vs["speedup"] == pytest.approx(ours["train_sequences_per_second"] / hf["train_sequences_per_second"], 1e-2)
    assert vs["accuracy_points"] == pytest.approx(100 * (ours["dev_accuracy"] - hf["dev_accuracy"]), abs=0.01)
    # The recorded command re-runs the same training and names no machine path.
    command = ours["train_command"]
    assert command.startswith("python -m kerasbert.train ") and "--init_checkpoint <minilm-checkpoint>" in command
    assert "--max_train_examples 64 --dev_file <work>/dev.tsv" in command and "/tmp" not in command
    assert data["rerun"].startswith("python benchmarks/bench_finetune.py --quick")
