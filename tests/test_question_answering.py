"""Extractive question answering: SQuAD reading and alignment, run_squad.py's windows and
max-context rule, the official EM/F1, answer decoding in the serving graph (raw-context
offsets, multi-window contexts, parity with the Python post-processing) and a tiny model
that learns."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasbert import contract
from kerasbert.data import squad
from kerasbert.preprocessing.bert_preprocessor import SPECIAL_TOKENS, BertPreprocessor
from kerasbert.tasks import TaskDataError, get_task
from kerasbert.tasks.question_answering import QuestionAnsweringTask, decode_spans
from kerasbert.training import squad_metrics
from test_task_harness import write_squad, write_vocab

SQUAD_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "squad_v1.1")
SQUAD_FILE = os.path.join(SQUAD_FILE, "dev-v1.1.articles-00-37.json")

# ----------------------------------------------------------------------------- reading


def _squad_json(path, data):
    path.write_text(json.dumps({"version": "1.1", "data": data}), encoding="utf-8")
    return path


def _article(title, context, qas):
    return {"title": title, "paragraphs": [{"context": context, "qas": qas}]}


def _qa(qid, question, text, start):
    return {"id": qid, "question": question, "answers": [{"text": text, "answer_start": start}]}


def test_read_squad_splits_by_article(tmp_path):
    path = _squad_json(
        tmp_path / "s.json",
        [_article(f"A{a}", f"context {a} here", [_qa(f"q{a}", "what?", "here", 10)]) for a in range(5)],
    )
    assert [ex.id for ex in squad.read_squad(path)] == ["q0", "q1", "q2", "q3", "q4"]
    assert squad.parse_articles("0-1,3") == [0, 1, 3] and squad.parse_articles("") is None
    dev = squad.read_squad(path, squad.parse_articles("3-4"))
    assert [(ex.id, ex.article, ex.title, ex.answers, ex.answer_starts) for ex in dev] == [
        ("q3", 3, "A3", ("here",), (10,)),
        ("q4", 4, "A4", ("here",), (10,)),
    ]
    task = QuestionAnsweringTask(train_articles="0-2", dev_articles="3-4")
    train, dev = task.read_split(str(path), "train"), task.read_split(str(path), "dev")
    assert len(train) == 3 and len(dev) == 2
    task.prepare(train, dev)  # disjoint
    with pytest.raises(TaskDataError, match="dev questions are also training questions .*--train_articles"):
        QuestionAnsweringTask().prepare(train, squad.read_squad(path))
    with pytest.raises(TaskDataError, match=r"has 5 articles \(0-4\); article 6 asked for"):
        QuestionAnsweringTask(train_articles="6-7").read_split(str(path), "train")
    with pytest.raises(TaskDataError, match="--train_articles: 'x-1' is not a list"):
        QuestionAnsweringTask(train_articles="x-1").read_split(str(path), "train")


@pytest.mark.parametrize(
    "data, message",
    [
        (
            [_article("T", "abc", [_qa("id7", "q?", "abc", 2)])],
            r"article 0 \('T'\) question id id7 answer 0: answer_start 2",
        ),
        ([_article("T", "abc", [{"id": "id8", "question": "q?", "answers": []}])], "question id id8: no answers"),
        (
            [_article("T", "abc", [{"question": "q?", "answers": []}])],
            r"article 0 \('T'\) paragraph 0 question 0: no id",
        ),
        (
            [_article("T", "abc", [_qa("d", "q", "a", 0)]), _article("U", "abc", [_qa("d", "q", "a", 0)])],
            r"article 1 \('U'\) question id d: the id is used twice",
        ),
        ([_article("T", "abc", [{"id": "x", "question": 3, "answers": []}])], "question id x question: expected str"),
        ([_article("T", "abc", [_qa("y", "q", "a", "0")])], "question id y answer 0: answer_start must be an integer"),
    ],
)
def test_malformed_files_name_the_article_and_question(tmp_path, data, message):
    path = _squad_json(tmp_path / "bad.json", data)
    with pytest.raises(TaskDataError, match=message):
        QuestionAnsweringTask().read_examples(str(path))


def test_not_squad_at_all(tmp_path):
    (tmp_path / "a.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "b.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(TaskDataError, match="a.json: not JSON"):
        QuestionAnsweringTask().read_examples(str(tmp_path / "a.json"))
    with pytest.raises(TaskDataError, match="b.json: not a SQuAD file"):
        QuestionAnsweringTask().read_examples(str(tmp_path / "b.json"))


# ----------------------------------------------------------------------------- alignment and windows


def _run_squad_doc_spans(num_tokens, max_tokens_for_doc, doc_stride):
    """run_squad.py's loop, verbatim in logic."""
    spans, start_offset = [], 0
    while start_offset < num_tokens:
        length = min(num_tokens - start_offset, max_tokens_for_doc)
        spans.append((start_offset, length))
        if start_offset + length == num_tokens:
            break
        start_offset += min(length, doc_stride)
    return spans


def _check_is_max_context(doc_spans, cur_span_index, position):
    """run_squad.py's `_check_is_max_context`."""
    best_score, best_span_index = None, None
    for span_index, (start, length) in enumerate(doc_spans):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best_span_index = score, span_index
    return cur_span_index == best_span_index


@pytest.mark.parametrize("num_tokens", [1, 5, 9, 10, 11, 37, 200])
@pytest.mark.parametrize("max_doc, stride", [(10, 4), (10, 10), (4, 10), (7, 3), (381, 128)])
def test_windows_and_max_context_are_run_squads(num_tokens, max_doc, stride):
    spans = squad.window_spans(num_tokens, max_doc, stride)
    assert spans == _run_squad_doc_spans(num_tokens, max_doc, stride)
    assert len(spans) == squad.num_windows(num_tokens, max_doc, stride)
    masks = squad.max_context_mask(spans, num_tokens)
    for w, ((start, length), mask) in enumerate(zip(spans, masks)):
        assert mask.tolist() == [_check_is_max_context(spans, w, start + i) for i in range(length)]
    owners = np.zeros(num_tokens, int)
    for (start, length), mask in zip(spans, masks):
        owners[start : start + length] += mask
    assert (owners == 1).all()  # every token has exactly one max-context window
    assert squad.window_spans(0, 5, 2) == [(0, 0)] and squad.num_windows(0, 5, 2) == 1


def test_align_answer_and_improve_answer_span():
    context = "abcdef"
    ids, starts, ends = [10, 11, 12], [0, 2, 4], [2, 4, 6]
    assert squad.align_answer(starts, ends, ids, 0, "abcd", [10, 11], context) == (0, 1, "exact")
    # The answer's characters overlap tokens 0-2, its own tokens are a sub-run: narrowed (Google's logic).
    assert squad.align_answer(starts, ends, ids, 1, "bcde", [11, 12], context) == (1, 2, "improved")
    assert squad.align_answer(starts, ends, ids, 1, "bc", [99], context) == (0, 1, "inexact")
    assert squad.align_answer(starts, ends, ids, 1, "xx", [99], context) == (-1, -1, "unalignable")
    assert squad.align_answer(starts, ends, ids, 1, "  ", [], "a   b") == (-1, -1, "unalignable")


# ----------------------------------------------------------------------------- official metrics


def test_official_squad_v1_metrics_by_hand():
    n = squad_metrics.normalize_answer
    assert n("The Denver Broncos!") == "denver broncos"
    assert n("  an  Apple, a day\tthe end.") == "apple day end"
    assert n("theatre") == "theatre"  # articles only as whole words
    f1, em = squad_metrics.f1_score, squad_metrics.exact_match_score
    assert em("the Denver Broncos", "Denver Broncos.") == 1.0
    # prediction "denver broncos team" vs "denver broncos": p = 2/3, r = 1, F1 = 0.8
    assert f1("Denver Broncos team", "the Denver Broncos") == pytest.approx(0.8)
    # bag of tokens: "a a b" -> [] after articles... use words: "x x y" vs "x y y": common {x:1, y:1} = 2, p = r = 2/3
    assert f1("x x y", "x y y") == pytest.approx(2 / 3)
    assert f1("the", "a") == 0.0 and f1("", "") == 0.0  # official: no common tokens -> 0
    gold = {"q1": ["Denver Broncos", "The Broncos"], "q2": ["Santa Clara, California"], "q3": ["1895"]}
    predictions = {"q1": "broncos", "q2": "Santa Clara", "q3": "1895"}
    # q1: EM 1 (vs "The Broncos"); q2: p = 1, r = 2/3, F1 = 0.8; q3: exact.
    scores = squad_metrics.squad_scores(gold, predictions)
    assert scores["exact_match"] == pytest.approx(200 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 0.8 + 1) / 3)
    assert squad_metrics.squad_scores(gold, {"q1": "broncos"})["exact_match"] == pytest.approx(100 / 3)


# ----------------------------------------------------------------------------- serving graph, fake model

STARTS = ["mary", "ｊｏｈｎ", "北", "cafe", "alpha"]
ENDS = ["smith", "京", "❤", "omega"]
VOCAB = list(SPECIAL_TOKENS) + STARTS + ENDS + ["who", "is", "the", "went", "to", "and", "we", "met", ".", "##s"]
VOCAB += [f"w{i}" for i in range(40)]


def fake_qa_model(table=None):
    """Start and end logits of each token from its id alone."""
    if table is None:
        table = np.zeros((len(VOCAB), 2), np.float32)
        for t in STARTS:
            table[VOCAB.index(t), 0] = 6.0
        for t in ENDS:
            table[VOCAB.index(t), 1] = 6.0
    inputs = {
        "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
        "segment_ids": keras.Input((None,), dtype="int32", name="segment_ids"),
        "padding_mask": keras.Input((None,), dtype="bool", name="padding_mask"),
    }
    x = keras.layers.Embedding(len(VOCAB), 2, embeddings_initializer=keras.initializers.Constant(table))
    return keras.Model(inputs, keras.layers.Permute((2, 1))(x(inputs["token_ids"])))


def serving_fn(pre, model, task):
    fn, spec = task.serving_endpoints(pre, model)[contract.SERVING_DEFAULT]
    return tf.function(fn, input_signature=spec)


def served(fn, questions, contexts):
    out = fn(tf.constant(questions, tf.string), tf.constant(contexts, tf.string))
    return {k: v.numpy() for k, v in out.items()}


def text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else value


OFFSET_CASES = [
    ("Yesterday Máry Smith went to Paris.", "Máry Smith"),
    ("WE MET MARY SMITH.", "MARY SMITH"),
    ("we met ＪＯＨＮ Smith", "ＪＯＨＮ Smith"),
    ("我爱北京天安门", "北京"),
    ("the Café ❤️ went", "Café ❤️"),
    ("the CAFE\u0301 \u2764\ufe0f and", "CAFE\u0301 \u2764\ufe0f"),  # decomposed accent, emoji + variation selector
    ("  \tMary\u200b Smiths  ", "Mary\u200b Smith"),  # zero-width space dropped inside; the span ends before ##s
]


def test_offsets_are_exact_on_raw_text():
    pre = BertPreprocessor(VOCAB, sequence_length=24)
    task = QuestionAnsweringTask(max_query_length=4, doc_stride=8, max_answer_length=6, n_best=3)
    fn = serving_fn(pre, fake_qa_model(), task)
    contexts = [c for c, _ in OFFSET_CASES]
    out = served(fn, ["who is"] * len(contexts), contexts)
    for i, (context, expected) in enumerate(OFFSET_CASES):
        answer, start, end = text(out[contract.ANSWER][i]), int(out[contract.START][i]), int(out[contract.END][i])
        assert answer == expected and context[start:end] == expected, (context, answer, start, end)
        for a, s, e in zip(out[contract.ANSWERS][i], out[contract.ANSWER_STARTS][i], out[contract.ANSWER_ENDS][i]):
            assert text(a) == (context[s:e] if s >= 0 else "")
    assert out[contract.ANSWERS].shape == (len(contexts), 3)
    assert (out[contract.SCORE] > 0.9).all()
    np.testing.assert_allclose(out[contract.ANSWER_SCORES].sum(axis=1), 1.0, rtol=1e-5)


def test_empty_inputs_and_contexts_without_candidates():
    pre = BertPreprocessor(VOCAB, sequence_length=12)
    task = QuestionAnsweringTask(max_query_length=4, doc_stride=2, max_answer_length=3, n_best=4)
    fn = serving_fn(pre, fake_qa_model(), task)
    out = served(fn, ["who", "", "who is the who is the"], ["", " \t ", "mary"])
    assert [text(a) for a in out[contract.ANSWER]] == ["", "", "mary"]
    assert out[contract.START].tolist() == [-1, -1, 0] and out[contract.END].tolist() == [-1, -1, 4]
    assert out[contract.SCORE].tolist() == [0.0, 0.0, 1.0]
    assert out[contract.ANSWER_STARTS][2].tolist() == [0, -1, -1, -1]  # one candidate only
    empty = served(fn, [], [])
    assert empty[contract.ANSWERS].shape == (0, 4) and empty[contract.ANSWER].shape == (0,)


def test_a_long_context_answer_only_in_the_last_window():
    pre = BertPreprocessor(VOCAB, sequence_length=16)
    task = QuestionAnsweringTask(max_query_length=4, doc_stride=5, max_answer_length=5, n_best=2)
    filler = " ".join(f"w{i % 40}" for i in range(60))
    context = f"{filler} and Mary Smith."  # 60 filler tokens, the answer at tokens 61-62
    out = served(serving_fn(pre, fake_qa_model(), task), ["who is"], [context])
    start = context.index("Mary")
    assert text(out[contract.ANSWER][0]) == "Mary Smith" and out[contract.START][0] == start
    # 64 context tokens in windows of 16 - 2 - 3 = 11, stride 5: the answer is only in the last.
    spans = squad.window_spans(64, 11, 5)
    assert len(spans) == 12 and [s for s, n in spans if s <= 61 and 62 < s + n] == [spans[-1][0]]
    # The Python post-processing finds it too, and training labels it in the last window only.
    ex = squad.SquadExample("q", "who is", context, ("Mary Smith",), (start,))
    assert task.predict(fake_qa_model(), pre, [ex])[0]["answer"] == "Mary Smith"
    features, alignment = task.features([ex], pre)
    assert alignment["exact"] == 1 and len(features) == 12
    assert (features.labels[:-1] == 0).all() and features.labels[-1].tolist() == [2 + 2 + 61 - 55, 2 + 2 + 62 - 55]
    assert features.token_ids[-1, features.labels[-1]].tolist() == [VOCAB.index("mary"), VOCAB.index("smith")]


def test_serving_graph_equals_python_post_processing_on_busy_logits():
    """Random logits everywhere: many candidates, max-context choices in overlapping windows;
    the graph and `decode_spans` must give the same n-best."""
    rng = np.random.default_rng(3)
    model = fake_qa_model(rng.normal(size=(len(VOCAB), 2)).astype(np.float32))
    pre = BertPreprocessor(VOCAB, sequence_length=14)
    task = QuestionAnsweringTask(max_query_length=3, doc_stride=3, max_answer_length=4, n_best=5)
    words = [t for t in VOCAB if t not in SPECIAL_TOKENS and not t.startswith("##")]
    questions, contexts = [], []
    for _ in range(12):
        questions.append(" ".join(rng.choice(words, size=rng.integers(1, 6))))
        contexts.append(" ".join(rng.choice(words, size=rng.integers(0, 30))))
    out = served(serving_fn(pre, model, task), questions, contexts)
    examples = [squad.SquadExample(str(i), q, c, ("x",), (0,)) for i, (q, c) in enumerate(zip(questions, contexts))]
    python = task.predict(model, pre, examples, batch_size=5)
    assert sum(len(c.split()) > 11 for c in contexts) >= 5  # several multi-window contexts
    for i, p in enumerate(python):
        n = len(p["answers"])
        assert [text(a) for a in out[contract.ANSWERS][i][:n]] == p["answers"], i
        assert out[contract.ANSWER_STARTS][i][:n].tolist() == p["answer_starts"]
        assert out[contract.ANSWER_ENDS][i][:n].tolist() == p["answer_ends"]
        np.testing.assert_allclose(out[contract.ANSWER_SCORES][i][:n], p["answer_scores"], atol=1e-5)
        assert (p["start"], p["end"], text(out[contract.ANSWER][i])) == (
            int(out[contract.START][i]),
            int(out[contract.END][i]),
            p["answer"],
        )


def test_decode_spans_respects_max_context_and_length():
    class F:  # two windows over 6 context tokens: [0, 4) and [2, 6), context at row position 2
        context_offset = np.array([2, 2])
        doc_length = np.array([4, 4])
        doc_start = np.array([0, 2])
        max_context = np.array([[0, 0, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 0]], bool)

    start = np.full((2, 7), -5.0, np.float32)
    end = np.full((2, 7), -5.0, np.float32)
    start[0, 4] = 3.0  # token 2 starting in window 0 (its max context)
    start[1, 2] = 9.0  # token 2 again in window 1: not its max context, ignored
    end[0, 5] = 2.0  # token 3
    end[1, 5] = 4.0  # token 5
    best = decode_spans(start, end, F, [0, 1], max_answer_length=2, n_best=1)
    assert best == [(pytest.approx(5.0), 2, 3)]
    # Without the max-context rule token 2 of window 1 would win with 9 + 4 (tokens 2-5).
    assert decode_spans(start, end, F, [0, 1], max_answer_length=4, n_best=1) == [(pytest.approx(5.0), 2, 3)]
    # One-token answers only: token 5 alone (window 1), -5 + 4, beats token 2 alone, 3 - 5.
    assert decode_spans(start, end, F, [0, 1], max_answer_length=1, n_best=2) == [
        (pytest.approx(-1.0), 5, 5),
        (pytest.approx(-2.0), 2, 2),
    ]


# ----------------------------------------------------------------------------- a tiny model learns; the export


TRAINED = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # noqa: F401
    path, questions, contexts = json.loads(sys.argv[1])
    fn = tf.saved_model.load(path).signatures["serving_default"]
    out = fn(question=tf.constant(questions), context=tf.constant(contexts))
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("kerasbert", "keras_hub", "keras_nlp"))
    print(json.dumps({"leaked": leaked, **{k: [x.decode() if isinstance(x, bytes) else x
                      for x in v.numpy().tolist()] for k, v in out.items() if v.shape.rank == 1}}))
    """
)


def train_tiny_qa(root, model_name="qa"):
    """Fine-tunes a tiny QA model from scratch (~250 steps, tens of seconds) on `write_squad`'s synthetic
    questions ("staff and <place>" asks for the person, "room and <person>" for the place), exported as
    `root/exports/<model_name>/1`. Articles 0-7 train, 8-9 are dev; `root/squad.json` holds both.

    Returns the `FinetuneResult`. Shared (session fixture `tiny_qa` in conftest.py) by the client and UI tests.
    """
    from kerasbert.training.finetune import FinetuneConfig, finetune

    vocab = write_vocab(root / "vocab.txt")
    write_squad(root / "squad.json", 640, seed=11, articles=10)
    return finetune(
        FinetuneConfig(
            task=QuestionAnsweringTask(
                train_articles="0-7", dev_articles="8-9", max_query_length=6, doc_stride=4, max_answer_length=4
            ),
            train_file=str(root / "squad.json"),
            dev_file=str(root / "squad.json"),
            vocab=str(vocab),
            sequence_length=20,
            epochs=8,
            batch_size=16,
            learning_rate=1e-3,
            dropout=0.0,
            seed=5,
            output_dir=str(root / "run"),
            export_dir=str(root / "exports"),
            model_name=model_name,
            verbose=0,
        )
    )


def test_a_tiny_model_learns_and_its_export_answers_as_python(tiny_qa, tmp_path):
    result, squad_file = tiny_qa.result, tiny_qa.squad_file
    task, dev = result.task, result.task.read_split(squad_file, "dev")
    assert len(dev) == 128 and result.results["steps"] >= 250
    assert task.alignment["questions"] == 512 and task.alignment["unalignable"] == 0
    # Chance: a random candidate span of a ~6-14 token context is right well under 10% of the time.
    metrics = result.results["dev_metrics"]
    assert metrics["exact_match"] >= 60.0 and metrics["f1"] >= metrics["exact_match"], metrics
    predictions = task.predict(result.model, result.preprocessor, dev)
    assert np.mean([p["answer"] in ex.answers for p, ex in zip(predictions, dev)]) * 100 == pytest.approx(
        metrics["exact_match"], abs=1e-6
    )
    # The served export (fresh process, TF + TF-Text only) answers exactly as the Python post-processing.
    questions, contexts = [ex.question for ex in dev], [ex.context for ex in dev]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", TRAINED, json.dumps([result.export, questions, contexts])],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"},
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["leaked"] == []
    assert out[contract.ANSWER] == [p["answer"] for p in predictions]
    assert out[contract.START] == [p["start"] for p in predictions]
    assert out[contract.END] == [p["end"] for p in predictions]
    np.testing.assert_allclose(out[contract.SCORE], [p["score"] for p in predictions], atol=1e-5)
    assert all(
        c[s:e] == a for c, s, e, a in zip(contexts, out[contract.START], out[contract.END], out[contract.ANSWER])
    )
    meta = json.loads(open(os.path.join(result.export, "assets.extra", "kerasbert.json"), encoding="utf-8").read())
    assert meta["task"] == contract.QUESTION_ANSWERING and meta["task_config"]["max_answer_length"] == 4


def test_registered_with_flags_and_defaults():
    from kerasbert.training.finetune import build_parser, config_from_args

    assert get_task(contract.QUESTION_ANSWERING) is QuestionAnsweringTask
    args = build_parser().parse_args(
        [
            "--task",
            "question_answering",
            "--train_file",
            "f.json",
            "--train_articles",
            "0-29",
            "--dev_articles",
            "30-37",
        ]
    )
    config = config_from_args(args)
    assert config.task.train_articles == "0-29" and config.task.doc_stride == 128
    assert config.task.max_query_length == 64 and config.task.max_answer_length == 30 and config.task.n_best == 5
    assert QuestionAnsweringTask.default_sequence_length == 384
    with pytest.raises(TaskDataError, match="--max_query_length 64 leaves no room"):
        QuestionAnsweringTask().check_options(sequence_length=64)
    again = QuestionAnsweringTask.from_config(json.loads(json.dumps(config.task.get_config())))
    assert again == config.task


def test_the_driver_defaults_to_384_tokens_for_question_answering(tmp_path):
    from kerasbert.training.finetune import FinetuneConfig, _resolve

    write_squad(tmp_path / "s.json", 4, seed=1)
    vocab = write_vocab(tmp_path / "vocab.txt")
    common = {"train_file": str(tmp_path / "s.json"), "vocab": str(vocab), "export": False}
    assert _resolve(FinetuneConfig(task="question_answering", **common))[0].sequence_length == 384
    assert _resolve(FinetuneConfig(task=QuestionAnsweringTask(), **common))[0].sequence_length == 384
    assert _resolve(FinetuneConfig(task="question_answering", sequence_length=128, **common))[0].sequence_length == 128
    assert _resolve(FinetuneConfig(task="token_classification", **common))[0].sequence_length == 128


@pytest.mark.skipif(not os.path.isfile(SQUAD_FILE), reason="the shared SQuAD file is not here")
def test_the_shared_squad_file_reads_and_aligns():
    task = QuestionAnsweringTask(train_articles="0-29", dev_articles="30-37")
    train, dev = task.read_split(SQUAD_FILE, "train"), task.read_split(SQUAD_FILE, "dev")
    assert len(train) + len(dev) == 8582 and len(dev) > 1000
    assert {ex.article for ex in dev} == set(range(30, 38))
    task.prepare(train, dev)


@pytest.mark.skipif(not os.path.isfile(SQUAD_FILE), reason="the shared SQuAD file is not here")
def test_graph_equals_python_on_real_squad_text():
    """Real paragraphs (long ones: several windows of 64 tokens), the real uncased vocab and a random
    tiny encoder: the serving graph's n-best equal the Python post-processing's, offsets included."""
    from kerasbert.modeling import build_encoder

    vocab = os.path.join(os.path.dirname(SQUAD_FILE), "..", "vocab", "bert-base-uncased", "vocab.txt")
    if not os.path.isfile(vocab):
        pytest.skip("the shared bert-base-uncased vocab is not here")
    keras.utils.set_random_seed(1)
    pre = BertPreprocessor(vocab, sequence_length=64)
    task = QuestionAnsweringTask(max_query_length=16, doc_stride=24, max_answer_length=10, n_best=4)
    examples = task.read_examples(SQUAD_FILE)[-2000::50]  # 40 questions of the last articles
    encoder = build_encoder(
        "custom", pre.vocabulary_size, num_layers=1, hidden_dim=32, num_heads=2, intermediate_dim=64, dropout=0.0
    )
    model = task.build_model(encoder, dropout=0.0)
    python = task.predict(model, pre, examples, batch_size=16)
    out = served(serving_fn(pre, model, task), [ex.question for ex in examples], [ex.context for ex in examples])
    features, _ = task.features(examples, pre, with_labels=False)
    assert len(features) > 3 * len(examples)  # long contexts: several windows each
    for i, (ex, p) in enumerate(zip(examples, python)):
        assert [text(a) for a in out[contract.ANSWERS][i]] == p["answers"], ex.id
        assert out[contract.ANSWER_STARTS][i].tolist() == p["answer_starts"], ex.id
        np.testing.assert_allclose(out[contract.ANSWER_SCORES][i], p["answer_scores"], atol=1e-4)
        assert ex.context[int(out[contract.START][i]) : int(out[contract.END][i])] == text(out[contract.ANSWER][i])
