"""`benchmarks/bench_cost.py --quick`: the served MiniLM (float32 and bf16 exports, each behind its own real
`kerasbert.serve`), ONNX Runtime and sentence-transformers, each in its own process, at 2 sequence lengths and 2
batch sizes; the JSON must have every contender and point with positive figures, the inputs must be exactly the
intended WordPiece lengths (HF tokenizer and the served graph's own tokens), and the PNG must be written."""

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import REPO

TOOL = REPO.parent / "shared" / "tools" / "minilm-checkpoint"
MISSING = [m for m in ("onnxruntime", "torch", "sentence_transformers") if importlib.util.find_spec(m) is None]

pytestmark = [
    pytest.mark.skipif(not TOOL.exists(), reason=f"{TOOL} is absent (needs ../shared beside the repo)"),
    pytest.mark.skipif(bool(MISSING), reason=f"not importable: {', '.join(MISSING)}"),
]


def test_bench_cost_quick_mode_writes_every_contender_and_point(tmp_path):
    out, png = tmp_path / "cost.json", tmp_path / "cost.png"
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_cost.py", "--quick", "--output", str(out), "--plot", str(png)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(out.read_text())
    machine = data["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and isinstance(machine["flags"], list) and machine["libraries"]
    bf16 = any(f in machine["flags"] for f in ("avx512_bf16", "amx_bf16"))
    expected = ["kerasbert_f32", "kerasbert_bf16", "ort_f32", "sentence_transformers"]
    if not bf16:
        expected.remove("kerasbert_bf16")
        assert "kerasbert_bf16" in data["skipped"]
    assert data["contenders"] == expected and data["quick"] and data["rounds"] == 1
    points = {"length16_batch32": (16, 32), "length64_batch32": (64, 32)}
    points |= {"length128_batch1": (128, 1), "length128_batch4": (128, 4)}
    assert data["points"] == list(points)
    for name in expected:
        assert set(data["curves"][name]) == set(points), name
        for key, (length, batch) in points.items():
            p = data["curves"][name][key]
            assert (p["length"], p["batch"]) == (length, batch)
            assert p["sentences_per_second"]["median"] > 0 and p["p50_ms"]["median"] > 0, (name, key)
            assert p["repetitions"]["median"] >= 2
            # one request per batch, timed one after another: rate and latency must agree
            implied = 1000 * batch / p["p50_ms"]["median"]
            assert 0.5 < p["sentences_per_second"]["median"] / implied < 2, (name, key)
    # every text is exactly its length in WordPieces, for HF's tokenizer and for the served graph
    check = data["length_check"]
    assert check["hf_tokenizer"]["hf_tokenizer_lengths"] == {"16": [16], "64": [64], "128": [128]}
    served = [c for c in expected if c.startswith("kerasbert")]
    assert check["served_tokens_signature"] == {c: {"16": 16, "64": 64, "128": 128} for c in served}
    assert data["load_average_range"][0] <= data["load_average_range"][1]
    assert isinstance(data["loaded"], bool) and set(data["loaded_contenders"]) == set(expected)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
