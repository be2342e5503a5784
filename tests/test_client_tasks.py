"""Task discovery and token classification through kerasbert.client, against a real `kerasbert.serve`.

Four tiny fake exports, written with `keras.export.ExportArchive` and served together on a free
loopback port (tests/serving_utils.py), each with the signatures of `kerasbert.contract`:

* "ner": token classification. Its rule, mirrored in Python by `expected_entities`: every word
  (a maximal run of non-space characters) whose first character is upper case is an entity,
  "PER" if the word has an even number of characters, else "LOC", with score 1 / length.
  Offsets are code points, computed in the graph from the UTF-8 input.
* "emb": an embedding export; "cls": a classifier; both with the `metadata` signature.
* "old": a classifier WITHOUT the `metadata` signature (an export from an older kerasbert).
* "tagger": the real NER signatures of `kerasbert.export.tagging` over a fake Keras tagger that
  tags each WordPiece by its id (`REAL_TAG_OF`), with 8-token windows, so long texts are split.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

from kerasbert import contract
from kerasbert.client import (
    Client,
    InvalidInput,
    KerasBertClientError,
    NoExportMetadata,
    SignatureNotFound,
    WrongTask,
)
from serving_utils import running_server

CLASS_NAMES = ["negative", "positive"]
ENTITY_TYPES = ["LOC", "PER"]
CLS = "[CLS]"


def expected_entities(text: str) -> list[dict]:
    """What the fake "ner" export finds in `text` (see the module docstring)."""
    found = []
    for match in re.finditer(r"[^ ]+", text):
        word = match.group()
        if word[0].lower() != word[0]:
            found.append(
                {
                    "label": "PER" if len(word) % 2 == 0 else "LOC",
                    "start": match.start(),
                    "end": match.end(),
                    "text": word,
                    "score": pytest.approx(1 / len(word)),
                }
            )
    return found


def expected_tokens(text: str) -> list[dict]:
    """The fake "ner" export's `tokens` signature: [CLS] (no offsets), then one token per word."""
    tokens = [{"token": CLS, "label": "O", "probability": 1.0, "start": None, "end": None}]
    for match in re.finditer(r"[^ ]+", text):
        word = match.group()
        upper = word[0].lower() != word[0]
        label = ("B-PER" if len(word) % 2 == 0 else "B-LOC") if upper else "O"
        tokens.append(
            {
                "token": word,
                "label": label,
                "probability": pytest.approx(1 / len(word)),
                "start": match.start(),
                "end": match.end(),
            }
        )
    return tokens


# --- the fake exports ------------------------------------------------------------------------------


def _metadata_json(task: str, **task_config) -> str:
    signatures = {name: sig.as_dict() for name, sig in contract.signatures_for(task).items()}
    return contract.ExportMetadata(
        task=task, signatures=signatures, preprocessing={"sequence_length": 16}, task_config=task_config
    ).to_json()


def _write_export(path, endpoints: dict, metadata_json: str | None) -> None:
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(keras.layers.Identity())
    for name, fn in endpoints.items():
        spec = [tf.TensorSpec([None], tf.string, name=contract.TEXT)]
        archive.add_endpoint(name, tf.function(fn, input_signature=spec))
    if metadata_json is not None:
        metadata = tf.function(lambda: {contract.METADATA: tf.constant(metadata_json)}, input_signature=[])
        archive.add_endpoint(contract.METADATA_SIGNATURE, metadata)
    archive.write_out(str(path))


def _words(text):
    """Per word of each text: (row, start, end) in code points and whether its first letter is upper case."""
    import tensorflow as tf

    space = 32
    cps = tf.strings.unicode_decode(text, "UTF-8").to_tensor(default_value=space)
    lower = tf.strings.lower(text, encoding="utf-8")
    low = tf.strings.unicode_decode(lower, "UTF-8").to_tensor(default_value=space)
    is_space = tf.equal(cps, space)
    edge = tf.ones_like(is_space[:, :1])
    starts = tf.where(~is_space & tf.concat([edge, is_space[:, :-1]], axis=1))
    ends = tf.where(~is_space & tf.concat([is_space[:, 1:], edge], axis=1))
    upper = tf.gather_nd(tf.not_equal(cps, low), starts)
    return starts[:, 0], starts[:, 1], ends[:, 1] + 1, upper


def _per_row(values, rows, n, pad):
    import tensorflow as tf

    return tf.RaggedTensor.from_value_rowids(values, rows, nrows=n).to_tensor(pad)


def _substr(text, rows, starts, lengths):
    import tensorflow as tf

    i32 = lambda v: tf.cast(v, tf.int32)  # noqa: E731
    return tf.strings.substr(tf.gather(text, rows), i32(starts), i32(lengths), unit="UTF8_CHAR")


def _entities(text):
    import tensorflow as tf

    n = tf.shape(text, out_type=tf.int64)[0]
    rows, starts, ends, upper = _words(text)
    rows, starts, ends = rows[upper], starts[upper], ends[upper]
    lengths = ends - starts
    return {
        contract.ENTITY_LABELS: _per_row(tf.where(lengths % 2 == 0, "PER", "LOC"), rows, n, ""),
        contract.ENTITY_STARTS: _per_row(starts, rows, n, -1),
        contract.ENTITY_ENDS: _per_row(ends, rows, n, -1),
        contract.ENTITY_TEXTS: _per_row(_substr(text, rows, starts, lengths), rows, n, ""),
        contract.ENTITY_SCORES: _per_row(1.0 / tf.cast(lengths, tf.float32), rows, n, 0.0),
        contract.NUM_ENTITIES: tf.math.bincount(rows, minlength=n, maxlength=n, dtype=tf.int64),
    }


def _tagged_tokens(text):
    import tensorflow as tf

    n = tf.shape(text, out_type=tf.int64)[0]
    rows, starts, ends, upper = _words(text)
    lengths = ends - starts
    labels = tf.where(upper, tf.where(lengths % 2 == 0, "B-PER", "B-LOC"), "O")

    def with_cls(values, rows_values, cls_value, pad):
        ragged = tf.RaggedTensor.from_value_rowids(values, rows_values, nrows=n)
        cls = tf.RaggedTensor.from_row_lengths(tf.fill([n], cls_value), tf.ones([n], tf.int64))
        return tf.concat([cls, ragged], axis=1).to_tensor(pad)

    return {
        contract.TOKENS: with_cls(_substr(text, rows, starts, lengths), rows, CLS, ""),
        contract.TOKEN_LABELS: with_cls(labels, rows, "O", ""),
        contract.TOKEN_PROBABILITIES: with_cls(1.0 / tf.cast(lengths, tf.float32), rows, 1.0, 0.0),
        contract.TOKEN_STARTS: with_cls(starts, rows, tf.constant(-1, tf.int64), -1),
        contract.TOKEN_ENDS: with_cls(ends, rows, tf.constant(-1, tf.int64), -1),
    }


def _classify(text):
    import tensorflow as tf

    n = tf.shape(text)[0]
    probabilities = tf.tile([[0.25, 0.75]], [n, 1])
    names = tf.constant(CLASS_NAMES)
    return {
        contract.PROBABILITIES: probabilities,
        contract.LABEL_IDS: tf.ones([n], tf.int64),
        contract.LABELS: tf.fill([n], CLASS_NAMES[1]),
        contract.CLASS_NAMES: tf.tile(names[tf.newaxis], [n, 1]),
    }


def _embed(text):
    import tensorflow as tf

    length = tf.cast(tf.strings.length(text, unit="UTF8_CHAR"), tf.float32)
    return {contract.EMBEDDINGS: tf.stack([length, tf.ones_like(length)], axis=-1)}


def _embed_tokens(text):
    import tensorflow as tf

    tokens = tf.strings.split(text).to_tensor(default_value="")
    lengths = tf.cast(tf.strings.length(tokens), tf.float32)
    return {
        contract.TOKEN_EMBEDDINGS: tf.stack([lengths, tf.ones_like(lengths)], axis=-1),
        contract.TOKENS: tokens,
        contract.MASK: tf.cast(tokens != "", tf.int32),
    }


REAL_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
REAL_TAG_OF = {"john": "B-PER", "smith": "I-PER", "muller": "B-PER", "paris": "B-LOC", "北": "B-LOC", "京": "I-LOC"}
REAL_SCORE = float(np.exp(4.0) / (np.exp(4.0) + len(REAL_TAGS) - 1))  # logit 2 for its tag, -2 for the others


def _write_real_tagger_export(path) -> None:
    """The real `kerasbert.export.tagging` signatures over a tagger whose logits depend on the id alone."""
    import keras

    from kerasbert.export.saved_model import metadata_endpoint, save_serving_archive
    from kerasbert.export.tagging import tagging_serving_fns
    from kerasbert.preprocessing.bert_preprocessor import SPECIAL_TOKENS, BertPreprocessor

    vocab = list(SPECIAL_TOKENS) + sorted(REAL_TAG_OF) + ["visited", "and", ",", "."]
    table = np.full((len(vocab), len(REAL_TAGS)), -2.0, np.float32)
    for i, token in enumerate(vocab):
        table[i, REAL_TAGS.index(REAL_TAG_OF.get(token, "O"))] = 2.0
    inputs = {
        "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
        "segment_ids": keras.Input((None,), dtype="int32", name="segment_ids"),
        "padding_mask": keras.Input((None,), dtype="bool", name="padding_mask"),
    }
    logits = keras.layers.Embedding(
        len(vocab), len(REAL_TAGS), embeddings_initializer=keras.initializers.Constant(table)
    )
    model = keras.Model(inputs, logits(inputs["token_ids"]))
    preprocessor = BertPreprocessor(vocab, sequence_length=8)
    endpoints = dict(tagging_serving_fns(preprocessor, model, REAL_TAGS))
    endpoints[contract.METADATA_SIGNATURE] = metadata_endpoint(
        _metadata_json(contract.TOKEN_CLASSIFICATION, entity_types=["LOC", "PER"])
    )
    save_serving_archive(str(path), [preprocessor, model], endpoints)


def build_fake_exports(root) -> str:
    """Writes the four fake exports (version 1 each) under `root`; returns a --model_config_file."""
    exports = {
        "ner": (
            {contract.SERVING_DEFAULT: _entities, contract.TOKENS_SIGNATURE: _tagged_tokens},
            _metadata_json(contract.TOKEN_CLASSIFICATION, entity_types=ENTITY_TYPES),
        ),
        "emb": (
            {contract.SERVING_DEFAULT: _embed, contract.TOKENS_SIGNATURE: _embed_tokens},
            _metadata_json(contract.EMBEDDING, pooling="mean"),
        ),
        "cls": (
            {contract.SERVING_DEFAULT: _classify},
            _metadata_json(contract.CLASSIFICATION, class_names=CLASS_NAMES, text_pair=False),
        ),
        "old": ({contract.SERVING_DEFAULT: _classify}, None),
    }
    entries = []
    for name, (endpoints, metadata_json) in exports.items():
        _write_export(root / name / "1", endpoints, metadata_json)
        entries.append(f'  config {{ name: "{name}" base_path: "{root / name}" model_platform: "tensorflow" }}')
    _write_real_tagger_export(root / "tagger" / "1")
    entries.append(f'  config {{ name: "tagger" base_path: "{root / "tagger"}" model_platform: "tensorflow" }}')
    config = root / "models.config"
    config.write_text("model_config_list {\n" + "\n".join(entries) + "\n}\n")
    return str(config)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = build_fake_exports(tmp_path_factory.mktemp("fake_exports"))
    with running_server(model_config_file=config, rest_api=True) as srv:
        yield srv


@pytest.fixture()
def connect(server):
    clients = []

    def make(model: str, **kwargs) -> Client:
        clients.append(Client(target=server.address, model_name=model, **kwargs))
        return clients[-1]

    yield make
    for c in clients:
        c.close()


TEXTS = [
    "Hello  wörld Ünïcode",  # accents, two spaces
    "東京 Tokyo 😀 Émile",  # CJK, emoji (one code point, two UTF-16 units, four UTF-8 bytes)
    "",
    "nothing here",
    "   Leading spaces and ÀÉÎ",
    "ＦＵＬＬ width Ｘ",  # full-width capitals
]


# --- metadata ---------------------------------------------------------------------------------------


def test_export_metadata_is_discovered_and_cached(connect, monkeypatch):
    client = connect("ner")
    calls = []
    send = client._request
    monkeypatch.setattr(
        client, "_request", lambda arrays, f, sig: calls.append((dict(arrays), sig)) or send(arrays, f, sig)
    )
    meta = client.export_metadata()
    assert isinstance(meta, contract.ExportMetadata)
    assert meta.task == client.task == contract.TOKEN_CLASSIFICATION
    assert meta.task_config == {"entity_types": ENTITY_TYPES}
    assert set(meta.signatures) == {contract.SERVING_DEFAULT, contract.TOKENS_SIGNATURE, contract.METADATA_SIGNATURE}
    assert calls == [({}, contract.METADATA_SIGNATURE)]  # one Predict without inputs, then the cache
    meta.task_config["entity_types"].append("changed")  # a copy: the cache keeps what the model said
    assert client.export_metadata().task_config == {"entity_types": ENTITY_TYPES}
    client.export_metadata(refresh=True)
    assert len(calls) == 2
    assert [connect(m).task for m in ("emb", "cls")] == [contract.EMBEDDING, contract.CLASSIFICATION]


def test_zero_input_signature_over_grpc_and_rest(server, connect):
    """kerasbert.serve answers Predict on the `metadata` signature with no inputs, on both APIs."""
    out = connect("cls")._request({}, None, contract.METADATA_SIGNATURE)
    assert contract.ExportMetadata.from_json(out[contract.METADATA].item()).task == contract.CLASSIFICATION
    for body in (
        {"signature_name": contract.METADATA_SIGNATURE},
        {"signature_name": contract.METADATA_SIGNATURE, "inputs": {}},
        {"signature_name": contract.METADATA_SIGNATURE, "instances": []},
    ):
        request = urllib.request.Request(
            f"{server.rest_url}/v1/models/cls:predict", data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        assert contract.ExportMetadata.from_json(answer["outputs"]).task_config["class_names"] == CLASS_NAMES


def test_model_without_metadata_signature(connect):
    client = connect("old")
    assert client.task is None
    with pytest.raises(NoExportMetadata, match="has no 'metadata' signature") as info:
        client.export_metadata()
    assert "older kerasbert" in str(info.value) and "predict() still works" in str(info.value)
    assert client.classify("x")[0]["label"] == "positive"  # everything else works as before
    assert set(client.predict({contract.TEXT: ["x"]})) == {
        contract.PROBABILITIES,
        contract.LABEL_IDS,
        contract.LABELS,
        contract.CLASS_NAMES,
    }
    with pytest.raises(WrongTask, match="does not say which task") as info:
        client.entities("Paris")
    assert info.value.task is None and info.value.expected == contract.TOKEN_CLASSIFICATION
    # Without metadata the hint comes from the outputs the model does have (not a list of guesses).
    assert "its outputs look like a classification export: use classify()" in str(info.value)


# --- entities and tokens ----------------------------------------------------------------------------


def test_entities_offsets_index_the_python_string(connect):
    results = connect("ner").entities(TEXTS)
    assert results == [expected_entities(t) for t in TEXTS]
    assert results[2] == [] and results[3] == []
    for text, entities in zip(TEXTS, results):
        for entity in entities:
            assert type(entity["start"]) is int and type(entity["end"]) is int
            assert text[entity["start"] : entity["end"]] == entity["text"]
    assert results[1][0] == {"label": "LOC", "start": 3, "end": 8, "text": "Tokyo", "score": pytest.approx(0.2)}
    assert results[1][1]["start"] == 11  # after the emoji, counted as one character


def test_entities_single_string_and_batches(connect, monkeypatch):
    client = connect("ner")
    assert client.entities("東京 Tokyo") == expected_entities("東京 Tokyo")  # one string: one list
    assert client.entities(["東京 Tokyo"]) == [expected_entities("東京 Tokyo")]
    assert client.entities("nothing here") == []
    # Requests of 2 texts are padded to different widths; each is decoded on its own.
    sizes = []
    send = client._start_request
    monkeypatch.setattr(
        client, "_start_request", lambda arrays, f, sig: sizes.append(len(arrays["text"])) or send(arrays, f, sig)
    )
    assert client.entities(TEXTS, batch_size=2) == [expected_entities(t) for t in TEXTS]
    assert sizes == [2, 2, 2]
    with pytest.raises(KerasBertClientError, match="different shape in each request.*entities"):
        client.predict({contract.TEXT: TEXTS}, batch_size=2)  # raw outputs cannot be joined


def test_entities_of_the_real_tagging_signatures(connect):
    """kerasbert.export.tagging's graph, served: raw code point spans over windows, through the client."""
    client = connect("tagger")
    text = "  John   Smith 😀 visited PARIS and 北京, Müller."
    spans = [("PER", "John   Smith"), ("LOC", "PARIS"), ("LOC", "北京"), ("PER", "Müller")]
    expected = [
        {"label": label, "start": text.index(span), "end": text.index(span) + len(span), "text": span}
        for label, span in spans
    ]
    assert client.task == contract.TOKEN_CLASSIFICATION
    found = client.entities(text)
    assert [{k: e[k] for k in ("label", "start", "end", "text")} for e in found] == expected
    assert [e["score"] for e in found] == pytest.approx([REAL_SCORE] * 4, abs=1e-5)
    batch = [text, "nothing", "john", text]
    assert client.entities(batch, batch_size=3) == client.entities(batch) == [found, [], client.entities("john"), found]
    tokens = client.tokens("John Müller")
    assert [(t["token"], t["label"], t["start"], t["end"]) for t in tokens] == [
        ("john", "B-PER", 0, 4),
        ("muller", "B-PER", 5, 11),
    ]


def test_tokens(connect):
    client = connect("ner")
    rows = client.tokens(TEXTS, batch_size=4)
    assert rows == [expected_tokens(t) for t in TEXTS]
    assert rows[2] == [{"token": CLS, "label": "O", "probability": 1.0, "start": None, "end": None}]
    assert client.tokens("Émile") == expected_tokens("Émile")


def test_non_string_inputs_are_named(connect):
    client = connect("ner")
    with pytest.raises(TypeError, match=r"texts\[1\] is None \(NoneType\), not a string"):
        client.entities(["Paris", None])
    with pytest.raises(TypeError, match=r"texts\[0\] is 3 \(int\)"):
        client.tokens([3])
    with pytest.raises(TypeError, match="texts must be a string or a list of strings, got NoneType"):
        client.entities(None)
    with pytest.raises(TypeError, match=r"texts\[2\] is None"):
        connect("cls").classify(["a", "b", None])
    with pytest.raises(TypeError, match=r"input 'text': element \[1\] is None"):
        client.predict({contract.TEXT: np.array(["a", None], dtype=object)})
    with pytest.raises(ValueError, match="texts is empty"):
        client.entities([])


# --- wrong-task errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, call, use",
    [
        ("emb", lambda c: c.classify("a"), "use encode(), similarity(), search() or encode_tokens()"),
        ("emb", lambda c: c.entities("Paris"), "use encode(), similarity(), search() or encode_tokens()"),
        ("cls", lambda c: c.encode("a"), "use classify()"),
        ("cls", lambda c: c.entities("Paris"), "use classify()"),
        ("cls", lambda c: c.regress("a"), "use classify()"),
        ("ner", lambda c: c.classify("a"), "use entities() or tokens()"),
        ("ner", lambda c: c.encode("a"), "use entities() or tokens()"),
        ("ner", lambda c: c.encode_tokens("a"), "use entities() or tokens()"),
    ],
)
def test_wrong_task_says_what_to_call(connect, model, call, use):
    task = {"emb": contract.EMBEDDING, "cls": contract.CLASSIFICATION, "ner": contract.TOKEN_CLASSIFICATION}[model]
    with pytest.raises(
        WrongTask, match=f"model '{model}' is an? {task} export, not an? [a-z_]+ one: {re.escape(use)}"
    ) as info:
        call(connect(model))
    assert info.value.task == task and info.value.expected in contract.TASKS and info.value.expected != task


def test_tokens_of_an_export_without_the_signature_says_to_export_again(connect):
    """The fake "cls" export has no `tokens` signature (like classification exports of older kerasbert)."""
    with pytest.raises(SignatureNotFound, match="is a classification export without a 'tokens' signature.*export the"):
        connect("cls").tokens("Paris")


def test_tokens_of_an_embedding_export(connect):
    """Every export kind answers tokens(): here the embedding export's packed WordPieces (no offsets)."""
    assert connect("emb").tokens(["a bc", "d"]) == [
        [{"token": "a", "start": None, "end": None}, {"token": "bc", "start": None, "end": None}],
        [{"token": "d", "start": None, "end": None}],
    ]


def test_rejected_request_to_another_task_becomes_wrong_task(connect):
    """A pair input the model does not take: the server's INVALID_ARGUMENT, explained by the task."""
    with pytest.raises(WrongTask, match="is an embedding export, not a classification one") as info:
        connect("emb").classify("a", "b")
    assert isinstance(info.value.__cause__, InvalidInput)
    with pytest.raises(InvalidInput):  # the right task but a wrong input stays the server's error
        connect("cls").classify("a", "b")


# --- import and command line ------------------------------------------------------------------------


def test_package_imports_without_tensorflow():
    code = (
        "import sys; import kerasbert.client as kb, kerasbert.client.cli, kerasbert.client.decoders; "
        "from kerasbert import contract; "
        "assert not [m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.python')]; "
        "assert kb.NoExportMetadata and kb.WrongTask and kb.Client.entities and kb.Client.task; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_command_line_entities(server):
    env = dict(os.environ, KERASBERT_SERVER=server.address, PYTHONIOENCODING="utf-8")

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "kerasbert.client", *args], capture_output=True, text=True, env=env, timeout=60
        )

    texts = ["東京 Tokyo 😀 Émile", "nothing here"]
    done = run("--model", "ner", "--entities", *texts)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [expected_entities(t) for t in texts]
    assert "Émile" in done.stdout  # readable, not \u escapes, on a UTF-8 stdout
    done = run("--model", "cls", "--entities", "Paris")
    assert done.returncode == 1 and "is a classification export, not a token_classification one" in done.stderr
    help_text = run("--help").stdout
    assert "--entities" in help_text and "``" not in help_text
