"""Token-classification serving (`kerasbert.export.tagging`): raw text in,
entities with raw code point spans out, decoded in the graph; exported and
reloaded in a process that imports only tensorflow and tensorflow_text."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from kerasbert import contract
from kerasbert.export.tagging import TagScheme, decode_iob2, tagging_serving_fns
from kerasbert.preprocessing.bert_preprocessor import SPECIAL_TOKENS, BertPreprocessor

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
# The fake model tags each WordPiece by its id alone.
TAG_OF = {
    "john": "B-PER",
    "mary": "B-PER",
    "smith": "I-PER",
    "cafe": "B-PER",
    "muller": "I-PER",
    "ｊｏｈｎ": "B-PER",
    "paris": "B-LOC",
    "new": "B-LOC",
    "york": "I-LOC",
    "北": "B-LOC",
    "京": "I-LOC",
    "acme": "B-ORG",
    "ａｃｍｅ": "B-ORG",
    "corp": "I-ORG",
    "##er": "I-PER",
    "##s": "I-LOC",
    "inc": "I-ORG",
}
VOCAB = list(SPECIAL_TOKENS) + sorted(TAG_OF) + ["the", "went", "to", "and", "in", "i", "❤", ".", ",", "##a"]
SEQUENCE_LENGTH = 6  # windows of 4 tokens, so short texts already need several
WINDOW = SEQUENCE_LENGTH - 2


def logit_table():
    """Logits per token id: the tag of TAG_OF (O otherwise), confidence varying with the id."""
    table = np.full((len(VOCAB), len(TAGS)), -2.0, np.float32)
    for i, token in enumerate(VOCAB):
        table[i, TAGS.index(TAG_OF.get(token, "O"))] = 2.0 + (i % 4) * 0.5
        table[i, (i * 3) % len(TAGS)] += 0.25
    return table


def fake_tagger():
    inputs = {
        "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
        "segment_ids": keras.Input((None,), dtype="int32", name="segment_ids"),
        "padding_mask": keras.Input((None,), dtype="bool", name="padding_mask"),
    }
    embed = keras.layers.Embedding(
        len(VOCAB), len(TAGS), embeddings_initializer=keras.initializers.Constant(logit_table())
    )
    return keras.Model(inputs, embed(inputs["token_ids"]))


def probability_of(token):
    """What the fake model gives a token: (its tag, that tag's probability)."""
    row = logit_table()[VOCAB.index(token)].astype(np.float64)
    p = np.exp(row - row.max())
    p /= p.sum()
    return TAGS[int(p.argmax())], float(p.max())


@pytest.fixture(scope="module")
def endpoints():
    pre = BertPreprocessor(VOCAB, sequence_length=SEQUENCE_LENGTH)
    model = fake_tagger()
    fns = tagging_serving_fns(pre, model, TAGS)
    traced = {name: tf.function(fn, input_signature=signature) for name, (fn, signature) in fns.items()}
    return pre, model, traced


def as_lists(outputs):
    """Tensors as nested lists, strings decoded as UTF-8."""

    def plain(value):
        array = value.numpy()
        if value.dtype != tf.string:
            return array.tolist()
        return np.array([b.decode("utf-8") for b in array.ravel()], dtype=object).reshape(array.shape).tolist()

    return {k: plain(v) for k, v in outputs.items()}


def entities(endpoints, texts):
    """Per text: [(label, start, end, text), ...] from serving_default, checking
    the padding and that each entity text is `text[start:end]`."""
    out = as_lists(endpoints[2][contract.SERVING_DEFAULT](tf.constant(texts, tf.string)))
    assert sorted(out) == sorted(
        contract.signatures_for(contract.TOKEN_CLASSIFICATION)[contract.SERVING_DEFAULT].outputs
    )
    found = []
    for i, text in enumerate(texts):
        n = out[contract.NUM_ENTITIES][i]
        row = [
            (
                out[contract.ENTITY_LABELS][i][j],
                out[contract.ENTITY_STARTS][i][j],
                out[contract.ENTITY_ENDS][i][j],
                out[contract.ENTITY_TEXTS][i][j],
            )
            for j in range(n)
        ]
        for _, start, end, entity_text in row:
            assert text[start:end] == entity_text
        width = len(out[contract.ENTITY_LABELS][i])
        assert out[contract.ENTITY_LABELS][i][n:] == [""] * (width - n)
        assert out[contract.ENTITY_TEXTS][i][n:] == [""] * (width - n)
        assert out[contract.ENTITY_STARTS][i][n:] == [-1] * (width - n)
        assert out[contract.ENTITY_ENDS][i][n:] == [-1] * (width - n)
        assert out[contract.ENTITY_SCORES][i][n:] == [0.0] * (width - n)
        found.append(row)
    assert len(out[contract.ENTITY_LABELS]) == len(texts)
    assert max([0] + out[contract.NUM_ENTITIES]) == (len(out[contract.ENTITY_LABELS][0]) if texts else 0)
    return found, out


def span(text, piece, label, occurrence=0):
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(piece, start + 1)
    return (label, start, start + len(piece), piece)


CASES = {
    "two types": ("John Smith went to Paris .", [("John Smith", "PER"), ("Paris", "LOC")]),
    "adjacent same type B B": (
        "Mary John Paris Paris",
        [("Mary", "PER"), ("John", "PER"), ("Paris", "LOC"), ("Paris", "LOC", 1)],
    ),
    "I after O starts an entity": ("the smith went", [("smith", "PER")]),
    "I at the start of a text": ("smith and john", [("smith", "PER"), ("john", "PER")]),
    "I of another type starts an entity": (
        "Paris smith , Acme york",
        [("Paris", "LOC"), ("smith", "PER"), ("Acme", "ORG"), ("york", "LOC")],
    ),
    "multi-word": (
        "to John Smith Smith and New York in Acme Corp Inc",
        [("John Smith Smith", "PER"), ("New York", "LOC"), ("Acme Corp Inc", "ORG")],
    ),
    # "york ##s": the word's tag is its first token's, the span ends after ##s
    "multi-token word": ("in New Yorks .", [("New Yorks", "LOC")]),
    # the ##er continuation's own I-PER never starts or changes anything
    "continuation tags ignored": ("the Yorker went", [("Yorker", "LOC")]),
    # windows of 4 tokens: entities in the second and third window, one
    # across a window boundary, a word split by one
    "second window": ("the the the the Mary went to Paris", [("Mary", "PER"), ("Paris", "LOC")]),
    "across windows": ("the the the John Smith and New York Yorks", [("John Smith", "PER"), ("New York Yorks", "LOC")]),
    "word split by a window": ("the the the Yorks", [("Yorks", "LOC")]),
    "accents": ("Café Müller went to Paris", [("Café Müller", "PER"), ("Paris", "LOC")]),
    "decomposed accents and case": ("CAFE\u0301 MU\u0308LLER", [("CAFE\u0301 MU\u0308LLER", "PER")]),
    "emoji": ("I ❤️ Paris ❤️ 🇫🇷 Mary", [("Paris", "LOC"), ("Mary", "PER")]),
    "CJK": ("我爱北京天安门 and 北京", [("北京", "LOC"), ("北京", "LOC", 1)]),
    "full-width": ("ＪＯＨＮ Smith in Paris", [("ＪＯＨＮ Smith", "PER"), ("Paris", "LOC")]),
    "control characters": ("Jo\u200bhn\x00 Smith\x7f went", [("Jo\u200bhn\x00 Smith", "PER")]),
    "spaces tabs newlines": ("  New \t\n York  went\tto\n\nParis ", [("New \t\n York", "LOC"), ("Paris", "LOC")]),
    "mixed": (
        "\tCafé\u200b Müller ❤️  北京, ＡＣＭＥ Corp",
        [("Café\u200b Müller", "PER"), ("北京", "LOC"), ("ＡＣＭＥ Corp", "ORG")],
    ),
    "no entities": ("the went to the", []),
    "empty": ("", []),
    "whitespace only": (" \t\n  ", []),
    "control characters only": ("\x00\u200b", []),
}


def expected_spans(text, items):
    return [span(text, piece, label, *rest) for piece, label, *rest in items]


def test_entities_one_text_at_a_time(endpoints):
    for name, (text, items) in CASES.items():
        found, _ = entities(endpoints, [text])
        assert found == [expected_spans(text, items)], name


def test_entities_in_one_batch(endpoints):
    texts = [text for text, _ in CASES.values()]
    found, out = entities(endpoints, texts)
    assert found == [expected_spans(text, items) for text, items in CASES.values()]
    # The scores: the mean over the entity's words of the word's (first token's) tag probability.
    i = texts.index(CASES["multi-word"][0])
    expected = [
        np.mean([probability_of(t)[1] for t in ("john", "smith", "smith")]),
        np.mean([probability_of(t)[1] for t in ("new", "york")]),
        np.mean([probability_of(t)[1] for t in ("acme", "corp", "inc")]),
    ]
    np.testing.assert_allclose(out[contract.ENTITY_SCORES][i][:3], expected, rtol=1e-5)


def test_empty_batch_and_batches_without_entities(endpoints):
    serve = endpoints[2][contract.SERVING_DEFAULT]
    tokens = endpoints[2][contract.TOKENS_SIGNATURE]
    for texts in ([], [""], ["", " \t"], ["the went", "", "to"]):
        out = serve(tf.constant(texts, tf.string))
        for name in contract.signatures_for(contract.TOKEN_CLASSIFICATION)[contract.SERVING_DEFAULT].outputs:
            if name == contract.NUM_ENTITIES:
                assert out[name].shape == (len(texts),) and out[name].dtype == tf.int64
            else:
                assert out[name].shape == (len(texts), 0), (texts, name)
        assert out[contract.ENTITY_STARTS].dtype == tf.int64
        assert out[contract.ENTITY_SCORES].dtype == tf.float32
        assert out[contract.ENTITY_LABELS].dtype == tf.string
        out = tokens(tf.constant(texts, tf.string))
        assert out[contract.TOKENS].shape[0] == len(texts)
    out = tokens(tf.constant(["", " "]))
    assert {k: v.shape for k, v in out.items()} == {k: (2, 0) for k in out}


def test_tokens_signature(endpoints):
    text = "the Café Yorker\u200b Paris"
    out = as_lists(endpoints[2][contract.TOKENS_SIGNATURE](tf.constant([text, "mary"])))
    assert sorted(out) == sorted(
        contract.signatures_for(contract.TOKEN_CLASSIFICATION)[contract.TOKENS_SIGNATURE].outputs
    )
    tokens = ["the", "cafe", "york", "##er", "paris"]
    assert out[contract.TOKENS] == [tokens, ["mary", "", "", "", ""]]
    assert out[contract.TOKEN_LABELS][0] == [probability_of(t)[0] for t in tokens]
    np.testing.assert_allclose(out[contract.TOKEN_PROBABILITIES][0], [probability_of(t)[1] for t in tokens], rtol=1e-5)
    assert out[contract.TOKEN_PROBABILITIES][1][1:] == [0.0] * 4
    assert out[contract.TOKEN_LABELS][1][1:] == [""] * 4
    assert [text[s:e] for s, e in zip(out[contract.TOKEN_STARTS][0], out[contract.TOKEN_ENDS][0])] == [
        "the",
        "Café",
        "York",
        "er",
        "Paris",
    ]
    assert out[contract.TOKEN_STARTS][1] == [0, -1, -1, -1, -1]
    assert out[contract.TOKEN_ENDS][1] == [4, -1, -1, -1, -1]


def reference_entities(tokens, starts, ends, labels, text):
    """A plain-Python conlleval IOB2 decoder over the tokens signature's output."""
    words = []  # [tag, start, end]
    for token, start, end, label in zip(tokens, starts, ends, labels):
        if not token:
            break
        if token.startswith("##") and words:
            words[-1][2] = end
        else:
            words.append([label, start, end])
    found, previous = [], "O"
    for tag, start, end in words:
        kind = tag[2:]
        if tag.startswith("I-") and previous != "O" and previous[2:] == kind:
            found[-1][2] = end
        elif tag != "O":
            found.append([kind, start, end])
        previous = tag
    return [(kind, s, e, text[s:e]) for kind, s, e in found]


def test_random_texts_match_a_python_decoder(endpoints):
    rng = np.random.default_rng(3)
    words = [
        "John",
        "Mary",
        "Smith",
        "Café",
        "Müller",
        "Paris",
        "New",
        "York",
        "Yorks",
        "Yorker",
        "北",
        "京",
        "Acme",
        "Corp",
        "Inc",
        "the",
        "went",
        "to",
        "and",
        "❤️",
        ",",
        "ＪＯＨＮ",
        "zzz",
        "Yorka",
    ]
    separators = [" ", " ", " ", "  ", "\t", "\n", "\u200b ", ""]
    texts = []
    for _ in range(300):
        n = int(rng.integers(0, 25))
        texts.append("".join(str(rng.choice(words)) + str(rng.choice(separators)) for _ in range(n)))
    found, _ = entities(endpoints, texts)
    tokens = as_lists(endpoints[2][contract.TOKENS_SIGNATURE](tf.constant(texts)))
    for i, text in enumerate(texts):
        expected = reference_entities(
            tokens[contract.TOKENS][i],
            tokens[contract.TOKEN_STARTS][i],
            tokens[contract.TOKEN_ENDS][i],
            tokens[contract.TOKEN_LABELS][i],
            text,
        )
        assert found[i] == expected, text
    assert sum(len(f) for f in found) > 500


def test_decode_iob2_directly():
    scheme = TagScheme.from_tags(TAGS)
    tags = ["B-PER", "I-PER", "B-PER", "O", "I-LOC", "I-LOC", "I-PER", "B-ORG", "I-ORG", "I-PER"]
    rows = [0, 0, 0, 0, 0, 0, 0, 1, 1, 2]
    entity, opens, n = decode_iob2(
        scheme, tf.constant([TAGS.index(t) for t in tags], tf.int64), tf.constant(rows, tf.int64)
    )
    assert entity.numpy().tolist() == [0, 0, 1, -1, 2, 2, 3, 4, 4, 5]
    assert opens.numpy().tolist() == [True, False, True, False, True, False, True, True, False, True]
    assert int(n) == 6


def test_tag_lists_must_be_iob2():
    assert TagScheme.from_tags(["O", "B-A", "I-A", "I-B-C"]).types == ("A", "B-C")
    for bad in (["O", "S-PER"], ["O", "E-LOC"], ["O", "B-"], [], ["O", "O"], ["PER"]):
        with pytest.raises(ValueError):
            TagScheme.from_tags(bad)


def tiny_bert_tagger(vocabulary_size, num_tags):
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary_size,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQUENCE_LENGTH,
        dropout=0.0,
    )
    logits = keras.layers.Dense(num_tags)(backbone(backbone.input)["sequence_output"])
    return keras.Model(backbone.input, logits)


def test_windows_with_a_real_encoder_match_running_each_window():
    """Position-dependent model: each window's probabilities are what the
    model gives `[CLS] window [SEP]` alone, whatever else is in the batch."""
    pre = BertPreprocessor(VOCAB, sequence_length=SEQUENCE_LENGTH)
    model = tiny_bert_tagger(len(VOCAB), len(TAGS))
    fns = tagging_serving_fns(pre, model, TAGS)
    tokens_fn = tf.function(fns[contract.TOKENS_SIGNATURE][0], input_signature=fns[contract.TOKENS_SIGNATURE][1])
    texts = ["John Smith went to Paris and New York", "Mary", "", "the the the the the the the the Acme Corp"]
    batch = as_lists(tokens_fn(tf.constant(texts)))
    for i, text in enumerate(texts):
        ids = pre.tokenize(tf.constant([text]))[0].numpy().tolist()
        probabilities = []
        for w in range(0, len(ids), WINDOW):
            window = [pre.cls_id] + ids[w : w + WINDOW] + [pre.sep_id]
            features = {
                "token_ids": tf.constant([window], tf.int32),
                "segment_ids": tf.zeros([1, len(window)], tf.int32),
                "padding_mask": tf.ones([1, len(window)], tf.bool),
            }
            p = tf.nn.softmax(model(features, training=False), axis=-1).numpy()[0, 1:-1]
            probabilities += p.max(-1).tolist()
        n = len(ids)
        np.testing.assert_allclose(batch[contract.TOKEN_PROBABILITIES][i][:n], probabilities, atol=1e-5)
        alone = as_lists(tokens_fn(tf.constant([text])))
        np.testing.assert_allclose(alone[contract.TOKEN_PROBABILITIES][0], probabilities, atol=1e-5)


# The only non-core ops an export may contain (as tests/test_export.py).
ALLOWED_TF_TEXT_OPS = {"FastBertNormalize", "FastWordpieceTokenizeWithOffsets", "NormalizeUTF8"}

FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # registers the tf-text ops; nothing else is imported

    def decoded(x):
        return x.decode("utf-8") if isinstance(x, bytes) else [decoded(y) for y in x]

    def plain(value):
        return decoded(value.numpy().tolist()) if value.dtype == tf.string else value.numpy().tolist()

    texts = json.loads(sys.argv[1])
    results = []
    for path in sys.argv[2:]:
        model = tf.saved_model.load(path)
        result = {}
        for name in ("serving_default", "tokens"):
            fn = model.signatures[name]
            out = fn(text=tf.constant(texts, tf.string))
            result[name] = {
                "inputs": sorted(fn.structured_input_signature[1]),
                "dtypes": {k: v.dtype.name for k, v in out.items()},
                "outputs": {k: plain(v) for k, v in out.items()},
            }
        result["empty"] = {k: list(v.shape) for k, v in
                           model.signatures["serving_default"](text=tf.constant([], tf.string)).items()}
        results.append(result)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("keras_hub", "keras_nlp", "kerasbert"))
    print(json.dumps({"leaked_modules": leaked, "exports": results}))
    """
)

EXPORT_TEXTS = [text for text, _ in CASES.values()] + ["the " * 30 + "John Smith"]


def graph_ops(path):
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    graph = proto.meta_graphs[0].graph_def
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops |= {node.op for node in function.node_def}
    return ops


def export(path, model):
    """Writes the two signatures with `keras.export.ExportArchive`; returns them."""
    pre = BertPreprocessor(VOCAB, sequence_length=SEQUENCE_LENGTH)
    fns = tagging_serving_fns(pre, model, TAGS)
    archive = keras.export.ExportArchive()
    archive.track(pre)
    archive.track(model)
    for name, (fn, signature) in fns.items():
        archive.add_endpoint(name, fn, signature)
    archive.write_out(str(path), verbose=False)
    return fns


def test_exports_reload_in_a_fresh_process_with_identical_outputs(tmp_path):
    """The fake tagger and a tiny real BERT encoder, each exported and both
    loaded in one process that imports only tensorflow and tensorflow_text."""
    models = {"fake": fake_tagger(), "tiny_bert": tiny_bert_tagger(len(VOCAB), len(TAGS))}
    endpoints = {name: export(tmp_path / name, model) for name, model in models.items()}
    for name in models:
        ops = graph_ops(tmp_path / name)
        assert not {"PyFunc", "EagerPyFunc", "PyFuncStateless"} & ops
        assert ops - set(dir(tf.raw_ops)) <= ALLOWED_TF_TEXT_OPS

    proc = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, json.dumps(EXPORT_TEXTS)] + [str(tmp_path / n) for n in models],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["leaked_modules"] == []
    signatures = contract.signatures_for(contract.TOKEN_CLASSIFICATION)
    for encoder, got in zip(models, result["exports"]):
        fns = endpoints[encoder]
        for name in (contract.SERVING_DEFAULT, contract.TOKENS_SIGNATURE):
            fn = tf.function(fns[name][0], input_signature=fns[name][1])
            expected = as_lists(fn(tf.constant(EXPORT_TEXTS)))
            assert got[name]["inputs"] == [contract.TEXT]
            assert sorted(got[name]["outputs"]) == sorted(signatures[name].outputs)
            for key, value in expected.items():
                if key in (contract.ENTITY_SCORES, contract.TOKEN_PROBABILITIES):
                    np.testing.assert_allclose(got[name]["outputs"][key], value, atol=1e-6)
                else:
                    assert got[name]["outputs"][key] == value, (encoder, name, key)
        dtypes = got[contract.SERVING_DEFAULT]["dtypes"]
        for key in (contract.ENTITY_STARTS, contract.ENTITY_ENDS, contract.NUM_ENTITIES):
            assert dtypes[key] == "int64"
        assert dtypes[contract.ENTITY_SCORES] == "float32" and dtypes[contract.ENTITY_TEXTS] == "string"
        assert got["empty"][contract.ENTITY_LABELS] == [0, 0] and got["empty"][contract.NUM_ENTITIES] == [0]
    outputs = result["exports"][0][contract.SERVING_DEFAULT]["outputs"]  # the fake tagger's
    for i, (_, items) in enumerate(CASES.values()):
        n = outputs[contract.NUM_ENTITIES][i]
        assert outputs[contract.ENTITY_TEXTS][i][:n] == [piece for piece, *_ in items]
    assert outputs[contract.ENTITY_TEXTS][-1][:1] == ["John Smith"]
