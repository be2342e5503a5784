"""`benchmarks/bench_qa.py` in quick mode: MiniLM fine-tuned for a few steps on a SQuAD slice on both
sides (kerasbert and Hugging Face, each in its own process), ours scored in-process and through a real
`python -m kerasbert.serve` over gRPC; the JSON must be complete and its numbers consistent."""

import json
import subprocess
import sys

import pytest

from conftest import REPO, minilm_checkpoint, shared_path

# 24 questions -> about 30 windows of 128 tokens -> 2 steps of 12; 12 held-out questions.
QUICK = ["--max_train_questions", "24", "--max_dev_questions", "12", "--sequence_length", "128"]
QUICK += ["--batch_size", "12", "--learning_rate", "3e-4", "--dev_eval_in_training"]


def test_bench_qa_quick_mode_writes_plausible_json(tmp_path):
    shared_path("data", "squad_v1.1", "dev-v1.1.articles-00-37.json")
    pytest.importorskip("torch", reason="the Hugging Face side needs torch (a test-only peer: make test installs it)")
    pytest.importorskip("transformers", reason="the Hugging Face side needs transformers (a test-only peer)")
    minilm_checkpoint()
    out = tmp_path / "qa_quick.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_qa.py", *QUICK, "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(out.read_text())
    machine = data["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and isinstance(machine["flags"], list)
    settings = data["settings"]
    assert settings["sequence_length"] == 128 and settings["doc_stride"] == 128 and settings["max_query_length"] == 64
    ours, hf = data["ours"], data["huggingface"]

    # The same data and the same windows on both sides (HF's overlap stride reproduces doc_stride).
    assert ours["train_questions"] == hf["train_questions"] == 24
    assert ours["dev_questions"] == hf["dev_questions"] == 12
    assert ours["dev_windows"] == hf["dev_windows"] > 12  # some contexts need several 128-token windows
    assert ours["train_windows"] <= hf["train_windows"]  # ours drops unalignable questions' windows
    assert ours["steps"] == hf["steps"] == settings["steps"] == ours["train_windows"] // 12

    for scores in (ours["dev_in_training"], ours["dev_in_process"], ours["dev_served"], hf["dev"]):
        assert 0 <= scores["exact_match"] <= scores["f1"] <= 100
    # The training's dev evaluation, the reloaded run's task.predict and the served export agree.
    for k in ("exact_match", "f1"):
        assert ours["dev_in_training"][k] == pytest.approx(ours["dev_in_process"][k], abs=1e-9)
        assert abs(data["served_minus_in_process"][k]) <= 0.1
        assert data["ours_served_minus_hf"][k] == pytest.approx(ours["dev_served"][k] - hf["dev"][k], abs=1e-3)
    assert ours["served_answers_equal_to_in_process"] >= 11
    assert ours["served_answers_equal_context_slice"] == 12  # context[start:end] == answer, every time
    assert "--task question_answering" in ours["train_command"] and "--init_checkpoint" in ours["train_command"]

    for side in (ours, hf):
        assert side["train_windows_per_second"] > 0 and side["train_seconds"] > 0
        assert all(la >= 0 for la in side["load_average"]) and isinstance(side["loaded"], bool)
    assert ours["served_questions_per_second"] > 0 and ours["in_process_questions_per_second"] > 0
    assert hf["inference_questions_per_second"] > 0
    assert hf["versions"]["torch"] and hf["versions"]["transformers"]
