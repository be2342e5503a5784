"""Checkpoint import: format detection, errors, heads, and numerical parity.

The parity test loads the real all-MiniLM-L6-v2 checkpoint (from
`<repo>/../shared/tools/minilm-checkpoint`) and compares our encoder with
transformers' `BertModel` (PyTorch, test-only dependency) on SST-2 sentences.
The other tests write tiny random models in each format themselves.
"""

import csv
import json
import sys
from pathlib import Path

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from conftest import minilm_checkpoint
from kerasbert.modeling.checkpoints import (
    HEAD_KEYS,
    assign_mlm_head,
    assign_nsp_head,
    detect_format,
    load_checkpoint,
    read_hf_weights,
    read_safetensors,
)
from kerasbert.modeling.gelu_backbone import GeluBertBackbone, set_hidden_activation

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SST2_DEV = SHARED / "data" / "glue_sst2" / "dev.tsv"

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [
    "the",
    "quick",
    "brown",
    "fox",
    "jump",
    "##s",
    "over",
    "lazy",
    "dog",
    ".",
]
TINY = dict(hidden=8, layers=2, heads=2, intermediate=16, max_positions=16)

# The seven encoder sub-layers of a block with weights: Google TF1 path ->
# Hugging Face path (kernels are [in, out] in TF1, [out, in] in HF).
_DENSES = (
    "attention/self/query",
    "attention/self/key",
    "attention/self/value",
    "attention/output/dense",
    "intermediate/dense",
    "output/dense",
)
_LAYER_NORMS = ("attention/output/LayerNorm", "output/LayerNorm")


# ------------------------------------------------------------------ writers


def tiny_config(vocab_size=len(VOCAB), **overrides):
    config = {
        "model_type": "bert",
        "architectures": ["BertForPreTraining"],
        "vocab_size": vocab_size,
        "hidden_size": TINY["hidden"],
        "num_hidden_layers": TINY["layers"],
        "num_attention_heads": TINY["heads"],
        "intermediate_size": TINY["intermediate"],
        "max_position_embeddings": TINY["max_positions"],
        "type_vocab_size": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "layer_norm_eps": 1e-12,
    }
    config.update(overrides)
    return config


def tiny_hf_weights(seed=0, config=None):
    """Random tensors with BertForPreTraining's names (no prefix), HF layout."""
    config = config or tiny_config()
    rng = np.random.default_rng(seed)
    h, inter = config["hidden_size"], config["intermediate_size"]

    def r(*shape):
        return rng.normal(0.0, 0.5, shape).astype(np.float32)

    w = {
        "embeddings.word_embeddings.weight": r(config["vocab_size"], h),
        "embeddings.position_embeddings.weight": r(config["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": r(config["type_vocab_size"], h),
        "embeddings.LayerNorm.weight": 1 + r(h),
        "embeddings.LayerNorm.bias": r(h),
        "pooler.dense.weight": r(h, h),
        "pooler.dense.bias": r(h),
        "cls.predictions.transform.dense.weight": r(h, h),
        "cls.predictions.transform.dense.bias": r(h),
        "cls.predictions.transform.LayerNorm.weight": 1 + r(h),
        "cls.predictions.transform.LayerNorm.bias": r(h),
        "cls.predictions.bias": r(config["vocab_size"]),
        "cls.seq_relationship.weight": r(2, h),
        "cls.seq_relationship.bias": r(2),
    }
    shapes = {"intermediate/dense": (inter, h), "output/dense": (h, inter)}
    for i in range(config["num_hidden_layers"]):
        for sub in _DENSES:
            name = f"encoder.layer.{i}.{sub.replace('/', '.')}"
            w[name + ".weight"] = r(*shapes.get(sub, (h, h)))
            w[name + ".bias"] = r(w[name + ".weight"].shape[0])
        for sub in _LAYER_NORMS:
            name = f"encoder.layer.{i}.{sub.replace('/', '.')}"
            w[name + ".weight"] = 1 + r(h)
            w[name + ".bias"] = r(h)
    return w


def write_vocab(folder, vocab=VOCAB):
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")


def write_safetensors(path, arrays):
    """Minimal safetensors writer (the format's spec), so no package is needed."""
    codes = {"float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32"}
    header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, array in arrays.items():
        raw = np.ascontiguousarray(array).tobytes()
        header[name] = {
            "dtype": codes[array.dtype.name],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    blob = json.dumps(header).encode()
    path.write_bytes(len(blob).to_bytes(8, "little") + blob + b"".join(chunks))


def write_hf(folder, weights, config=None, prefix="bert.", vocab=VOCAB, tokenizer_config=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config or tiny_config()))
    named = {(k if k.startswith("cls.") else prefix + k): v for k, v in weights.items()}
    write_safetensors(folder / "model.safetensors", named)
    if tokenizer_config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    write_vocab(folder, vocab)
    return folder


def google_tf1_variables(w, num_layers):
    """HF-named arrays -> Google's original TF1 variable names and layouts."""
    v = {
        "bert/embeddings/word_embeddings": w["embeddings.word_embeddings.weight"],
        "bert/embeddings/token_type_embeddings": w["embeddings.token_type_embeddings.weight"],
        "bert/embeddings/position_embeddings": w["embeddings.position_embeddings.weight"],
        "bert/embeddings/LayerNorm/gamma": w["embeddings.LayerNorm.weight"],
        "bert/embeddings/LayerNorm/beta": w["embeddings.LayerNorm.bias"],
        "bert/pooler/dense/kernel": w["pooler.dense.weight"].T,
        "bert/pooler/dense/bias": w["pooler.dense.bias"],
    }
    for i in range(num_layers):
        for sub in _DENSES:
            hf = f"encoder.layer.{i}.{sub.replace('/', '.')}"
            v[f"bert/encoder/layer_{i}/{sub}/kernel"] = w[hf + ".weight"].T
            v[f"bert/encoder/layer_{i}/{sub}/bias"] = w[hf + ".bias"]
        for sub in _LAYER_NORMS:
            hf = f"encoder.layer.{i}.{sub.replace('/', '.')}"
            v[f"bert/encoder/layer_{i}/{sub}/gamma"] = w[hf + ".weight"]
            v[f"bert/encoder/layer_{i}/{sub}/beta"] = w[hf + ".bias"]
    if "cls.predictions.bias" in w:
        v.update(
            {
                "cls/predictions/transform/dense/kernel": w["cls.predictions.transform.dense.weight"].T,
                "cls/predictions/transform/dense/bias": w["cls.predictions.transform.dense.bias"],
                "cls/predictions/transform/LayerNorm/gamma": w["cls.predictions.transform.LayerNorm.weight"],
                "cls/predictions/transform/LayerNorm/beta": w["cls.predictions.transform.LayerNorm.bias"],
                "cls/predictions/output_bias": w["cls.predictions.bias"],
                "cls/seq_relationship/output_weights": w["cls.seq_relationship.weight"],  # [2, hidden]
                "cls/seq_relationship/output_bias": w["cls.seq_relationship.bias"],
            }
        )
    return v


def write_google_tf1(folder, weights, config, vocab=VOCAB):
    """Writes bert_model.ckpt.{index,data-*} with Google's exact variable names."""
    folder.mkdir(parents=True, exist_ok=True)
    variables = google_tf1_variables(weights, config["num_hidden_layers"])
    # Optimizer slots and the step counter, as in Google's released files.
    variables["bert/embeddings/word_embeddings/adam_m"] = np.zeros_like(variables["bert/embeddings/word_embeddings"])
    variables["global_step"] = np.array(1000000, np.int64)
    names = sorted(variables)
    tf.raw_ops.SaveV2(
        prefix=str(folder / "bert_model.ckpt"),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(variables[n]) for n in names],
    )
    bert_config = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
    (folder / "bert_config.json").write_text(json.dumps(bert_config))
    write_vocab(folder, vocab)
    return folder


def tiny_inputs(vocab_size=len(VOCAB), batch=3, length=9, seed=1):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, length), np.int32)
    mask[1, 6:] = 0
    mask[2, 4:] = 0
    return {
        "token_ids": (rng.integers(5, vocab_size, (batch, length)) * mask).astype(np.int32),
        "segment_ids": (np.arange(length)[None, :] >= 3).astype(np.int32).repeat(batch, 0) * mask,
        "padding_mask": mask,
    }


def run(backbone, inputs):
    out = backbone(inputs)
    return np.asarray(out["sequence_output"]), np.asarray(out["pooled_output"])


def masked_max_diff(a, b, mask):
    return float(np.abs(a - b)[np.asarray(mask).astype(bool)].max())


# ------------------------------------------------------- formats (synthetic)


@pytest.fixture(scope="module")
def tiny_weights():
    return tiny_hf_weights()


def test_hf_tf1_and_no_prefix_folders_load_the_same_model(tmp_path, tiny_weights):
    config = tiny_config()
    hf = write_hf(tmp_path / "hf", tiny_weights, config, prefix="bert.")
    bare = write_hf(tmp_path / "bare", tiny_weights, config, prefix="")
    tf1 = write_google_tf1(tmp_path / "tf1", tiny_weights, config)
    assert [detect_format(p) for p in (hf, bare, tf1)] == ["huggingface", "huggingface", "google_tf1"]

    a = load_checkpoint(hf)
    b = load_checkpoint(bare)
    c = load_checkpoint(tf1, hidden_activation="gelu")
    assert (a.format, c.format) == ("huggingface", "google_tf1")
    assert a.vocabulary_path == str(hf / "vocab.txt") and a.lowercase and c.lowercase
    assert a.hidden_activation == "gelu"
    for loaded in (b, c):
        for x, y in zip(a.backbone.weights, loaded.backbone.weights):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=x.path)
    # Weights really came from the files (spot checks with layout changes).
    bb = a.backbone
    np.testing.assert_array_equal(
        np.asarray(bb.token_embedding.embeddings), tiny_weights["embeddings.word_embeddings.weight"]
    )
    np.testing.assert_array_equal(np.asarray(bb.pooled_dense.kernel), tiny_weights["pooler.dense.weight"].T)
    np.testing.assert_array_equal(
        np.asarray(bb.transformer_layers[1]._feedforward_output_dense.kernel),
        tiny_weights["encoder.layer.1.output.dense.weight"].T,
    )
    q = np.asarray(bb.transformer_layers[0]._self_attention_layer.query_dense.kernel)
    np.testing.assert_array_equal(q.reshape(8, 8), tiny_weights["encoder.layer.0.attention.self.query.weight"].T)

    # Heads: same arrays from both formats, Keras layout, documented keys.
    assert set(a.heads) == set(HEAD_KEYS) == set(c.heads)
    for key in HEAD_KEYS:
        np.testing.assert_array_equal(a.heads[key], c.heads[key], err_msg=key)
    assert a.heads["nsp_kernel"].shape == (8, 2)
    np.testing.assert_array_equal(a.heads["nsp_kernel"], tiny_weights["cls.seq_relationship.weight"].T)
    np.testing.assert_array_equal(a.heads["mlm_dense_kernel"], tiny_weights["cls.predictions.transform.dense.weight"].T)

    inputs = tiny_inputs()
    seq_a, pooled_a = run(a.backbone, inputs)
    seq_c, pooled_c = run(c.backbone, inputs)
    np.testing.assert_array_equal(seq_a, seq_c)
    np.testing.assert_array_equal(pooled_a, pooled_c)


def test_google_tf1_gelu_defaults_to_tanh_approximation(tmp_path, tiny_weights):
    config = tiny_config()
    tf1 = load_checkpoint(write_google_tf1(tmp_path / "tf1", tiny_weights, config))
    hf = load_checkpoint(write_hf(tmp_path / "hf", tiny_weights, config))
    assert tf1.hidden_activation == "gelu_approximate"
    inputs = tiny_inputs()
    seq_erf, _ = run(hf.backbone, inputs)
    seq_tanh, _ = run(tf1.backbone, inputs)
    assert masked_max_diff(seq_erf, seq_tanh, inputs["padding_mask"]) > 1e-4
    # Same weights in stock keras-hub BertBackbone (tanh GELU) give the TF1 numbers.
    stock = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB), num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=16
    )
    stock.set_weights(hf.backbone.get_weights())
    np.testing.assert_allclose(run(stock, inputs)[0], seq_tanh, atol=1e-6)


def test_keras_hub_preset_folder(tmp_path):
    bb = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB), num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=16
    )
    preset = tmp_path / "preset"
    bb.save_to_preset(str(preset))
    keras_hub.models.BertTokenizer(vocabulary=VOCAB, lowercase=False).save_to_preset(str(preset))
    assert detect_format(preset) == "keras_hub"
    loaded = load_checkpoint(preset)
    assert loaded.format == "keras_hub" and loaded.heads == {}
    assert loaded.lowercase is False and loaded.hidden_activation == "gelu_approximate"
    assert Path(loaded.vocabulary_path).read_text().split() == VOCAB
    inputs = tiny_inputs()
    np.testing.assert_array_equal(run(loaded.backbone, inputs)[0], run(bb, inputs)[0])

    # Our exact-GELU backbone keeps its activation through a preset round trip.
    ours = load_checkpoint(write_hf(tmp_path / "hf", tiny_hf_weights(), tiny_config())).backbone
    ours.save_to_preset(str(tmp_path / "ours"))
    keras_hub.models.BertTokenizer(vocabulary=VOCAB).save_to_preset(str(tmp_path / "ours"))
    again = load_checkpoint(tmp_path / "ours")
    assert isinstance(again.backbone, GeluBertBackbone) and again.hidden_activation == "gelu"
    np.testing.assert_array_equal(run(again.backbone, inputs)[0], run(ours, inputs)[0])


def test_describe_says_which_format_was_loaded_and_from_where(tmp_path, tiny_weights):
    """The one line fine-tuning and export print at load: the format, the folder and the file read."""
    import h5py

    config = tiny_config()
    hf = load_checkpoint(write_hf(tmp_path / "hf", tiny_weights, config))
    assert hf.describe() == (
        f"loaded Hugging Face BERT checkpoint from {tmp_path / 'hf'} (model.safetensors): "
        "2 layers x 8, gelu, uncased, MLM/NSP heads"
    )
    tf1 = load_checkpoint(write_google_tf1(tmp_path / "tf1", tiny_weights, config))
    assert tf1.describe() == (
        f"loaded Google TF1 BERT checkpoint from {tmp_path / 'tf1'} (bert_model.ckpt): "
        "2 layers x 8, gelu_approximate, uncased, MLM/NSP heads"
    )
    bb = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB), num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=16
    )
    preset = tmp_path / "preset"
    bb.save_to_preset(str(preset))
    keras_hub.models.BertTokenizer(vocabulary=VOCAB, lowercase=False).save_to_preset(str(preset))
    assert load_checkpoint(preset).describe() == (
        f"loaded keras-hub preset checkpoint from {preset}: 1 layer x 8, gelu_approximate, cased, no MLM/NSP heads"
    )
    # What `python -m kerasbert.train pretrain` writes: the preset plus its heads file.
    with h5py.File(preset / "pretraining_heads.weights.h5", "w") as f:
        for key in ("nsp_kernel", "nsp_bias"):
            f.create_dataset(key, data=hf.heads[key])
    assert load_checkpoint(preset).describe() == (
        f"loaded kerasbert pretraining output checkpoint from {preset}: 1 layer x 8, gelu_approximate, cased, NSP heads"
    )


def test_gelu_backbone_keeps_activation_through_keras_file(tmp_path):
    bb = GeluBertBackbone(
        vocabulary_size=len(VOCAB), num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=16
    )
    bb.set_weights([w * 20 for w in bb.get_weights()])  # make GELU's tails matter
    path = tmp_path / "bb.keras"
    bb.save(path)
    again = keras.saving.load_model(path)
    assert isinstance(again, GeluBertBackbone) and again.hidden_activation == "gelu"
    inputs = tiny_inputs()
    np.testing.assert_array_equal(run(again, inputs)[0], run(bb, inputs)[0])
    set_hidden_activation(again, "gelu_approximate")
    assert np.abs(run(again, inputs)[0] - run(bb, inputs)[0]).max() > 1e-4


def test_lowercase_from_tokenizer_config_or_vocab(tmp_path, tiny_weights):
    cased_vocab = VOCAB + ["Paris", "##ville"]
    cfg = tiny_config(vocab_size=len(cased_vocab))
    weights = tiny_hf_weights(config=cfg)
    explicit = write_hf(tmp_path / "a", tiny_weights, tokenizer_config={"do_lower_case": False})
    inferred = write_hf(tmp_path / "b", weights, cfg, vocab=cased_vocab)
    tf1 = write_google_tf1(tmp_path / "c", weights, cfg, vocab=cased_vocab)
    assert load_checkpoint(explicit).lowercase is False
    assert load_checkpoint(inferred).lowercase is False
    assert load_checkpoint(tf1).lowercase is False


def test_safetensors_reader_matches_the_package(tmp_path):
    torch = pytest.importorskip("torch", reason="torch (test-only) is not installed")
    save_file = pytest.importorskip("safetensors.torch", reason="safetensors (test-only) absent").save_file
    tensors = {
        "a": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 7,
        "b": torch.tensor([[1.5, -2.25], [3.0, 1e-3]], dtype=torch.bfloat16),
        "c": torch.tensor([1.0, -0.5], dtype=torch.float16),
        "d": torch.tensor([[1, 2, 3]], dtype=torch.int64),
    }
    save_file(tensors, str(tmp_path / "t.safetensors"), metadata={"format": "pt"})
    arrays = read_safetensors(tmp_path / "t.safetensors")
    assert sorted(arrays) == ["a", "b", "c", "d"]
    for name, tensor in tensors.items():
        expected = tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()
        np.testing.assert_array_equal(arrays[name].astype(expected.dtype), expected, err_msg=name)
        assert arrays[name].shape == expected.shape


# ------------------------------------------------------------------ errors


def test_unknown_folder_lists_every_format(tmp_path):
    write_vocab(tmp_path)
    with pytest.raises(ValueError) as e:
        detect_format(tmp_path)
    message = str(e.value)
    for needed in (
        "model.safetensors",
        "pytorch_model.bin",
        "bert_config.json",
        "bert_model.ckpt.index",
        "model.weights.h5",
        "vocab.txt",
    ):
        assert needed in message
    assert "it has: vocab.txt" in message
    with pytest.raises(ValueError, match="not found"):
        load_checkpoint(tmp_path / "nope" / "deeper")
    # Bare names are keras-hub preset names, passed through to from_preset.
    assert detect_format("bert_tiny_en_uncased") == "keras_hub"


def test_clear_errors_for_broken_checkpoints(tmp_path, tiny_weights):
    roberta = tmp_path / "roberta"
    write_hf(roberta, tiny_weights, tiny_config(model_type="roberta"))
    with pytest.raises(ValueError, match="only BERT"):
        load_checkpoint(roberta)

    no_weights = tmp_path / "no_weights"
    write_hf(no_weights, tiny_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="no weights"):
        load_checkpoint(no_weights)

    no_vocab = write_hf(tmp_path / "no_vocab", tiny_weights)
    (no_vocab / "vocab.txt").unlink()
    with pytest.raises(ValueError, match="vocab.txt"):
        load_checkpoint(no_vocab)

    wrong_size = write_hf(tmp_path / "wrong", tiny_weights, tiny_config(intermediate_size=32))
    with pytest.raises(ValueError, match=r"encoder\.layer\.0\.intermediate\.dense\.weight"):
        load_checkpoint(wrong_size)

    missing = dict(tiny_weights)
    del missing["encoder.layer.1.attention.self.key.bias"]
    with pytest.raises(ValueError, match=r"'encoder\.layer\.1\.attention\.self\.key\.bias' is missing"):
        load_checkpoint(write_hf(tmp_path / "missing", missing))

    with pytest.raises(ValueError, match="hidden_act"):
        load_checkpoint(write_hf(tmp_path / "act", tiny_weights, tiny_config(hidden_act="swish")))


def test_pytorch_bin_without_torch_says_so(tmp_path, monkeypatch, tiny_weights):
    folder = write_hf(tmp_path / "pt", tiny_weights)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not read")
    assert detect_format(folder) == "huggingface"
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(ImportError, match="needs torch"):
        load_checkpoint(folder)


# -------------------------------------------- heads vs transformers (tiny)


@pytest.mark.parametrize("safe_serialization", [True, False], ids=["safetensors", "pytorch_bin"])
def test_heads_match_transformers_bert_for_pretraining(tmp_path, safe_serialization):
    torch = pytest.importorskip("torch", reason="torch (test-only) is not installed")
    transformers = pytest.importorskip("transformers", reason="transformers (test-only) is not installed")
    torch.manual_seed(0)
    config = tiny_config()
    model = transformers.BertForPreTraining(transformers.BertConfig(**config, initializer_range=0.5)).eval()
    folder = tmp_path / "hf"
    model.save_pretrained(folder, safe_serialization=safe_serialization)
    write_vocab(folder)
    ckpt = load_checkpoint(folder)
    assert ckpt.format == "huggingface" and set(ckpt.heads) == set(HEAD_KEYS)

    inputs = tiny_inputs()
    with torch.no_grad():
        base = model.bert(
            input_ids=torch.tensor(inputs["token_ids"], dtype=torch.long),
            token_type_ids=torch.tensor(inputs["segment_ids"], dtype=torch.long),
            attention_mask=torch.tensor(inputs["padding_mask"], dtype=torch.long),
        )
        mlm_logits, nsp_logits = model.cls(base.last_hidden_state, base.pooler_output)
    seq, pooled = run(ckpt.backbone, inputs)
    mask = inputs["padding_mask"]
    assert masked_max_diff(seq, base.last_hidden_state.numpy(), mask) < 1e-5
    np.testing.assert_allclose(pooled, base.pooler_output.numpy(), atol=1e-5)

    head = keras_hub.layers.MaskedLMHead(
        token_embedding=ckpt.backbone.token_embedding, intermediate_activation="gelu", layer_norm_epsilon=1e-12
    )
    positions = np.tile(np.arange(inputs["token_ids"].shape[1]), (3, 1)).astype(np.int32)
    head(seq, mask_positions=positions)  # builds
    assign_mlm_head(head, ckpt.heads)
    logits = np.asarray(head(seq, mask_positions=positions))
    assert masked_max_diff(logits, mlm_logits.numpy(), mask) < 1e-4

    nsp = keras.layers.Dense(2)
    nsp.build((None, 8))
    assign_nsp_head(nsp, ckpt.heads)
    np.testing.assert_allclose(np.asarray(nsp(pooled)), nsp_logits.numpy(), atol=1e-5)


# ------------------------------------------------- real checkpoint parity


@pytest.fixture(scope="module")
def minilm_dir():
    return minilm_checkpoint()


@pytest.fixture(scope="module")
def sst2_sentences():
    if not SST2_DEV.exists():
        pytest.skip(f"SST-2 dev set not found at {SST2_DEV} (../shared is absent)")
    with open(SST2_DEV, encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        sentences = [row["sentence"] for _, row in zip(range(128), rows)]
    assert len(sentences) == 128
    return sentences


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return load_checkpoint(minilm_dir)


def test_minilm_matches_transformers(minilm_dir, minilm, sst2_sentences):
    torch = pytest.importorskip("torch", reason="torch (test-only) is not installed")
    transformers = pytest.importorskip("transformers", reason="transformers (test-only) is not installed")
    from kerasbert.preprocessing import BertPreprocessor

    assert minilm.format == "huggingface" and minilm.lowercase is True
    bb = minilm.backbone
    assert (bb.num_layers, bb.hidden_dim, bb.num_heads) == (6, 384, 12)

    length = 64  # longest of the 128 sentences is 55 word pieces: nothing truncated
    ours = BertPreprocessor(minilm.vocabulary_path, lowercase=minilm.lowercase, sequence_length=length)(
        tf.constant(sst2_sentences)
    )
    tokenizer = transformers.BertTokenizerFast.from_pretrained(minilm_dir)
    theirs = tokenizer(sst2_sentences, padding="max_length", max_length=length, truncation=True, return_tensors="np")
    assert theirs["attention_mask"].sum(axis=1).max() < length
    np.testing.assert_array_equal(ours["token_ids"].numpy(), theirs["input_ids"])
    np.testing.assert_array_equal(ours["segment_ids"].numpy(), theirs["token_type_ids"])
    np.testing.assert_array_equal(ours["padding_mask"].numpy(), theirs["attention_mask"].astype(bool))

    model = transformers.BertModel.from_pretrained(minilm_dir).eval()
    with torch.no_grad():
        ref = model(**{k: torch.tensor(v) for k, v in theirs.items()})
    seq, pooled = run(bb, ours)
    mask = theirs["attention_mask"]
    diff = masked_max_diff(seq, ref.last_hidden_state.numpy(), mask)
    pooled_diff = float(np.abs(pooled - ref.pooler_output.numpy()).max())

    # The same weights with keras-hub's stock tanh GELU, for the record.
    set_hidden_activation(bb, "gelu_approximate")
    try:
        tanh_diff = masked_max_diff(run(bb, ours)[0], ref.last_hidden_state.numpy(), mask)
    finally:
        set_hidden_activation(bb, "gelu")
    print(
        f"\nall-MiniLM-L6-v2 vs transformers BertModel on {len(sst2_sentences)} SST-2 sentences "
        f"({int(mask.sum())} tokens, token ids identical): sequence_output max abs diff {diff:.2e}, "
        f"pooled_output {pooled_diff:.2e}; with keras-hub's tanh GELU: {tanh_diff:.2e}"
    )
    assert diff <= 1e-4
    assert pooled_diff <= 1e-4
    assert tanh_diff > 1e-3  # why the exact GELU matters


def test_minilm_as_google_tf1_checkpoint_loads_identically(tmp_path, minilm_dir, minilm, sst2_sentences):
    weights = read_hf_weights(minilm_dir)
    config = json.loads((minilm_dir / "config.json").read_text())
    folder = write_google_tf1(
        tmp_path / "tf1", weights, config, vocab=(minilm_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    )
    assert sorted(p.name for p in folder.iterdir()) == [
        "bert_config.json",
        "bert_model.ckpt.data-00000-of-00001",
        "bert_model.ckpt.index",
        "vocab.txt",
    ]
    names = dict(tf.train.list_variables(str(folder / "bert_model.ckpt")))
    assert names["bert/encoder/layer_5/attention/self/query/kernel"] == [384, 384]

    tf1 = load_checkpoint(folder)
    assert tf1.format == "google_tf1" and tf1.lowercase is True
    assert tf1.hidden_activation == "gelu_approximate" and tf1.heads == {}
    for x, y in zip(minilm.backbone.weights, tf1.backbone.weights):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=x.path)

    exact = load_checkpoint(folder, hidden_activation="gelu")
    from kerasbert.preprocessing import BertPreprocessor

    pre = BertPreprocessor(exact.vocabulary_path, lowercase=exact.lowercase, sequence_length=64)
    inputs = pre(tf.constant(sst2_sentences[:16]))
    np.testing.assert_array_equal(run(exact.backbone, inputs)[0], run(minilm.backbone, inputs)[0])
