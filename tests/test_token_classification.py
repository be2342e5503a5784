"""The token-classification task: WordPiece alignment ("U.S.", CJK and Latin
runs), windows that never lose a word, word-level evaluation on known
predictions, the task hooks, and a tiny encoder learning a toy NER task."""

import argparse
import random

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import shared_path
from kerasbert import contract
from kerasbert.data import tagging
from kerasbert.data.tagging import TaggedCorpus, TaggedSentence
from kerasbert.preprocessing.bert_preprocessor import SPECIAL_TOKENS, BertPreprocessor
from kerasbert.tasks.base import TaskDataError, get_task
from kerasbert.tasks.token_classification import TokenClassificationTask, tokenize_sentences
from kerasbert.training.entity_metrics import flat_scores

TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
OUT, B_LOC, I_LOC, B_PER, I_PER = range(5)


def sentence(words, tags, joiner=" "):
    return TaggedSentence(tuple(words), tuple(tagging.to_iob2(tags)), 1, joiner)


def task_with(types=("LOC", "PER"), **options):
    return TokenClassificationTask(entity_types=list(types), **options)


# ---------------------------------------------------------------------------
# Alignment on plain arrays
# ---------------------------------------------------------------------------
def test_align_labels_us_and_subwords():
    # "John Johnson visited the U.S. ." -> john | john ##son | visited | the | u . s . | .
    words = ["John", "Johnson", "visited", "the", "U.S.", "."]
    _, spans = tagging.sentence_text(words)
    starts = [0, 5, 9, 13, 21, 25, 26, 27, 28, 30]
    ends = [4, 9, 12, 20, 24, 26, 27, 28, 29, 31]
    cont = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    word_tags = [B_PER, I_PER, OUT, OUT, B_LOC, OUT]
    labels = tagging.align_labels(starts, ends, cont, spans, word_tags)
    assert labels.tolist() == [B_PER, I_PER, -1, OUT, OUT, B_LOC, I_LOC, I_LOC, I_LOC, OUT]
    assert labels.dtype == np.int32
    everything = tagging.align_labels(starts, ends, cont, spans, word_tags, label_all_subtokens=True)
    assert everything.tolist() == [B_PER, I_PER, I_PER, OUT, OUT, B_LOC, I_LOC, I_LOC, I_LOC, OUT]
    # Back to words: the first token of each word decides; ##son's own
    # (untrained) prediction does not matter.
    predicted = labels.copy()
    predicted[2] = B_LOC
    recovered = tagging.word_tags_from_tokens(starts, ends, predicted, spans, is_continuation=cont)
    assert recovered.tolist() == word_tags


def test_align_cjk_and_latin_run():
    # Characters 读 M B A 在 北 京 -> tokens 读 | mba | 在 | 北 | 京
    chars = list("读MBA在北京")
    _, spans = tagging.sentence_text(chars, "")
    starts, ends, cont = [0, 1, 4, 5, 6], [1, 4, 5, 6, 7], [0] * 5
    gold = tagging.to_iob2(["O", "B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC"])
    ids = [TAGS.index(t) for t in gold]
    labels = tagging.align_labels(starts, ends, cont, spans, ids)
    assert labels.tolist() == [OUT, B_PER, OUT, B_LOC, I_LOC]
    words = tagging.word_tags_from_tokens(starts, ends, labels, spans)
    assert [TAGS[i] for i in words] == gold  # B A start inside "mba": I-PER
    # A Latin run starting an entity after an O character keeps the first character's tag.
    labels = tagging.align_labels(starts, ends, cont, spans, [OUT, OUT, B_PER, I_PER, OUT, OUT, OUT])
    assert labels.tolist() == [OUT, OUT, OUT, OUT, OUT]


def test_words_outside_tokens_and_continuations_across_pieces():
    # "a  b": a dropped/whitespace word has no token: O.
    spans = np.array([[0, 1], [1, 2], [3, 4]])
    words = tagging.word_tags_from_tokens([0, 3], [1, 4], [B_PER, B_LOC], spans)
    assert words.tolist() == [B_PER, OUT, B_LOC]
    # A word starting on a ## piece (PMIMember: pm ##ime ##mber) takes I- of its BERT word.
    chars = list("PMIMember")
    _, spans = tagging.sentence_text(chars, "")
    starts, ends, cont = [0, 2, 5], [2, 5, 9], [0, 1, 1]
    words = tagging.word_tags_from_tokens(starts, ends, [B_LOC, OUT, B_PER], spans, is_continuation=cont)
    assert words.tolist() == [B_LOC] + [I_LOC] * 8
    assert tagging.propagate_continuations([B_PER, OUT, OUT, OUT], [0, 1, 1, 0]).tolist() == [B_PER, I_PER, I_PER, OUT]
    # A token that lies in no word gets -1.
    assert tagging.align_labels([0, 5], [1, 6], [0, 0], [[0, 1]], [B_PER]).tolist() == [B_PER, -1]


def test_window_ranges():
    assert tagging.window_ranges(0, 4) == [(0, 0)]
    assert tagging.window_ranges(4, 4) == [(0, 4)]
    assert tagging.window_ranges(9, 4) == [(0, 4), (4, 8), (8, 9)]
    with pytest.raises(ValueError):
        tagging.window_ranges(3, 0)
    merged = tagging.merge_windows([np.array([1, 2]), np.array([7]), np.array([3])], [0, 1, 0], 3)
    assert [m.tolist() for m in merged] == [[1, 2, 3], [7], []]


# ---------------------------------------------------------------------------
# With the preprocessor
# ---------------------------------------------------------------------------
ORACLE_TAG = {
    "john": B_PER,
    "mary": B_PER,
    "smith": I_PER,
    "##son": OUT,
    "paris": B_LOC,
    "new": B_LOC,
    "york": I_LOC,
    "u": B_LOC,
    "s": I_LOC,
    "北": B_LOC,
    "京": I_LOC,
    "mba": B_PER,
}
VOCAB = list(SPECIAL_TOKENS) + sorted(ORACLE_TAG) + ["the", "went", "to", "and", "in", ".", "读", "在", "a", "b"]


def oracle_model(vocab=VOCAB, tag_of=ORACLE_TAG, num_tags=5):
    """A 'model' tagging each WordPiece by its id alone (O unless in `tag_of`)."""
    table = np.full((len(vocab), num_tags), -3.0, np.float32)
    for i, token in enumerate(vocab):
        table[i, tag_of.get(token, OUT)] = 3.0
    inputs = {
        "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
        "segment_ids": keras.Input((None,), dtype="int32", name="segment_ids"),
        "padding_mask": keras.Input((None,), dtype="bool", name="padding_mask"),
    }
    embed = keras.layers.Embedding(len(vocab), num_tags, embeddings_initializer=keras.initializers.Constant(table))
    return keras.Model(inputs, embed(inputs["token_ids"]))


def test_tokenize_and_align_with_preprocessor():
    pre = BertPreprocessor(VOCAB, sequence_length=16)
    s = sentence(["John", "Johnson", "went", "to", "the", "U.S.", "."], ["B-PER", "I-PER", "O", "O", "O", "B-LOC", "O"])
    c = sentence(list("读MBA在北京"), ["O", "B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC"], joiner="")
    tokens = tokenize_sentences(pre, [s.text, c.text])
    ids, starts, ends, cont = tokens.row(0)
    assert [pre.vocabulary[i] for i in ids] == ["john", "john", "##son", "went", "to", "the", "u", ".", "s", ".", "."]
    assert [s.text[a:b] for a, b in zip(starts, ends)] == [
        "John",
        "John",
        "son",
        "went",
        "to",
        "the",
        "U",
        ".",
        "S",
        ".",
        ".",
    ]
    assert cont.tolist() == [False, False, True] + [False] * 8
    windows = task_with().windows([s, c], pre, tokens=tokens)
    assert windows.labels[0, : windows.lengths[0]].tolist() == [
        -1,
        B_PER,
        I_PER,
        -1,
        OUT,
        OUT,
        OUT,
        B_LOC,
        I_LOC,
        I_LOC,
        I_LOC,
        OUT,
        -1,
    ]
    ids, starts, ends, cont = tokens.row(1)
    assert [pre.vocabulary[i] for i in ids] == ["读", "mba", "在", "北", "京"]
    assert windows.labels[1, : windows.lengths[1]].tolist() == [-1, OUT, B_PER, OUT, B_LOC, I_LOC, -1]


def long_sentences(rng, n, max_words):
    """Sentences whose tags are what the oracle model predicts (so F1 must be 1)."""
    pool = [
        (["John"], ["B-PER"]),
        (["Mary", "Smith"], ["B-PER", "I-PER"]),
        (["Johnson"], ["B-PER"]),
        (["Paris"], ["B-LOC"]),
        (["New", "York"], ["B-LOC", "I-LOC"]),
        (["U.S."], ["B-LOC"]),
        (["went"], ["O"]),
        (["to"], ["O"]),
        (["the"], ["O"]),
        (["and"], ["O"]),
        (["."], ["O"]),
    ]
    out = []
    for _ in range(n):
        words, tags, target = [], [], rng.randint(1, max_words)
        while len(words) < target:
            w, t = rng.choice(pool)
            words += w
            tags += t
        out.append(sentence(words, tags))
    return out


def test_windows_never_lose_a_word_and_evaluate_is_exact():
    rng = random.Random(0)
    pre = BertPreprocessor(VOCAB, sequence_length=8)  # windows of 6 tokens
    sentences = long_sentences(rng, 40, 30)
    task = task_with()
    tokens = tokenize_sentences(pre, [s.text for s in sentences])
    windows = task.windows(sentences, pre, tokens=tokens)
    assert len(windows) > 2 * len(sentences)  # most sentences need several windows
    assert windows.lengths.max() <= 8
    # Every token is in exactly one window, in order, with its label.
    for i, s in enumerate(sentences):
        rows = np.flatnonzero(windows.sentence == i)
        ids = np.concatenate([windows.ids[r, 1 : windows.lengths[r] - 1] for r in rows])
        labels = np.concatenate([windows.labels[r, 1 : windows.lengths[r] - 1] for r in rows])
        t_ids, starts, ends, cont = tokens.row(i)
        assert ids.tolist() == t_ids.tolist()
        expected = tagging.align_labels(starts, ends, cont, s.spans, [TAGS.index(t) for t in s.tags])
        assert labels.tolist() == expected.tolist()
        assert all(
            windows.ids[r, 0] == pre.cls_id and windows.ids[r, windows.lengths[r] - 1] == pre.sep_id for r in rows
        )
    # The oracle's predictions come back to every word: F1 1.0 over several windows.
    model = oracle_model()
    predicted = task.predict_word_tags(model, pre, sentences, batch_size=7)
    assert predicted == [list(s.tags) for s in sentences]
    scores = task.evaluate(model, pre, sentences, batch_size=5)
    assert list(scores)[:3] == ["f1", "precision", "recall"]
    assert scores["f1"] == 1.0 and scores["f1_LOC"] == 1.0 and scores["f1_PER"] == 1.0


def test_evaluate_matches_the_metric_on_known_wrong_predictions():
    # The oracle calls "paris" PER and never tags "smith": expected word tags by hand.
    tag_of = dict(ORACLE_TAG, paris=B_PER, smith=OUT)
    pre = BertPreprocessor(VOCAB, sequence_length=6)
    sentences = long_sentences(random.Random(1), 30, 12)
    expected = []
    for s in sentences:
        tags = list(s.tags)
        for i, w in enumerate(s.words):
            if w == "Paris":
                tags[i] = "B-PER"
            if w == "Smith":
                tags[i] = "O"
        expected.append(tags)
    task = task_with()
    model = oracle_model(tag_of=tag_of)
    assert task.predict_word_tags(model, pre, sentences) == expected
    scores = task.evaluate(model, pre, sentences, batch_size=4)
    assert scores == pytest.approx(flat_scores([list(s.tags) for s in sentences], expected))
    assert scores["f1"] < 1.0


def test_real_files_round_trip_through_alignment_and_windows():
    """Gold tags aligned onto WordPieces, cut into windows of 32 and read back
    as word tags: CoNLL and Resume come back exactly; in Weibo dev one
    sentence differs, where two adjacent entities "Big" + "wok" are one BERT
    token ("bigwok") and so merge."""
    task = TokenClassificationTask()
    for folder, name, vocab, differ in [
        ("conll2003", "eng.testa", "bert-base-uncased", 0),
        ("chinese_ner_resume", "dev.char.bmes", "bert-base-chinese", 0),
        ("chinese_ner_weibo", "dev.all.bmes", "bert-base-chinese", 1),
    ]:
        corpus = task.read_examples(str(shared_path("data", folder, name)))
        task = TokenClassificationTask(entity_types=corpus.entity_types())
        pre = BertPreprocessor(str(shared_path("data", "vocab", vocab, "vocab.txt")), sequence_length=32)
        tokens = tokenize_sentences(pre, [s.text for s in corpus])
        windows = task.windows(corpus, pre, tokens=tokens)
        assert windows.lengths.max() <= 32 and len(windows) > len(corpus)
        per_window = [windows.labels[r, 1 : windows.lengths[r] - 1] for r in range(len(windows))]
        merged = tagging.merge_windows(per_window, windows.sentence, len(corpus))
        recovered = []
        for i, s in enumerate(corpus):
            _, starts, ends, cont = tokens.row(i)
            assert len(merged[i]) == len(starts)
            token_tags = np.maximum(merged[i], 0)  # -1 only at ## pieces, replaced by propagation
            ids = tagging.word_tags_from_tokens(starts, ends, token_tags, s.spans, is_continuation=cont)
            recovered.append([task.tags[t] for t in ids])
        wrong = [s.line for s, r in zip(corpus, recovered) if list(s.tags) != r]
        assert len(wrong) == differ, (name, wrong)
        assert flat_scores([list(s.tags) for s in corpus], recovered)["f1"] > 0.99


# ---------------------------------------------------------------------------
# Task hooks
# ---------------------------------------------------------------------------
def test_registry_flags_config_and_metadata(tmp_path):
    cls = get_task(contract.TOKEN_CLASSIFICATION)
    assert cls is TokenClassificationTask and cls.primary_metric == "f1"
    parser = argparse.ArgumentParser()
    cls.add_arguments(parser)
    args = parser.parse_args(["--format", "bmes", "--tag_scheme", "bioes"])
    task = cls.from_args(args)
    assert (task.format, task.scheme, task.label_all_subtokens) == ("bmes", "bioes", False)
    with pytest.raises(SystemExit):
        parser.parse_args(["--format", "xml"])
    with pytest.raises(TaskDataError, match="--format tsv: token classification reads auto, conll, bmes"):
        cls.from_args(argparse.Namespace(format="tsv"))  # the table tasks' value of the shared flag
    train = tmp_path / "train.txt"
    train.write_text("张 三\tB-PER E-PER\n去 北 京\tO B-LOC E-LOC\n", encoding="utf-8")
    corpus = task.read_examples(str(train))
    task.prepare(corpus, corpus)
    assert task.entity_types == ["LOC", "PER"] and task.tags == TAGS
    assert "2 entity types (LOC, PER), 5 IOB2 tags, from bmes/bioes" == task.describe()
    meta = task.metadata()
    assert meta["entity_types"] == ["LOC", "PER"] and meta["tags"] == TAGS and meta["scheme"] == "bioes"
    again = cls.from_config(task.get_config())
    assert again == task and again.tags == TAGS
    assert task.take(corpus, 1).scheme == "bioes"


def test_data_errors(tmp_path):
    task = TokenClassificationTask()
    bad = tmp_path / "bad.txt"
    bad.write_text("John B-PER\nSmith Q-PER\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=r"bad\.txt:2: unknown tag 'Q-PER'"):
        task.read_examples(str(bad))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match="no tagged sentences"):
        task.read_examples(str(empty))
    train = TaggedCorpus([sentence(["John"], ["B-PER"])], path="train.txt")
    dev = TaggedCorpus([sentence(["Rome"], ["B-LOC"]), sentence(["Acme"], ["B-ORG"])], path="dev.txt")
    with pytest.raises(
        TaskDataError, match=r"dev\.txt: entity types LOC, ORG do not occur in the training file \(which has PER\)"
    ):
        task.prepare(train, dev)
    with pytest.raises(TaskDataError, match=r"train\.txt: no entities"):
        TokenClassificationTask().prepare(TaggedCorpus([sentence(["a"], ["O"])], path="train.txt"), None)
    with pytest.raises(ValueError, match="call prepare"):
        TokenClassificationTask().build_model(None)


def test_loss_and_token_accuracy_ignore_minus_one():
    task = task_with()
    loss = task.build_loss()
    labels = np.array([[-1, 1, 2, -1, -1], [-1, 0, -1, -1, -1]])
    logits = np.random.RandomState(0).randn(2, 5, 5).astype("float32")
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    mask = labels >= 0
    expected = -np.mean([log_p[i, j, labels[i, j]] for i, j in zip(*np.nonzero(mask))])
    assert float(loss(labels, logits)) == pytest.approx(expected, rel=1e-5)
    (metric,) = task.build_metrics()
    metric.update_state(labels, logits)
    hits = [logits[i, j].argmax() == labels[i, j] for i, j in zip(*np.nonzero(mask))]
    assert float(metric.result()) == pytest.approx(np.mean(hits))


def _padding_share(task, sentences, pre):
    ds, rows = task.build_inputs(sentences, pre, batch_size=16, training=True, seed=3)
    batches = list(ds)
    assert len(batches) == rows // 16
    padding = total = 0
    for features, labels in batches:
        mask = features["padding_mask"].numpy()
        assert features["token_ids"].shape == labels.shape and features["token_ids"].dtype == tf.int32
        assert mask[:, -1].any()  # cut to the longest row
        padding += mask.size - mask.sum()
        total += mask.size
        assert (labels.numpy()[~mask] == -1).all()
    return padding / total


def test_build_inputs_buckets_and_cuts_batches():
    rng = random.Random(2)
    pre = BertPreprocessor(VOCAB, sequence_length=32)
    sentences = long_sentences(rng, 200, 25)
    task = task_with()
    random_batches = _padding_share(task, sentences, pre)  # the default: random batches, each cut
    bucketed = _padding_share(task_with(length_bucketing=True), sentences, pre)
    assert bucketed < 0.15 and bucketed < random_batches
    ds, rows = task.build_inputs(sentences, pre, batch_size=16, training=False)
    assert sum(int(f["token_ids"].shape[0]) for f, _ in ds) == rows
    lengths = [int(f["token_ids"].shape[1]) for f, _ in ds]
    assert lengths == sorted(lengths)


def test_tiny_encoder_learns_toy_ner():
    """Capitalised words are PER (one or two words), a word after "in" is
    LOC; a few names split into WordPieces."""
    from kerasbert.modeling import build_encoder

    first = ["Anna", "Bruno", "Carla", "Dmitri", "Elena", "Farid"]
    last = ["Kowalski", "Lund", "Moreau"]
    places = ["oslo", "lima", "kyoto", "accra"]
    filler = ["we", "met", "today", "with", "and", "saw", "then", "left", "later", "friends"]
    vocab = (
        list(SPECIAL_TOKENS)
        + first[:4]
        + ["Dmi", "##tri", "Ele", "##na", "Far", "##id"]
        + last
        + places
        + filler
        + ["in"]
    )
    rng = random.Random(0)

    def make(n):
        out = []
        for _ in range(n):
            words, tags = [], []
            for _ in range(rng.randint(3, 8)):
                r = rng.random()
                if r < 0.2:
                    name = [rng.choice(first)] + ([rng.choice(last)] if rng.random() < 0.4 else [])
                    words += name
                    tags += ["B-PER"] + ["I-PER"] * (len(name) - 1)
                elif r < 0.3:
                    words += ["in", rng.choice(places)]
                    tags += ["O", "B-LOC"]
                else:
                    words.append(rng.choice(filler))
                    tags.append("O")
            out.append(sentence(words, tags))
        return TaggedCorpus(out, path="toy", format="conll", scheme="iob2")

    train, dev = make(1200), make(200)
    task = TokenClassificationTask()
    task.prepare(train, dev)
    pre = BertPreprocessor(vocab, lowercase=False, sequence_length=24)
    keras.utils.set_random_seed(0)
    model = task.build_model(build_encoder("tiny", len(vocab)), dropout=0.0)
    assert model.output_shape == (None, None, len(task.tags))
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3), loss=task.build_loss(), metrics=task.build_metrics(), jit_compile=False
    )
    ds, rows = task.build_inputs(train, pre, batch_size=32, training=True, seed=0)
    steps = rows // 32
    history = model.fit(ds.repeat(), epochs=6, steps_per_epoch=steps, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    scores = task.evaluate(model, pre, dev, batch_size=64)
    assert scores["f1"] > 0.9, scores
    assert scores["f1_PER"] > 0.9 and scores["f1_LOC"] > 0.9
