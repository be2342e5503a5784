"""`Client.answer` (and `python -m kerasbert.client --question`) against a real `kerasbert.serve`.

The served "qa" model is the session's tiny QA model (conftest's `tiny_qa`: a tiny BERT fine-tuned
on synthetic SQuAD questions, "staff and <place>" asks for the person who went there, "room and
<person>" for the place the person went to). Next to it the server serves the fake classifier of
tests/test_client_tasks.py, for the wrong-task errors. Every answer is checked against the raw
outputs of the same request (`Client.predict`) and against `context[start:end]`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kerasbert import contract
from kerasbert.client import Client, WrongTask
from serving_utils import running_server
from test_client_tasks import CLASS_NAMES, _classify, _metadata_json, _write_export
from ui_utils import model_config

QA, CLS = "qa", "cls"

# question, context, the expected answer: accents, upper case, CJK and emoji around the words the
# model knows (lower-cased and accent-stripped by the tokenizer, [UNK] for the rest).
CASES = [
    ("staff and Paris", "yesterday Alice went to Paris", "Alice"),
    ("staff and Paris", "yesterday Ánna went to Párìs 😀 today", "Ánna"),
    ("room and Peter", "北京 Peter went to Tokyo today", "Tokyo"),
    ("room and Anna", "Anna went to 東京 Tokyo", "Tokyo"),  # its n-best has CJK spans ("京 Tokyo")
    ("room and John Smith", "🙂🙂 John Smith went to New York 🎉", "New York"),
    ("room and Mary Jones", "then MARY  JONES went to BERLIN", "BERLIN"),
]


@pytest.fixture(scope="module")
def server(tiny_qa, tmp_path_factory):
    root = tmp_path_factory.mktemp("client_qa")
    cls = _metadata_json(contract.CLASSIFICATION, class_names=CLASS_NAMES, text_pair=False)
    _write_export(root / CLS / "1", {contract.SERVING_DEFAULT: _classify}, cls)
    config = model_config(root / "models.config", {QA: tiny_qa.base, CLS: root / CLS})
    with running_server(model_config_file=config) as srv:
        yield srv


@pytest.fixture()
def client(server):
    with Client(target=server.address, model_name=QA) as c:
        yield c


def raw_answers(client: Client, questions: list[str], contexts: list[str]) -> list[dict]:
    """The export's own outputs for the pairs, as the dicts `answer()` should return."""
    out = client.predict({contract.QUESTION: questions, contract.CONTEXT: contexts})
    rows = []
    for i in range(len(contexts)):
        n_best = [
            {"answer": a, "start": s, "end": e, "score": pytest.approx(p, abs=1e-6)}
            for a, s, e, p in zip(
                out[contract.ANSWERS][i].tolist(),
                out[contract.ANSWER_STARTS][i].tolist(),
                out[contract.ANSWER_ENDS][i].tolist(),
                out[contract.ANSWER_SCORES][i].tolist(),
            )
            if s >= 0
        ]
        rows.append(
            {
                "answer": out[contract.ANSWER][i],
                "start": int(out[contract.START][i]),
                "end": int(out[contract.END][i]),
                "score": pytest.approx(float(out[contract.SCORE][i]), abs=1e-6),
                "n_best": n_best,
            }
        )
    return rows


def approx(rows: list[dict]) -> list[dict]:
    """`rows` with every score compared to 1e-5: a request pads its windows to its own longest, so the
    same pair's float logits can differ in the last bits from one batch to another; text and offsets may not."""
    rows = [{**r, "n_best": [{**c, "score": pytest.approx(c["score"], abs=1e-5)} for c in r["n_best"]]} for r in rows]
    return [{**r, "score": pytest.approx(r["score"], abs=1e-5)} for r in rows]


def check_offsets(context: str, result: dict) -> None:
    assert type(result["start"]) is int and type(result["end"]) is int and type(result["score"]) is float
    assert context[result["start"] : result["end"]] == result["answer"]
    for candidate in result["n_best"]:
        assert context[candidate["start"] : candidate["end"]] == candidate["answer"] != ""


def test_answers_with_code_point_offsets_into_the_raw_context(client):
    assert client.task == contract.QUESTION_ANSWERING
    n_best = client.export_metadata().task_config["n_best"]
    for question, context, expected in CASES:
        result = client.answer(question, context)
        assert set(result) == {"answer", "start", "end", "score", "n_best"}
        assert result == raw_answers(client, [question], [context])[0]
        check_offsets(context, result)
        assert result["answer"] == expected, (question, context, result)
        assert result["start"] == context.index(expected)  # code points: the emoji and CJK count one each
        assert 0.5 < result["score"] <= 1.0
        assert 1 <= len(result["n_best"]) <= n_best and result["n_best"][0] == {
            k: result[k] for k in ("answer", "start", "end", "score")
        }
        scores = [c["score"] for c in result["n_best"]]
        assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-5)


def test_batch_form_equals_the_singles(client, monkeypatch):
    questions = [q for q, _, _ in CASES]
    contexts = [c for _, c, _ in CASES]
    singles = [client.answer(q, c) for q, c in zip(questions, contexts)]
    sizes = []
    send = client._start_request
    monkeypatch.setattr(
        client,
        "_start_request",
        lambda arrays, f, sig: sizes.append(len(arrays[contract.CONTEXT])) or send(arrays, f, sig),
    )
    assert client.answer(questions, contexts, batch_size=2) == approx(singles)
    assert sizes == [2, 2, 2] and len(CASES) == 6  # three requests, each decoded on its own
    assert client.answer(questions, contexts) == approx(singles)
    assert client.answer((q for q in questions), np.array(contexts)) == approx(singles)  # any iterable, numpy too
    assert client.answer([questions[0]], [contexts[0]]) == [singles[0]]  # lists of one: a list
    # One question asked of several contexts, and several questions about one context.
    paris = [c for q, c, _ in CASES if q == "staff and Paris"]
    assert client.answer("staff and Paris", paris) == approx([client.answer("staff and Paris", c) for c in paris])
    context = "yesterday Maria went to Madrid"
    both = client.answer(["staff and Madrid", "room and Maria"], context)
    assert [r["answer"] for r in both] == ["Maria", "Madrid"]
    assert both == approx([client.answer("staff and Madrid", context), client.answer("room and Maria", context)])
    with pytest.raises(ValueError, match="got 2 questions but 3 contexts"):
        client.answer(["a", "b"], ["x", "y", "z"])


def test_a_context_longer_than_one_window(client, tiny_qa):
    """20-token windows (6 for the question at most): 30 filler words first, the answer in the last window."""
    assert tiny_qa.result.preprocessor.sequence_length == 20
    filler = " ".join(["we met in", "and then", "today from", "came"] * 4)
    context = f"{filler} Bob went to Rome"
    result = client.answer("staff and Rome", context)
    check_offsets(context, result)
    assert result["answer"] == "Bob" and result["start"] == context.index("Bob") > 60
    assert result == raw_answers(client, ["staff and Rome"], [context])[0]


def test_no_candidate_in_an_empty_context(client):
    result = client.answer("staff and Paris", "")
    assert result == {"answer": "", "start": -1, "end": -1, "score": 0.0, "n_best": []}
    assert ""[result["start"] : result["end"]] == result["answer"]
    assert client.answer("staff and Paris", ["", "Alice went to Paris"])[0] == result


def test_inputs_are_checked_before_any_request(client):
    with pytest.raises(TypeError, match=r"contexts\[1\] is None \(NoneType\), not a string"):
        client.answer("q", ["a", None])
    with pytest.raises(TypeError, match=r"questions\[0\] is 3 \(int\)"):
        client.answer([3], ["a"])
    with pytest.raises(ValueError, match="questions is empty"):
        client.answer([], "a")
    with pytest.raises(ValueError, match=r"contexts\[0\] is bytes but not UTF-8"):
        client.answer("q", [b"\xff"])
    # UTF-8 bytes are decoded first: offsets count code points of the text, not bytes.
    assert client.answer(CASES[4][0].encode(), CASES[4][1].encode()) == client.answer(*CASES[4][:2])
    assert client.answer(*CASES[4][:2])["start"] == CASES[4][1].index("New York") == 22  # 28 bytes in


def test_wrong_task_says_what_to_call(server):
    with Client(target=server.address, model_name=CLS) as cls, Client(target=server.address, model_name=QA) as qa:
        with pytest.raises(WrongTask, match=r"model 'cls' is a classification export, not a question_answering one: "
                                            r"use classify\(\)") as info:  # fmt: skip
            cls.answer("who?", "Mary went to Paris")
        assert info.value.task == contract.CLASSIFICATION and info.value.expected == contract.QUESTION_ANSWERING
        for call in (lambda: qa.classify("a"), lambda: qa.entities("Paris"), lambda: qa.encode("a")):
            with pytest.raises(WrongTask, match=r"model 'qa' is a question_answering export, not an? \w+ one: "
                                                r"use answer\(\)"):  # fmt: skip
                call()


def test_command_line_question(server):
    env = dict(os.environ, KERASBERT_SERVER=server.address, PYTHONIOENCODING="utf-8")

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "kerasbert.client", *args], capture_output=True, text=True, env=env, timeout=60
        )

    contexts = [c for q, c, _ in CASES if q == "staff and Paris"]
    done = run("--model", QA, "--question", "staff and Paris", *contexts)
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    assert [a["answer"] for a in answers] == ["Alice", "Ánna"] and "Ánna" in done.stdout  # readable UTF-8
    assert [a["start"] for a in answers] == [10, 10]
    done = run("--model", QA, "--question", "staff and Madrid", "--question", "room and Maria", *[CASES[0][1]] * 3)
    assert done.returncode == 1 and "got 2 questions but 3 contexts" in done.stderr
    done = run("--model", CLS, "--question", "who?", "Paris")
    assert done.returncode == 1 and "is a classification export, not a question_answering one" in done.stderr
    assert "--question" in run("--help").stdout
