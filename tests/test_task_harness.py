"""The shared task harness: every registered task, end to end, on tiny synthetic data.

In the spirit of keras-hub's `run_task_test`. Parametrised over `kerasbert.tasks.task_names()`,
so a newly registered task is tested automatically, and fails loudly here until it has a
recipe in `RECIPES` (tiny learnable data + how to call its client method).

For every task the harness checks:

1. build + fit: `finetune(FinetuneConfig(...))` a few dozen steps of a `tiny` encoder from
   scratch (16 tokens), then the training loss of the trained model is below that of a
   freshly initialised one, and the dev metric beats chance by a margin. Export-only tasks
   (`trainable = False`, i.e. embedding) have nothing to fit: they are exported from a tiny
   random backbone instead, and the test says so.
2. export: `export_task` (through `finetune`, or directly for export-only tasks).
3. fresh process: ONE subprocess that imports only `tensorflow` and `tensorflow_text`
   reloads every task's export; no kerasbert/keras_hub/keras_nlp module may get imported.
   Its `metadata` signature parses with `contract.ExportMetadata.from_json` and names the
   task; the export has exactly the signatures of `contract.signatures_for(task, text_pair)`,
   each with exactly those input and output names; every output equals the in-process
   model's (the task's `serving_endpoints` over the trained Keras model).
4. served: ONE `python -m kerasbert.serve` serves every task's export (a
   `--model_config_file`); through `kerasbert.client.Client`, `client.task` is the task and
   its method (classify / regress / encode / entities / answer, and tokens / encode_tokens for the
   second signature) returns the same answers as the fresh-process reload.

The fresh process and the server are shared by all tasks to keep the file fast (~2 min on
2 cores). A task whose build fails fails its own tests; the others still run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from kerasbert import contract
from kerasbert.tasks import get_task, task_names
from serving_utils import running_server

SEQUENCE_LENGTH = 16
SEED = 7
ATOL = 1e-5  # float outputs: in-process vs fresh process vs served

# ----------------------------------------------------------------------------- tiny data

POSITIVE = ["good", "great", "excellent", "wonderful", "perfect"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "broken"]
FILLER = ["the", "room", "food", "was", "really", "quite", "service", "staff", "and", "it", "very"]
PERSONS = ["Alice", "Bob", "Maria", "Peter", "Anna", "James", "Mary Jones", "John Smith"]
PLACES = ["Paris", "London", "Berlin", "Tokyo", "Rome", "Madrid", "New York", "Washington"]
NER_FILLER = ["yesterday", "went", "to", "met", "in", "and", "then", "visited", "from", "came", "today", "we"]
# "Washington" is two WordPieces (wash ##ington): only the first is labelled in training.
EXTRA_PIECES = ["wash", "##ington", ".", ","]


def write_vocab(path):
    words = set(POSITIVE + NEGATIVE + FILLER + NER_FILLER)
    for name in PERSONS + PLACES:
        words.update(w.lower() for w in name.split())
    words.discard("washington")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(words), *EXTRA_PIECES]
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def _polar_sentence(rng, positive):
    words = rng.sample(FILLER, 4)
    words.insert(rng.randrange(5), rng.choice(POSITIVE if positive else NEGATIVE))
    return " ".join(words)


def write_classification(path, n, seed):
    """Filler words plus one polar word; the label is its polarity."""
    rng = random.Random(seed)
    rows = ["sentence\tlabel"]
    for i in range(n):
        rows.append(f"{_polar_sentence(rng, i % 2)}\t{'positive' if i % 2 else 'negative'}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def write_regression(path, n, seed):
    """Sentence pairs, each with one polar word; the score is how many are positive (0, 1, 2)."""
    rng = random.Random(seed)
    rows = ["sentence1\tsentence2\tscore"]
    for _ in range(n):
        a, b = rng.random() < 0.5, rng.random() < 0.5
        rows.append(f"{_polar_sentence(rng, a)}\t{_polar_sentence(rng, b)}\t{float(a + b):.1f}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _tagged(words, kind):
    return [(w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(words.split())]


def write_ner(path, n, seed):
    """CoNLL-style `word tag` lines (IOB2): filler words around one or two names and places."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        pairs = []
        for _ in range(rng.randint(1, 2)):
            pairs += [(w, "O") for w in rng.sample(NER_FILLER, rng.randint(1, 3))]
            pairs += _tagged(rng.choice(PERSONS), "PER") if rng.random() < 0.5 else _tagged(rng.choice(PLACES), "LOC")
        pairs += [(w, "O") for w in rng.sample(NER_FILLER, rng.randint(0, 2))]
        lines += [f"{w} {t}" for w, t in pairs] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")


def squad_example(rng, qid):
    """One synthetic SQuAD question: a person and a place in filler words; the question
    ("staff and <place>" / "room and <person>") asks for the other one."""
    person, place = rng.choice(PERSONS), rng.choice(PLACES)
    parts = [" ".join(rng.sample(NER_FILLER, rng.randint(0, 2))), person, "went to", place]
    parts.append(" ".join(rng.sample(NER_FILLER, rng.randint(0, 3))))
    context = " ".join(p for p in parts if p)
    if rng.random() < 0.5:
        question, answer = f"staff and {place}", person
    else:
        question, answer = f"room and {person}", place
    start = context.index(answer, context.index(person) if answer == place else 0)
    return {"id": qid, "question": question, "answers": [{"text": answer, "answer_start": start}]}, context


def write_squad(path, n, seed, articles=2):
    """A SQuAD v1.1 JSON file of `n` synthetic questions (one per paragraph) in `articles` articles."""
    rng = random.Random(seed)
    data = [{"title": f"article {a}", "paragraphs": []} for a in range(articles)]
    for i in range(n):
        qa, context = squad_example(rng, f"q{seed}-{i}")
        data[i % articles]["paragraphs"].append({"context": context, "qas": [qa]})
    path.write_text(json.dumps({"version": "1.1", "data": data}), encoding="utf-8")


# ----------------------------------------------------------------------------- recipes


@dataclasses.dataclass
class Recipe:
    """How the harness trains (or builds) and probes one task.

    Attributes:
        write_data: `(path, n, seed)` writes a training/dev file (None: export-only task).
        task_options: `FinetuneConfig.task_options`.
        train_examples, dev_examples, epochs, batch_size, learning_rate: the tiny run.
        dev_metric, dev_threshold: the dev metric and the value it must reach (chance is
            given in `chance`, for the message).
        probe: the signature inputs sent to every signature (`text`, maybe `text_pair`).
        check_client: `(client, probe, fresh_outputs_by_signature)` asserts the client's
            answers equal the fresh process's outputs.
    """

    write_data: Callable | None
    task_options: dict
    probe: dict
    check_client: Callable
    train_examples: int = 0
    dev_examples: int = 0
    epochs: float = 2
    batch_size: int = 16
    learning_rate: float = 1e-3
    dev_metric: str = ""
    dev_threshold: float = 0.0
    chance: float = 0.0


def _check_classify(client, probe, fresh):
    out = fresh[contract.SERVING_DEFAULT]
    got = client.classify(probe[contract.TEXT])
    assert [g["label"] for g in got] == out[contract.LABELS]
    assert [g["label_id"] for g in got] == out[contract.LABEL_IDS]
    for row, probs, names in zip(got, out[contract.PROBABILITIES], out[contract.CLASS_NAMES]):
        assert list(row["probabilities"]) == names
        np.testing.assert_allclose(list(row["probabilities"].values()), probs, atol=ATOL)


def _check_regress(client, probe, fresh):
    got = client.regress(probe[contract.TEXT], probe[contract.TEXT_PAIR])
    np.testing.assert_allclose(got, fresh[contract.SERVING_DEFAULT][contract.SCORE], atol=ATOL)


def _check_encode(client, probe, fresh):
    got, shown = client.encode(probe[contract.TEXT], show_tokens=True)
    np.testing.assert_allclose(got, fresh[contract.SERVING_DEFAULT][contract.EMBEDDINGS], atol=ATOL)
    tok = fresh[contract.TOKENS_SIGNATURE]
    assert shown == [
        [t for t, k in zip(tokens, mask) if k] for tokens, mask in zip(tok[contract.TOKENS], tok[contract.MASK])
    ]
    assert shown[0][0] == "[CLS]" and shown[0][-1] == "[SEP]"
    for row, tokens, mask, vectors in zip(
        client.encode_tokens(probe[contract.TEXT]),
        tok[contract.TOKENS],
        tok[contract.MASK],
        tok[contract.TOKEN_EMBEDDINGS],
    ):
        keep = np.asarray(mask, bool)
        assert row["tokens"] == [t for t, k in zip(tokens, keep) if k]
        np.testing.assert_allclose(row["embeddings"], np.asarray(vectors)[keep], atol=1e-4)


def _check_entities(client, probe, fresh):
    texts = probe[contract.TEXT]
    out = fresh[contract.SERVING_DEFAULT]
    got = client.entities(texts)
    assert len(got) == len(texts)
    for i, (text, found) in enumerate(zip(texts, got)):
        n = out[contract.NUM_ENTITIES][i]
        expected = [
            {
                "label": out[contract.ENTITY_LABELS][i][j],
                "start": out[contract.ENTITY_STARTS][i][j],
                "end": out[contract.ENTITY_ENDS][i][j],
                "text": out[contract.ENTITY_TEXTS][i][j],
            }
            for j in range(n)
        ]
        assert [{k: e[k] for k in ("label", "start", "end", "text")} for e in found] == expected
        np.testing.assert_allclose([e["score"] for e in found], out[contract.ENTITY_SCORES][i][:n], atol=ATOL)
        assert all(text[e["start"] : e["end"]] == e["text"] for e in found)
    tok = fresh[contract.TOKENS_SIGNATURE]
    for i, rows in enumerate(client.tokens(texts)):
        keep = [j for j, t in enumerate(tok[contract.TOKENS][i]) if t != ""]
        assert [r["token"] for r in rows] == [tok[contract.TOKENS][i][j] for j in keep]
        assert [r["label"] for r in rows] == [tok[contract.TOKEN_LABELS][i][j] for j in keep]


def _check_tokens(client, probe, fresh):
    """Every export kind has a `tokens` signature: client.tokens() gives its WordPieces (padding removed) with
    the offsets the export gives, and `text[start:end]` is each token's source."""
    tok = fresh[contract.TOKENS_SIGNATURE]
    texts = probe[contract.TEXT]
    rows = client.tokens(texts)
    assert len(rows) == len(texts)
    for i, (text, row) in enumerate(zip(texts, rows)):
        keep = tok[contract.MASK][i] if contract.MASK in tok else [t != "" for t in tok[contract.TOKENS][i]]
        assert [r["token"] for r in row] == [t for t, k in zip(tok[contract.TOKENS][i], keep) if k]
        if contract.TOKEN_STARTS not in tok:
            assert all(r["start"] is None and r["end"] is None for r in row)
            continue
        spans = zip(tok[contract.TOKEN_STARTS][i], tok[contract.TOKEN_ENDS][i], keep)
        assert [(r["start"], r["end"]) for r in row] == [
            (s if s >= 0 else None, e if e >= 0 else None) for s, e, k in spans if k
        ]
        for r in row:
            if r["start"] is not None and r["token"] != "[UNK]":
                assert text[r["start"] : r["end"]].lower() == r["token"].removeprefix("##"), (text, r)


def _check_answers(client, probe, fresh):
    out = fresh[contract.SERVING_DEFAULT]
    got = client.predict({k: probe[k] for k in (contract.QUESTION, contract.CONTEXT)})
    for key, value in out.items():
        if key == contract.METADATA:
            continue
        if np.asarray(value).dtype.kind == "f":
            np.testing.assert_allclose(got[key], value, atol=ATOL, err_msg=key)
        else:
            assert np.asarray(got[key]).tolist() == value, key
    for context, answer, start, end in zip(
        probe[contract.CONTEXT], out[contract.ANSWER], out[contract.START], out[contract.END]
    ):
        assert context[start:end] == answer
    answered = client.answer(probe[contract.QUESTION], probe[contract.CONTEXT])
    assert [(a["answer"], a["start"], a["end"]) for a in answered] == list(
        zip(out[contract.ANSWER], out[contract.START], out[contract.END])
    )
    np.testing.assert_allclose([a["score"] for a in answered], out[contract.SCORE], atol=ATOL)
    for row, starts in zip(answered, out[contract.ANSWER_STARTS]):
        assert [c["start"] for c in row["n_best"]] == [s for s in starts if s >= 0]


RECIPES: dict[str, Recipe] = {
    contract.CLASSIFICATION: Recipe(
        write_data=write_classification,
        task_options={"label_names": ["neg", "pos"]},
        train_examples=384,
        dev_examples=64,
        epochs=3,
        batch_size=16,
        dev_metric="accuracy",
        dev_threshold=0.85,
        chance=0.5,
        probe={contract.TEXT: ["the food was really wonderful", "it was broken and awful", "good"]},
        check_client=_check_classify,
    ),
    contract.REGRESSION: Recipe(
        write_data=write_regression,
        task_options={"text_column": "sentence1", "text_pair_column": "sentence2", "label_column": "score"},
        train_examples=384,
        dev_examples=64,
        epochs=2,
        batch_size=16,
        dev_metric="pearson",
        dev_threshold=0.6,
        chance=0.0,
        probe={
            contract.TEXT: ["the staff was great", "it was poor", "very bad food"],
            contract.TEXT_PAIR: ["the room was perfect", "really good service", "terrible"],
        },
        check_client=_check_regress,
    ),
    # Export-only: nothing to fine-tune (EmbeddingTask.trainable is False); exported from a
    # tiny random backbone instead.
    contract.EMBEDDING: Recipe(
        write_data=None,
        task_options={"pooling": "mean", "l2_normalize": True},
        probe={contract.TEXT: ["the food was good", "Alice went to Paris", "awful"]},
        check_client=_check_encode,
    ),
    contract.TOKEN_CLASSIFICATION: Recipe(
        write_data=write_ner,
        task_options={"format": "conll"},
        train_examples=384,
        dev_examples=64,
        epochs=2,
        batch_size=16,
        dev_metric="f1",
        dev_threshold=0.7,
        chance=0.0,
        probe={
            contract.TEXT: [
                "Yesterday Alice went to New York.",
                "we met John Smith in Washington",
                "the food was good",
                "Maria  came from   Tokyo today",
            ]
        },
        check_client=_check_entities,
    ),
    # Windows of 16 - 5 - 3 = 8 context tokens, stride 3: most contexts need several.
    contract.QUESTION_ANSWERING: Recipe(
        write_data=write_squad,
        task_options={"max_query_length": 5, "doc_stride": 3, "max_answer_length": 4, "n_best": 3},
        train_examples=384,
        dev_examples=64,
        epochs=5,  # 120 steps (3 epochs: dev EM 58)
        batch_size=16,
        dev_metric="exact_match",
        dev_threshold=60.0,
        chance=10.0,
        probe={
            contract.QUESTION: ["staff and Paris", "room and Mary Jones", "staff and Tokyo", "room and Bob"],
            contract.TEXT: ["where did Mary Jones go?", "Berlin"],  # the `tokens` signature's input
            contract.CONTEXT: [
                "yesterday Alice went to Paris",
                "then we met in Berlin and Mary Jones went to New York today from Rome",
                "",
                "Bob went to Washington",
            ],
        },
        check_client=_check_answers,
    ),
}


def recipe_for(name):
    if name not in RECIPES:
        pytest.fail(
            f"task {name!r} is registered but tests/test_task_harness.py has no recipe for it: add "
            f"RECIPES[{name!r}] = Recipe(...) (tiny learnable data, probe inputs, the client check)"
        )
    return RECIPES[name]


# ----------------------------------------------------------------------------- building


@dataclasses.dataclass
class Built:
    """One task's run: the trained objects, the export and what the checks need."""

    name: str
    export: str = ""
    task: Any = None
    model: Any = None
    preprocessor: Any = None
    results: dict = dataclasses.field(default_factory=dict)
    losses: tuple = ()  # (freshly initialised, trained) training loss
    in_process: dict = dataclasses.field(default_factory=dict)  # signature -> outputs
    error: str = ""


def _as_lists(outputs):
    """Signature outputs as plain JSON-able lists (strings decoded)."""
    import tensorflow as tf

    def decoded(value):
        if isinstance(value, list):
            return [decoded(v) for v in value]
        return value.decode("utf-8") if isinstance(value, bytes) else value

    def plain(value):
        return decoded((value.numpy() if isinstance(value, tf.Tensor) else np.asarray(value)).tolist())

    return {k: plain(v) for k, v in outputs.items()}


def _in_process_outputs(task, preprocessor, model, probe):
    """Each serving signature's outputs on `probe`, run in this process over the Keras model."""
    import tensorflow as tf

    found = {}
    for sig_name, (fn, signature) in task.serving_endpoints(preprocessor, model).items():
        if signature is None:
            outputs = fn(**{k: tf.constant(v) for k, v in _probe_for(task, sig_name, probe).items()})
        else:
            args = [tf.constant(_probe_for(task, sig_name, probe)[spec.name], tf.string) for spec in signature]
            outputs = tf.function(fn, input_signature=signature)(*args)
        found[sig_name] = _as_lists(outputs)
    return found


def _probe_for(task, sig_name, probe):
    """The probe inputs a signature takes (per the contract)."""
    inputs = contract.signatures_for(task.name, task.text_pair)[sig_name].inputs
    return {k: probe[k] for k in inputs}


def _training_loss(task, model, preprocessor, examples):
    import keras

    ds, _ = task.build_inputs(examples, preprocessor, 32, training=False)
    loss_fn = task.build_loss()
    total, count = 0.0, 0
    for features, targets in ds:
        predictions = model(features, training=False)
        n = int(keras.ops.shape(targets)[0])
        total += float(loss_fn(targets, predictions)) * n
        count += n
    return total / count


def _build_trainable(name, recipe, root, vocab):
    from kerasbert.modeling import build_encoder
    from kerasbert.training.finetune import FinetuneConfig, finetune

    train, dev = root / f"{name}_train.txt", root / f"{name}_dev.txt"
    recipe.write_data(train, recipe.train_examples, SEED)
    recipe.write_data(dev, recipe.dev_examples, SEED + 1)
    result = finetune(
        FinetuneConfig(
            task=name,
            task_options=dict(recipe.task_options),
            train_file=str(train),
            dev_file=str(dev),
            vocab=str(vocab),
            model_size="tiny",
            sequence_length=SEQUENCE_LENGTH,
            epochs=recipe.epochs,
            batch_size=recipe.batch_size,
            learning_rate=recipe.learning_rate,
            dropout=0.0,
            seed=SEED,
            output_dir=str(root / "runs" / name),
            export_dir=str(root / "exports"),
            model_name=name,
            verbose=0,
        )
    )
    task, pre = result.task, result.preprocessor
    examples = task.read_examples(str(train))
    # "Before" is a freshly initialised model of the same architecture.
    fresh = task.build_model(build_encoder("tiny", pre.vocabulary_size, max_sequence_length=512), dropout=0.0)
    losses = (_training_loss(task, fresh, pre, examples), _training_loss(task, result.model, pre, examples))
    return Built(name, result.export, task, result.model, pre, result.results, losses)


def _build_export_only(name, recipe, root, vocab):
    from kerasbert.export.saved_model import export_task
    from kerasbert.modeling import build_encoder
    from kerasbert.preprocessing import BertPreprocessor

    task = get_task(name).from_config(dict(recipe.task_options))
    pre = BertPreprocessor(str(vocab), sequence_length=SEQUENCE_LENGTH)
    model = task.build_model(build_encoder("tiny", pre.vocabulary_size, max_sequence_length=512))
    export = export_task(task, pre, model, str(root / "exports"), name)
    return Built(name, export, task, model, pre)


FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops)
    import numpy as np

    def decoded(value):
        if isinstance(value, list):
            return [decoded(v) for v in value]
        return value.decode("utf-8") if isinstance(value, bytes) else value

    def plain(value):
        return decoded(np.asarray(value.numpy()).tolist())

    jobs = json.loads(sys.argv[1])
    results = {}
    for name, job in jobs.items():
        loaded = tf.saved_model.load(job["path"])
        found = {}
        for sig_name, fn in loaded.signatures.items():
            inputs = sorted(fn.structured_input_signature[1])
            outputs = sorted(fn.structured_outputs)
            values = fn(**{k: tf.constant(job["probe"][k], tf.string) for k in inputs})
            found[sig_name] = {"inputs": inputs, "outputs": outputs,
                               "values": {k: plain(v) for k, v in values.items()}}
        results[name] = found
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("kerasbert", "keras_hub", "keras_nlp"))
    print(json.dumps({"leaked_modules": leaked, "exports": results}))
    """
)


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """Builds (trains) and exports every task with a recipe, then reloads all exports in
    one fresh TF-only process. Returns `{"built": {name: Built}, "fresh": {...}, "leaked": [...]}`."""
    import time

    root = tmp_path_factory.mktemp("harness")
    vocab = write_vocab(root / "vocab.txt")
    built, timings = {}, {}
    for name in task_names():
        if name not in RECIPES:
            continue
        recipe = RECIPES[name]
        started = time.time()
        try:
            make = _build_trainable if get_task(name).trainable else _build_export_only
            b = make(name, recipe, root, vocab)
            b.in_process = _in_process_outputs(b.task, b.preprocessor, b.model, recipe.probe)
        except Exception:  # reported by this task's tests; the other tasks go on
            b = Built(name, error=traceback.format_exc())
        built[name] = b
        timings[name] = round(time.time() - started, 1)
    print(
        f"harness build+export seconds: {timings}; training loss (fresh init, trained): "
        f"{ {n: tuple(round(x, 4) for x in b.losses) for n, b in built.items() if b.losses} }"
    )
    jobs = {n: {"path": b.export, "probe": RECIPES[n].probe} for n, b in built.items() if not b.error}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, json.dumps(jobs)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=str(root),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"built": built, "fresh": fresh["exports"], "leaked": fresh["leaked_modules"], "root": root}


@pytest.fixture(scope="module")
def server(harness):
    """One `python -m kerasbert.serve` serving every task's export, named after the task."""
    entries = [
        f'  config {{ name: "{n}" base_path: "{os.path.dirname(b.export)}" model_platform: "tensorflow" }}'
        for n, b in harness["built"].items()
        if not b.error
    ]
    config = harness["root"] / "models.config"
    config.write_text("model_config_list {\n" + "\n".join(entries) + "\n}\n", encoding="utf-8")
    with running_server(model_config_file=config, timeout=300, rest_api=True) as srv:  # 5 loads + warmups
        yield srv


def _built(harness, name) -> Built:
    recipe_for(name)
    b = harness["built"][name]
    if b.error:
        pytest.fail(f"building/exporting {name} failed:\n{b.error}")
    return b


# ----------------------------------------------------------------------------- the checks


@pytest.mark.parametrize("name", task_names())
def test_task_has_a_recipe(name):
    recipe = recipe_for(name)
    assert (recipe.write_data is None) == (not get_task(name).trainable), (
        f"{name}: a trainable task needs tiny training data; an export-only task has none"
    )


def test_a_task_without_recipe_fails_loudly():
    with pytest.raises(pytest.fail.Exception, match="registered but .* has no recipe"):
        recipe_for("a_new_task")


@pytest.mark.parametrize("name", task_names())
def test_build_and_fit(harness, name):
    b = _built(harness, name)
    recipe = RECIPES[name]
    if not get_task(name).trainable:
        # Export-only (embedding): nothing to fit. Built from a tiny random backbone; check
        # the model's outputs instead (unit vectors with l2_normalize).
        vectors = np.asarray(b.in_process[contract.SERVING_DEFAULT][contract.EMBEDDINGS])
        assert vectors.shape == (len(recipe.probe[contract.TEXT]), b.model.output[contract.EMBEDDINGS].shape[-1])
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        return
    before, after = b.losses
    assert after < 0.7 * before, f"{name}: training loss {before:.4f} (fresh init) -> {after:.4f} (trained)"
    score = b.results["dev_metrics"][recipe.dev_metric]
    assert score >= recipe.dev_threshold, (
        f"{name}: dev {recipe.dev_metric} {score:.3f} < {recipe.dev_threshold} (chance {recipe.chance}); "
        f"all dev metrics {b.results['dev_metrics']}"
    )
    assert b.results["steps"] >= 20


@pytest.mark.parametrize("name", task_names())
def test_fresh_process_reload(harness, name):
    b = _built(harness, name)
    assert harness["leaked"] == [], "the fresh process imported kerasbert/keras-hub modules"
    fresh = harness["fresh"][name]
    expected = contract.signatures_for(name, b.task.text_pair)
    assert set(fresh) == set(expected)
    for sig_name, signature in expected.items():
        assert fresh[sig_name]["inputs"] == sorted(signature.inputs), sig_name
        assert fresh[sig_name]["outputs"] == sorted(signature.outputs), sig_name
    meta = contract.ExportMetadata.from_json(fresh[contract.METADATA_SIGNATURE]["values"][contract.METADATA])
    assert meta.task == name
    assert meta.signatures == {k: v.as_dict() for k, v in expected.items()}
    assert meta.preprocessing["sequence_length"] == SEQUENCE_LENGTH
    for sig_name, outputs in b.in_process.items():
        got = fresh[sig_name]["values"]
        assert set(got) == set(outputs)
        for key, value in outputs.items():
            ref = np.asarray(value)
            if ref.dtype.kind == "f":
                np.testing.assert_allclose(got[key], value, atol=ATOL, err_msg=f"{sig_name}/{key}")
            else:
                assert got[key] == value, f"{name} {sig_name}/{key}"


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
@pytest.mark.parametrize("name", task_names())
def test_served_through_the_client(harness, server, name, protocol):
    """Every method of the task, and tokens(), over gRPC and over TF Serving's REST API: both answer what the
    export answers in a fresh process (so REST answers equal gRPC's)."""
    from kerasbert.client import Client

    _built(harness, name)
    fresh = {sig: v["values"] for sig, v in harness["fresh"][name].items()}
    target = server.address if protocol == "grpc" else server.rest_url
    with Client(target=target, model_name=name, timeout=60, batch_size=2) as client:
        assert client.rest == (protocol == "rest")
        assert client.task == name
        assert client.export_metadata().task == name
        assert {s for s in client.metadata()["signatures"] if not s.startswith("__")} == set(
            contract.signatures_for(name, harness["built"][name].task.text_pair)
        )
        RECIPES[name].check_client(client, RECIPES[name].probe, fresh)
        _check_tokens(client, RECIPES[name].probe, fresh)
