"""The fused embedding graph, bfloat16 (export option and `kerasbert.serve --mixed_precision=bfloat16`) and
`benchmarks/bench_embeddings.py --quick`.

- the fused graph (`kerasbert.export.fused_encoder`) computes what the Keras model computes, for every
  pooling and activation, to float32 rounding (tiny random encoders);
- MiniLM in bfloat16 against float32 on an STS-B dev slice: every vector's cosine >= 0.999 and the Spearman
  correlation within 0.002 (issue 13's targets), for the bf16 export in-process and for both bf16 routes served
  by a real `kerasbert.serve`; skipped where the CPU has neither AVX512_BF16 nor AMX;
- the benchmark's quick mode records the machine facts and its peers.
"""

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, minilm_checkpoint, shared_path
from kerasbert.export.embedding import _cut_to_longest, export_embedder, fused_embedding_model
from kerasbert.modeling import build_encoder
from kerasbert.serving.server import BF16_CPU_FLAGS, apply_session_flags, build_parser, cpu_flags
from kerasbert.tasks.embedding import build_embedding_model

PAIRS = 150  # STS-B dev pairs in the quality slice (300 sentences)
needs_bf16 = pytest.mark.skipif(
    not cpu_flags() & set(BF16_CPU_FLAGS),
    reason="this CPU has neither AVX512_BF16 nor AMX: oneDNN would emulate bfloat16 (slower, not what is tested)",
)


def _features(batch=3, length=9, vocab=100, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.array([length, 5, 2][:batch])
    mask = np.arange(length)[None, :] < lengths[:, None]
    ids = np.where(mask, rng.integers(4, vocab, (batch, length)), 0).astype("int32")
    segments = np.where(np.arange(length)[None, :] >= 3, 1, 0) * mask
    return {"token_ids": ids, "segment_ids": segments.astype("int32"), "padding_mask": mask}


@pytest.mark.parametrize(
    "activation, pooling, layer",
    [
        ("gelu", "mean", -1),
        ("gelu", "cls", -2),
        ("gelu", "pooled", -1),
        ("gelu", "mean_max", 1),
        ("gelu", "first_last_avg", -1),
        ("gelu_approximate", "max", -1),
        ("relu", "mean", 0),
    ],
)
def test_fused_graph_equals_the_keras_graph(activation, pooling, layer):
    backbone = build_encoder("tiny", 100, hidden_activation=activation)
    features = _features()
    want = build_embedding_model(backbone, pooling, layer, l2_normalize=True)(features, training=False)
    got = tf.function(fused_embedding_model(backbone, pooling, layer, True))(features)
    mask = features["padding_mask"]
    np.testing.assert_allclose(got["embeddings"], want["embeddings"], atol=2e-5)
    # token vectors agree wherever a token is real (padding rows are never pooled)
    np.testing.assert_allclose(
        np.asarray(got["token_embeddings"])[mask], np.asarray(want["token_embeddings"])[mask], atol=2e-5
    )


def test_mixed_precision_flag_follows_tf_serving():
    args = build_parser().parse_args(["--model_base_path", "x", "--mixed_precision=bfloat16"])
    assert args.mixed_precision == "bfloat16"
    # TF Serving logs a warning for any other value and serves in float32; so do we
    other = SimpleNamespace(
        mixed_precision="float16", tensorflow_intra_op_parallelism=0, tensorflow_inter_op_parallelism=0
    )
    assert apply_session_flags(other) is False
    assert tf.config.optimizer.get_experimental_options().get("auto_mixed_precision_onednn_bfloat16") is None


# --------------------------------------------------------------------------- MiniLM, bfloat16 vs float32
def stsb_slice(n=PAIRS):
    path = shared_path("data", "glue_stsb", "original", "sts-dev.tsv")
    first, second, gold = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        columns = line.split("\t")
        if len(columns) >= 7:
            gold.append(float(columns[4]))
            first.append(columns[5])
            second.append(columns[6])
    return first[:n] + second[:n], np.array(gold[:n])


def spearman_of(vectors, gold):
    from scipy.stats import spearmanr

    n = len(gold)
    return float(spearmanr(np.sum(vectors[:n] * vectors[n:], axis=1), gold).statistic)


def cosines(a, b):
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def minilm():
    """MiniLM's checkpoint, preprocessor, the STS-B slice and its float32 vectors from the Keras model."""
    from kerasbert.modeling.checkpoints import load_checkpoint
    from kerasbert.preprocessing.bert_preprocessor import BertPreprocessor

    sentences, gold = stsb_slice()
    checkpoint = load_checkpoint(str(minilm_checkpoint()))
    pre = BertPreprocessor(checkpoint.vocabulary_path, lowercase=checkpoint.lowercase, sequence_length=128)
    model = build_embedding_model(checkpoint.backbone, "mean", -1, l2_normalize=True)

    def embed(fn):
        order = np.argsort([len(s) for s in sentences], kind="stable")
        out = np.zeros((len(sentences), 384), np.float32)
        for i in range(0, len(order), 64):
            index = order[i : i + 64]
            out[index] = fn(_cut_to_longest(pre(tf.constant([sentences[j] for j in index]))))["embeddings"]
        return out

    f32 = embed(tf.function(lambda f: model(f, training=False)))
    return SimpleNamespace(checkpoint=checkpoint, pre=pre, sentences=sentences, gold=gold, embed=embed, f32=f32)


def check_bf16_quality(vectors, minilm):
    cos = cosines(vectors, minilm.f32)
    assert cos.min() >= 0.999, f"cosine bf16 vs float32: min {cos.min():.6f}"
    assert cos.min() < 0.99999, "the vectors equal float32's: bfloat16 did not run"
    assert abs(spearman_of(vectors, minilm.gold) - spearman_of(minilm.f32, minilm.gold)) <= 0.002


@needs_bf16
def test_bf16_fused_graph_meets_the_accuracy_targets(minilm):
    fused32 = minilm.embed(tf.function(fused_embedding_model(minilm.checkpoint.backbone, "mean", -1, True)))
    assert cosines(fused32, minilm.f32).min() >= 0.99999
    bf16 = minilm.embed(tf.function(fused_embedding_model(minilm.checkpoint.backbone, "mean", -1, True, "bfloat16")))
    check_bf16_quality(bf16, minilm)


@needs_bf16
def test_bf16_export_reloaded_meets_the_accuracy_targets(minilm, tmp_path):
    """`--mixed_precision bfloat16` at export time: the SavedModel alone runs bf16 (what stock TF Serving loads)."""
    path = export_embedder(
        minilm.checkpoint.backbone, minilm.pre, tmp_path, "bf16", "mean", l2_normalize=True, mixed_precision="bfloat16"
    )
    serve = tf.saved_model.load(path).signatures["serving_default"]
    order = np.argsort([len(s) for s in minilm.sentences], kind="stable")
    vectors = np.zeros_like(minilm.f32)
    for i in range(0, len(order), 64):
        index = order[i : i + 64]
        vectors[index] = serve(text=tf.constant([minilm.sentences[j] for j in index]))["embeddings"].numpy()
    check_bf16_quality(vectors, minilm)


@needs_bf16
def test_served_mixed_precision_flag_runs_bf16(minilm, tmp_path):
    """The float32 export under `kerasbert.serve --mixed_precision=bfloat16` (grappler's oneDNN AMP)."""
    from kerasbert.client import Client
    from serving_utils import running_server

    export_embedder(minilm.checkpoint.backbone, minilm.pre, tmp_path, "f32", "mean", l2_normalize=True)
    flag = ["--mixed_precision=bfloat16"]
    few = 64  # one request: the quality of the whole slice is the in-process tests' job
    with running_server(model_base_path=tmp_path / "f32", model_name="f32", extra_args=flag, timeout=180) as server:
        with Client(server.address, model_name="f32", batch_size=few) as client:
            vectors = client.encode(minilm.sentences[:few])
        assert "Running inference with bfloat16 auto mixed precision" in server.log()
    cos = cosines(vectors, minilm.f32[:few])
    assert 0.999 <= cos.min() < 0.99999, f"cosine vs float32: min {cos.min():.6f} (1.0 = bfloat16 did not run)"


# --------------------------------------------------------------------------- the benchmark's quick mode
def test_bench_embeddings_quick_records_machine_and_peers(tmp_path):
    shared_path("data", "glue_stsb", "original", "sts-dev.tsv")
    pytest.importorskip("onnxruntime", reason="the ONNX Runtime peer is a test-only peer (requirements-dev.txt)")
    pytest.importorskip("torch", reason="the ONNX export needs torch (a test-only peer)")
    minilm_checkpoint()
    out = tmp_path / "embeddings.json"
    command = [sys.executable, "benchmarks/bench_embeddings.py", "--quick", "--contenders", "kerasbert_f32,ort_f32"]
    result = subprocess.run(command + ["--output", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(out.read_text())
    machine = data["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and isinstance(machine["flags"], list)
    assert {"tensorflow", "onnxruntime", "torch"} <= set(machine["libraries"])
    assert set(data["load_average"]) == {"start", "end"}
    runs = data["harness"]["rounds"]
    assert [r["contender"] for r in runs] == ["kerasbert_f32", "ort_f32"]
    assert all(isinstance(r["load_before"], float) and isinstance(r["loaded"], bool) for r in runs)
    for name in ("kerasbert_f32", "ort_f32"):
        assert data["sentences_per_second"][name]["median"] > 0
    # the peer computes the same function: same vectors, same Spearman
    quality = data["quality"]
    assert quality["ort_f32"]["cosine_vs_kerasbert_f32"]["min"] >= 0.9999
    assert abs(quality["ort_f32"]["spearman_x100"] - quality["kerasbert_f32"]["spearman_x100"]) <= 0.1
    assert "machine:" in result.stdout and "ort_f32" in result.stdout
