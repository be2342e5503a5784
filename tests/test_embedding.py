"""Sentence embeddings: pooling maths, layer choice, padding invariance, the
embedding export (fresh process, XLA variant, kerasbert.serve) and MiniLM
parity with sentence-transformers.

Most tests use a tiny random encoder with the sample vocabulary. The parity
test loads all-MiniLM-L6-v2 (`<repo>/../shared/tools/minilm-checkpoint`) and
sentence-transformers (test-only dependency); it skips when either is absent.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from kerasbert.export import layout
from kerasbert.export.embedding import embedding_serving_fns, export_checkpoint_embedder, export_embedder
from kerasbert.modeling import build_encoder
from kerasbert.preprocessing.bert_preprocessor import BertPreprocessor
from kerasbert.tasks.embedding import (
    POOLING_STRATEGIES,
    L2Normalize,
    SequencePooling,
    build_embedding_model,
    hidden_states,
    resolve_layer,
)
from test_checkpoints import minilm_dir  # noqa: F401  (fixture: the real MiniLM folder)

# transformers must not try its TensorFlow side (it refuses Keras 3).
os.environ.setdefault("USE_TF", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLE_VOCAB = REPO / "kerasbert" / "data" / "sample" / "vocab.txt"
STSB_DEV = SHARED / "data" / "glue_stsb" / "original" / "sts-dev.tsv"

SENTENCES = [
    "The food was really good.",
    "the staff was awful and rude",
    "quick",
    "",
    "The room was quite broken and the service was terrible, really very poor for the price",
]


# ------------------------------------------------------------ pooling maths


def test_pooling_on_hand_made_sequences():
    x = np.array(
        [
            # 3 real tokens, 2 padding positions holding huge values.
            [[1.0, -2.0], [3.0, -4.0], [5.0, -9.0], [100.0, 100.0], [100.0, 100.0]],
            # 1 real token ([CLS] only), all values negative.
            [[-7.0, -1.0], [50.0, 50.0], [50.0, 50.0], [50.0, 50.0], [50.0, 50.0]],
        ],
        np.float32,
    )
    mask = np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], bool)

    def pool(mode):
        return np.asarray(SequencePooling(mode)(x, mask))

    np.testing.assert_allclose(pool("mean"), [[3.0, -5.0], [-7.0, -1.0]])
    np.testing.assert_allclose(pool("max"), [[5.0, -2.0], [-7.0, -1.0]])
    np.testing.assert_allclose(pool("mean_max"), [[3.0, -5.0, 5.0, -2.0], [-7.0, -1.0, -7.0, -1.0]])
    np.testing.assert_allclose(pool("cls"), [[1.0, -2.0], [-7.0, -1.0]])
    # int masks (as keras-hub's BertBackbone declares them) work the same.
    np.testing.assert_allclose(SequencePooling("max")(x, mask.astype(np.int32)), pool("max"))
    # Half-precision inputs are pooled in float32.
    half = SequencePooling("mean")(x.astype(np.float16), mask)
    assert half.dtype == "float32"

    norm = np.asarray(L2Normalize()(np.array([[3.0, 4.0], [0.0, 0.0], [1e-3, 0.0]], np.float32)))
    np.testing.assert_allclose(norm, [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], rtol=1e-6)
    with pytest.raises(ValueError, match="mode must be one of"):
        SequencePooling("median")


def test_resolve_layer_counts_like_hidden_states():
    # 0 = embedding output, 1..N = blocks, -1 = last, -(N+1) = embedding output.
    assert [resolve_layer(i, 3) for i in (0, 1, 3, -1, -2, -4)] == [0, 1, 3, 3, 2, 0]
    for bad in (4, -5):
        with pytest.raises(ValueError, match=r"must be in -4\.\.3"):
            resolve_layer(bad, 3)


# ------------------------------------------------------------- tiny encoder


@pytest.fixture(scope="module")
def preprocessor():
    return BertPreprocessor(str(SAMPLE_VOCAB), lowercase=True, sequence_length=24)


@pytest.fixture(scope="module")
def encoder(preprocessor):
    import keras

    keras.utils.set_random_seed(7)
    backbone = build_encoder(
        "custom",
        vocabulary_size=preprocessor.vocabulary_size,
        num_layers=3,
        hidden_dim=16,
        num_heads=2,
        intermediate_dim=32,
        dropout=0.0,
        max_sequence_length=64,
    )
    # Larger weights than BERT's 0.02 init so layers and tokens differ clearly.
    backbone.set_weights([w * 25 if w.ndim == 2 else w for w in backbone.get_weights()])
    return backbone


def _masked_inputs(pre, texts, garbage_padding=False):
    features = {k: v.numpy() for k, v in pre(tf.constant(texts)).items()}
    if garbage_padding:  # what sits under the mask must not matter
        pad = ~features["padding_mask"]
        features["token_ids"] = np.where(pad, 7, features["token_ids"]).astype(np.int32)
        features["segment_ids"] = np.where(pad, 1, features["segment_ids"]).astype(np.int32)
    return features


def _numpy_layer_norm(x, gamma, beta, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_pooling_strategies_match_numpy_on_the_hidden_states(encoder, preprocessor):
    import keras

    features = _masked_inputs(preprocessor, SENTENCES)
    mask = features["padding_mask"]
    states = [np.asarray(s) for s in keras.Model(encoder.input, hidden_states(encoder))(features)]
    assert len(states) == 4

    # Hidden state 0 is the embedding output, computed here by hand.
    ids, segs = features["token_ids"], features["segment_ids"]
    weights = {w.path: np.asarray(w) for w in encoder.weights}
    by_suffix = lambda s: next(v for k, v in weights.items() if k.endswith(s))  # noqa: E731
    emb = (
        by_suffix("token_embedding/embeddings")[ids]
        + by_suffix("position_embedding/embeddings")[: ids.shape[1]][None]
        + by_suffix("segment_embedding/embeddings")[segs]
    )
    emb = _numpy_layer_norm(emb, by_suffix("embeddings_layer_norm/gamma"), by_suffix("embeddings_layer_norm/beta"))
    np.testing.assert_allclose(states[0], emb, atol=1e-4)
    outputs = encoder(features)
    np.testing.assert_allclose(states[-1], outputs["sequence_output"], atol=1e-6)

    m = mask[:, :, None].astype(np.float32)

    def mean(h):
        return (h * m).sum(1) / m.sum(1)

    def mx(h):
        return np.where(m > 0, h, -np.inf).max(1)

    expected = {
        ("cls", -2): states[2][:, 0],
        ("pooled", -1): np.asarray(outputs["pooled_output"]),
        ("mean", -1): mean(states[3]),
        ("mean", 0): mean(states[0]),
        ("max", 1): mx(states[1]),
        ("mean_max", -2): np.concatenate([mean(states[2]), mx(states[2])], -1),
        ("first_last_avg", -1): mean((states[1] + states[3]) / 2),
        ("first_last_avg", 2): mean((states[1] + states[2]) / 2),
    }
    assert {p for p, _ in expected} == set(POOLING_STRATEGIES)
    for (pooling, layer), want in expected.items():
        out = build_embedding_model(encoder, pooling, layer)(features)
        np.testing.assert_allclose(out["embeddings"], want, atol=2e-5, err_msg=f"{pooling} {layer}")
        if pooling != "first_last_avg":
            np.testing.assert_allclose(out["token_embeddings"], states[layer], atol=1e-6)
        unit = build_embedding_model(encoder, pooling, layer, l2_normalize=True)(features)
        np.testing.assert_allclose(unit["embeddings"], want / np.linalg.norm(want, axis=-1, keepdims=True), atol=2e-5)
    # Layers really differ (so the choice matters).
    assert np.abs(expected[("mean", -1)] - mean(states[2])).max() > 0.1


def test_bad_pooling_and_layer_are_rejected(encoder):
    with pytest.raises(ValueError, match="pooling must be one of"):
        build_embedding_model(encoder, "sum")
    with pytest.raises(ValueError, match="last layer"):
        build_embedding_model(encoder, "pooled", layer=-2)
    with pytest.raises(ValueError, match="3 transformer layers"):
        build_embedding_model(encoder, "mean", layer=4)


@pytest.mark.parametrize("pooling", ["mean", "max", "mean_max", "first_last_avg", "cls"])
def test_padding_never_leaks_into_the_embedding(encoder, pooling):
    model = build_embedding_model(encoder, pooling, layer=-1)
    short = BertPreprocessor(str(SAMPLE_VOCAB), sequence_length=16)
    long = BertPreprocessor(str(SAMPLE_VOCAB), sequence_length=64)
    texts = SENTENCES[:3]
    a = model(_masked_inputs(short, texts))["embeddings"]
    b = model(_masked_inputs(long, texts, garbage_padding=True))["embeddings"]
    np.testing.assert_allclose(a, b, atol=2e-5)

    # Through the serving function: alone, or next to a longer sentence (so
    # padded differently), a sentence gets the same vector.
    serve, _ = embedding_serving_fns(long, model)["serving_default"]
    alone = serve(tf.constant(["the food was good"]))["embeddings"]
    padded = serve(tf.constant(["the food was good", SENTENCES[4] * 3]))["embeddings"][:1]
    np.testing.assert_allclose(alone, padded, atol=2e-5)


# ------------------------------------------------------------------ export

FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # registers the tf-text ops; nothing else is imported
    texts = tf.constant(json.loads(sys.argv[1]))
    results = []
    for path in sys.argv[2:]:
        model = tf.saved_model.load(path)
        out = {}
        for name in ("serving_default", "tokens"):
            fn = model.signatures[name]
            result = fn(text=texts)
            out[name] = {
                "inputs": sorted(fn.structured_input_signature[1]),
                "outputs": {k: (v.numpy().astype(str).tolist() if v.dtype == tf.string
                                else v.numpy().tolist()) for k, v in result.items()},
                "dtypes": {k: v.dtype.name for k, v in result.items()},
            }
        results.append(out)
    leaked = sorted(
        m for m in sys.modules if m.split(".")[0] in ("keras_hub", "keras_nlp", "kerasbert"))
    print(json.dumps({"exports": results, "leaked_modules": leaked}))
    """
)


def run_fresh(texts, *version_dirs):
    """Runs the exports' signatures in one new process importing only TF + TF-Text."""
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, json.dumps(texts), *map(str, version_dirs)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def exported(encoder, preprocessor, tmp_path_factory):
    """The tiny encoder exported twice: plain and with XLA (`jit_compile`)."""
    base = tmp_path_factory.mktemp("embedding_exports")
    options = dict(pooling="mean_max", layer=-2, l2_normalize=True)
    plain = export_embedder(encoder, preprocessor, base, "tiny", **options)
    jit = export_embedder(encoder, preprocessor, base, "tiny", jit_compile=True, **options)
    model = build_embedding_model(encoder, **options)
    fresh = run_fresh(SENTENCES, plain, jit)
    assert fresh["leaked_modules"] == []
    return {
        "plain": plain,
        "jit": jit,
        "model": model,
        "base": base,
        "fresh": dict(zip(["plain", "jit"], fresh["exports"])),
    }


def test_export_reloads_in_a_fresh_process_with_identical_outputs(exported, preprocessor):
    got = exported["fresh"]["plain"]
    features = _masked_inputs(preprocessor, SENTENCES)
    want = exported["model"](features)

    default = got["serving_default"]
    assert default["inputs"] == ["text"] and default["dtypes"] == {"embeddings": "float32"}
    embeddings = np.array(default["outputs"]["embeddings"])
    assert embeddings.shape == (len(SENTENCES), 32)  # mean_max: 2 x hidden
    np.testing.assert_allclose(embeddings, want["embeddings"], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)

    tokens = got["tokens"]
    assert tokens["inputs"] == ["text"]
    assert tokens["dtypes"] == {"token_embeddings": "float32", "tokens": "string", "mask": "int32"}
    out = tokens["outputs"]
    mask = np.array(out["mask"])
    # Always the full sequence_length (so batches concatenate), zeros at padding.
    assert mask.shape == (len(SENTENCES), 24)
    np.testing.assert_array_equal(mask, features["padding_mask"])
    assert out["tokens"][0][: mask[0].sum()] == ["[CLS]", "the", "food", "was", "really", "good", ".", "[SEP]"]
    assert out["tokens"][3] == ["[CLS]", "[SEP]"] + [""] * 22
    assert all(t == "" for row, m in zip(out["tokens"], mask) for t, k in zip(row, m) if not k)
    np.testing.assert_allclose(
        out["token_embeddings"], np.asarray(want["token_embeddings"]) * mask[:, :, None], atol=1e-5
    )

    meta = layout.read_metadata(exported["plain"])
    assert meta["task"] == "embedding" and meta["pooling"] == "mean_max"
    assert (meta["layer"], meta["layer_index"], meta["num_layers"]) == (-2, 2, 3)
    assert meta["embedding_dim"] == 32 and meta["l2_normalize"] is True
    assert meta["sequence_length"] == 24 and meta["jit_compile"] is False


def test_graph_has_only_core_and_servable_tf_text_ops(exported):
    from test_export import ALLOWED_TF_TEXT_OPS, _graph_ops

    for variant in ("plain", "jit"):
        ops = _graph_ops(exported[variant])
        assert not {"PyFunc", "EagerPyFunc", "PyFuncStateless"} & ops
        assert ops - set(dir(tf.raw_ops)) <= ALLOWED_TF_TEXT_OPS


def test_xla_export_loads_fresh_and_in_kerasbert_serve(exported):
    from kerasbert.client import Client
    from serving_utils import running_server

    plain, jit = (
        np.array(exported["fresh"][variant]["serving_default"]["outputs"]["embeddings"]) for variant in ("plain", "jit")
    )
    np.testing.assert_allclose(jit, plain, atol=1e-5)
    assert layout.read_metadata(exported["jit"])["jit_compile"] is True

    # kerasbert.serve serves the newest version (the XLA one) over gRPC.
    with running_server(model_base_path=exported["base"] / "tiny", model_name="tiny") as server:
        client = Client(server.address, model_name="tiny")
        outputs = client.predict({"text": SENTENCES})
        np.testing.assert_allclose(outputs["embeddings"], plain, atol=1e-5)


def test_sequence_length_beyond_the_position_table_is_refused(encoder, tmp_path):
    too_long = BertPreprocessor(str(SAMPLE_VOCAB), sequence_length=65)
    with pytest.raises(ValueError, match="position table"):
        export_embedder(encoder, too_long, tmp_path, "m")
    assert not (tmp_path / "m").exists() or os.listdir(tmp_path / "m") == []


# --------------------------------------------------- MiniLM vs sentence-transformers


def stsb_sentences(n):
    if not STSB_DEV.exists():
        pytest.skip(f"STS-B dev set not found at {STSB_DEV} (../shared is absent)")
    sentences = []
    with open(STSB_DEV, encoding="utf-8") as f:
        for line in f:
            columns = line.rstrip("\n").split("\t")  # QUOTE_NONE; some rows have extra columns
            sentences += [columns[5], columns[6]]
            if len(sentences) >= n:
                return sentences[:n]
    return sentences


def test_minilm_embeddings_match_sentence_transformers(minilm_dir, tmp_path):
    st = pytest.importorskip(
        "sentence_transformers", reason="sentence-transformers (test/benchmark-only) is not installed"
    )
    sentences = stsb_sentences(50)
    version = export_checkpoint_embedder(
        minilm_dir, tmp_path, "minilm", sequence_length=128, pooling="mean", l2_normalize=True
    )
    ours = tf.saved_model.load(version).signatures["serving_default"]
    ours = ours(text=tf.constant(sentences))["embeddings"].numpy()

    reference = st.SentenceTransformer(str(minilm_dir), device="cpu")
    assert reference.max_seq_length == 256  # we cut at 128; no STS-B dev sentence is that long
    theirs = reference.encode(sentences, batch_size=16, convert_to_numpy=True)
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    print(
        f"MiniLM vs sentence-transformers: min cosine {cosine.min():.7f}, max |diff| {np.abs(ours - theirs).max():.2e}"
    )
    assert cosine.min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    meta = layout.read_metadata(version)
    assert meta["checkpoint_format"] == "huggingface" and meta["embedding_dim"] == 384
