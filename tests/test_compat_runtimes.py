"""Every export kind loads and answers the same under the TF + TF-Text that
stock tensorflow/serving images link (2.12.1 and 2.20.0), not only under the
TF that wrote it.

One tiny export per kind is written with `export_task` (random weights: what
is checked is the graph, not what it learned). tests/compat_check.py, a
script that imports only tensorflow and tensorflow_text, first records every
signature's outputs under the project's TF in a fresh process, then runs
under each old runtime's python (`make compat` builds the venvs in
.venv-compat/) and compares: strings and integers exactly, floats within
1e-4. A missing venv skips locally and fails under CI (`CI` set).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

CHECK = Path(__file__).resolve().parent / "compat_check.py"
SAMPLE_VOCAB = REPO / "kerasbert" / "data" / "sample" / "vocab.txt"
COMPAT_DIR = Path(os.environ.get("KERASBERT_COMPAT_DIR", REPO / ".venv-compat"))
# venv folder -> the (tensorflow, tensorflow_text) versions it must run.
RUNTIMES = {"tf2.12": ("2.12.1", "2.12.1"), "tf2.20": ("2.20.0", "2.20.0")}
KINDS = (
    "classification",
    "classification_pair",
    "regression",
    "embedding",
    "token_classification",
    "question_answering",
)
SEQUENCE_LENGTH = 16  # NER windows of 14 tokens: the long text needs several

TEXTS = [
    "the food was really good",
    "The staff was AWFUL and rude!",
    "",
    " \t\n ",
    "Ünïcödé wonderful café ❤️ 🇫🇷 CAFE\u0301",
    "我爱北京天安门 and 北京, ok",
    "Jo\u200bhn\x00 Smith\x7f went  \t\n to Paris.",
    "ＪＯＨＮ full-width ２０２４ (really) !!",
    "new york and the room was very good " * 6,
]
TEXT_PAIRS = ["it was great", "", "the room", "a", "café ❤️", "北京", "good and bad", "？", "x " * 30]
# Question answering: these questions over TEXTS as contexts (the last one needs several windows).
QUESTIONS = [
    "what was good?",
    "who was rude",
    "why",
    "",
    "WHAT café?",
    "北京",
    "who went to Paris?",
    "ＪＯＨＮ",
    "where",
]
TIMEOUT = 600


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONIOENCODING": "utf-8"}


def build_exports(root):
    """One export of every kind under `root/<kind>/1`; returns {kind: path}."""
    import keras

    from kerasbert.export.saved_model import export_task
    from kerasbert.modeling import build_encoder
    from kerasbert.preprocessing.bert_preprocessor import BertPreprocessor
    from kerasbert.tasks import ClassificationTask, EmbeddingTask, RegressionTask
    from kerasbert.tasks.question_answering import QuestionAnsweringTask
    from kerasbert.tasks.token_classification import TokenClassificationTask

    tasks = {  # kind: (task, lowercase)
        "classification": (ClassificationTask(class_names=["negative", "positive"]), True),
        "classification_pair": (
            ClassificationTask(text_pair_column="sentence2", class_names=["contradiction", "entailment", "neutral"]),
            True,
        ),
        "regression": (RegressionTask(), False),  # cased: the NFC normalisation
        "embedding": (EmbeddingTask(pooling="mean", l2_normalize=True), True),
        "token_classification": (TokenClassificationTask(entity_types=["LOC", "ORG", "PER"]), True),
        "question_answering": (QuestionAnsweringTask(max_query_length=4, doc_stride=5, n_best=3), True),
    }
    assert tuple(tasks) == KINDS
    paths = {}
    for seed, (kind, (task, lowercase)) in enumerate(tasks.items()):
        keras.utils.set_random_seed(seed)
        pre = BertPreprocessor(str(SAMPLE_VOCAB), lowercase=lowercase, sequence_length=SEQUENCE_LENGTH)
        encoder = build_encoder(
            "custom",
            pre.vocabulary_size,
            num_layers=1,
            hidden_dim=32,
            num_heads=2,
            intermediate_dim=64,
            max_sequence_length=SEQUENCE_LENGTH,
            dropout=0.0,
        )
        model = task.build_model(encoder, dropout=0.0)
        paths[kind] = export_task(task, pre, model, str(root), kind, version=1, extra={"compat_test": kind})
    return paths


def run_check(python, *args):
    started = time.monotonic()
    proc = subprocess.run(
        [str(python), str(CHECK), *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT,
        env=_env(),
        cwd=str(CHECK.parent),
    )
    assert proc.returncode == 0, f"{python} compat_check.py {' '.join(map(str, args))}:\n{proc.stderr[-4000:]}"
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return lines, time.monotonic() - started


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """The exports and their outputs under the project's TF, recorded by
    compat_check.py in a fresh process (TF + TF-Text imports only)."""
    root = tmp_path_factory.mktemp("compat")
    started = time.monotonic()
    paths = build_exports(root / "exports")
    built = time.monotonic() - started
    inputs = {"text": TEXTS, "text_pair": TEXT_PAIRS, "question": QUESTIONS, "context": TEXTS}
    cases = root / "cases.json"
    cases.write_text(
        json.dumps({"exports": {kind: {"path": paths[kind], "inputs": inputs} for kind in KINDS}}),
        encoding="utf-8",
    )
    (result,), took = run_check(sys.executable, "record", cases)
    print(f"compat: built {len(paths)} exports in {built:.1f}s, recorded under TF {result['runtime']} in {took:.1f}s")
    path = root / "expected.json"
    path.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
    return {"path": path, "result": result}


def test_recording_under_the_current_tf(recording):
    from kerasbert import contract

    result = recording["result"]
    assert result["leaked_modules"] == []
    assert sorted(result["exports"]) == sorted(KINDS)
    task_of = {"classification_pair": contract.CLASSIFICATION}
    for kind, export in result["exports"].items():
        task = task_of.get(kind, kind)
        expected = contract.signatures_for(task, text_pair=kind.endswith("_pair"))
        signatures = export["signatures"]
        assert sorted(signatures) == sorted(expected), kind
        for name, signature in expected.items():
            assert signatures[name]["inputs"] == sorted(signature.inputs), (kind, name)
            assert sorted(signatures[name]["outputs"]) == sorted(signature.outputs), (kind, name)
        meta = json.loads(signatures[contract.METADATA_SIGNATURE]["outputs"][contract.METADATA]["value"])
        assert meta["task"] == task and meta["extra"] == {"compat_test": kind}
    # The cases reach the paths worth checking: entities found, NER windows, truncation.
    ner = result["exports"]["token_classification"]["signatures"]
    assert sum(ner[contract.SERVING_DEFAULT]["outputs"][contract.NUM_ENTITIES]["value"]) > 5
    assert ner[contract.TOKENS_SIGNATURE]["outputs"][contract.TOKENS]["shape"][1] > SEQUENCE_LENGTH
    # QA: every answer is its raw context's substring at its code point offsets.
    qa = result["exports"]["question_answering"]["signatures"][contract.SERVING_DEFAULT]["outputs"]
    assert qa[contract.ANSWERS]["shape"] == [len(TEXTS), 3]
    for context, answers, starts, ends in zip(
        TEXTS,
        qa[contract.ANSWERS]["value"],
        qa[contract.ANSWER_STARTS]["value"],
        qa[contract.ANSWER_ENDS]["value"],
    ):
        assert all(a == (context[s:e] if s >= 0 else "") for a, s, e in zip(answers, starts, ends))
    assert max(qa[contract.START]["value"]) > 20  # an answer from beyond the long text's first window


_RESULTS = {}


def old_runtime_results(name, recording):
    """compat_check.py's lines under the venv `name` (run once per venv)."""
    if isinstance(_RESULTS.get(name), Exception):
        pytest.fail(f"compat_check.py failed under {name} (see the first test of it): {_RESULTS[name]}"[:2000])
    if name in _RESULTS:
        return _RESULTS[name]
    venv = COMPAT_DIR / name
    python, stamp = venv / "bin" / "python", venv / ".runtime"
    if not (python.exists() and stamp.exists()):
        reason = f"{venv} is not installed (`make compat` builds it; `make test` does so first)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)
    try:
        lines, took = run_check(python, "check", recording["path"])
    except (AssertionError, subprocess.TimeoutExpired) as e:
        _RESULTS[name] = e  # one failed run fails every test of this runtime, without rerunning
        raise
    *exports, last = lines
    print(f"compat: {name} checked {len(exports)} exports in {took:.1f}s")
    _RESULTS[name] = {"exports": {line["kind"]: line for line in exports}, "last": last, "seconds": took}
    return _RESULTS[name]


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_the_venv_is_the_runtime_it_names(runtime, recording):
    result = old_runtime_results(runtime, recording)
    tf_version, text_version = RUNTIMES[runtime]
    assert result["last"]["runtime"] == {"tensorflow": tf_version, "tensorflow_text": text_version}
    assert result["last"]["leaked_modules"] == []
    assert sorted(result["exports"]) == sorted(KINDS)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_export_loads_and_matches(runtime, kind, recording):
    line = old_runtime_results(runtime, recording)["exports"][kind]
    assert line["error"] is None, f"{kind} does not load/run under {runtime}:\n{line['error']}"
    assert line["mismatches"] == [], f"{kind} under {runtime} differs:\n" + "\n".join(line["mismatches"])
    assert line["ok"]


def test_the_comparison_sees_every_kind_of_difference(recording):
    """compat_check's comparison (in this process): a recording against
    itself matches; a changed float beyond 1e-4, string, integer, shape,
    dtype, output or signature is reported, a float within 1e-4 is not."""
    import copy

    import compat_check

    exports = recording["result"]["exports"]
    ner = exports["token_classification"]["signatures"]
    assert compat_check.compare_signatures(ner, ner, 1e-4) == []

    def changed(edit):
        got = copy.deepcopy(ner)
        edit(got)
        return compat_check.compare_signatures(ner, got, 1e-4)

    def nudge(delta):
        def edit(got):
            got["tokens"]["outputs"]["token_probabilities"]["value"][0][0] += delta

        return edit

    assert changed(nudge(5e-5)) == []
    first = ner["tokens"]["outputs"]["token_probabilities"]["value"][0][0]
    assert changed(nudge(2e-4)) == [
        f"tokens.token_probabilities[0][0]: expected {first!r}, got {first + 2e-4!r} (|diff| > 0.0001)"
    ]

    def string(got):
        got["tokens"]["outputs"]["tokens"]["value"][1][0] += "x"

    def integer(got):
        got["serving_default"]["outputs"]["num_entities"]["value"][0] += 1

    def shape(got):
        got["serving_default"]["outputs"]["num_entities"]["shape"] = [1]

    def dtype(got):
        got["serving_default"]["outputs"]["num_entities"]["dtype"] = "int32"

    def output(got):
        del got["serving_default"]["outputs"]["entity_texts"]

    def signature(got):
        del got["metadata"]

    def metadata(got):
        got["metadata"]["outputs"]["metadata"]["value"] += " "

    for edit, where in [
        (string, "tokens.tokens[1][0]"),
        (integer, "serving_default.num_entities[0]"),
        (shape, "serving_default.num_entities shape"),
        (dtype, "serving_default.num_entities dtype"),
        (output, "serving_default outputs"),
        (signature, "signatures"),
        (metadata, "metadata.metadata"),
    ]:
        found = changed(edit)
        assert len(found) == 1 and found[0].startswith(where + ":"), (edit.__name__, found)
