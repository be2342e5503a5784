"""The sample dataset and vocab shipped in `kerasbert/data/sample/`."""

import collections
import re
import string

import numpy as np
import pytest

from kerasbert.data import sample
from kerasbert.data.sample import generate


def _read(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert lines[0] == "sentence\tlabel"
    assert lines[-1] == "", "file must end with a newline"
    rows = [line.split("\t") for line in lines[1:-1]]
    assert all(len(r) == 2 for r in rows), "every row has exactly one tab"
    return rows


@pytest.fixture(scope="module")
def train():
    return _read(sample.TRAIN_PATH)


@pytest.fixture(scope="module")
def dev():
    return _read(sample.DEV_PATH)


def test_files_present_and_small():
    paths = [
        sample.TRAIN_PATH,
        sample.DEV_PATH,
        sample.VOCAB_PATH,
        sample.SAMPLE_DIR / "README.md",
        sample.SAMPLE_DIR / "generate.py",
    ]
    for path in paths:
        assert path.is_file(), path
    data_bytes = sum(p.stat().st_size for p in paths[:3])
    assert data_bytes < 400_000


def test_sizes_and_label_balance(train, dev):
    assert len(train) == generate.TRAIN_SIZE == 4000
    assert len(dev) == generate.DEV_SIZE == 300
    for rows in (train, dev):
        counts = collections.Counter(label for _, label in rows)
        assert set(counts) == set(sample.LABELS)
        assert counts["negative"] == counts["positive"] == len(rows) // 2


def test_no_duplicates_and_no_train_dev_overlap(train, dev):
    train_keys = [generate._key(s) for s, _ in train]
    dev_keys = [generate._key(s) for s, _ in dev]
    assert len(set(train_keys)) == len(train_keys)
    assert len(set(dev_keys)) == len(dev_keys)
    assert not set(train_keys) & set(dev_keys)
    assert not {s for s, _ in train} & {s for s, _ in dev}


def test_sentences_are_clean_short_text(train, dev):
    for sentence, _ in train + dev:
        assert sentence == sentence.strip() and sentence
        assert '"' not in sentence and "\t" not in sentence
        assert sentence.isascii()
        assert 2 <= len(sentence.split()) <= 40


def test_label_needs_more_than_single_words(train):
    # Negation, contrast and scores are in there: the same word appears
    # under both labels often enough that no word is a lookup.
    joined = {label: " ".join(s.lower() for s, l in train if l == label) for label in sample.LABELS}
    for phrase in ("not", "but", "recommend", "bad", "great"):
        assert phrase in joined["negative"].split() or f" {phrase} " in joined["negative"]
        assert phrase in joined["positive"].split() or f" {phrase} " in joined["positive"]
    assert any(" not bad" in s.lower() for s, l in train if l == "positive")
    assert any(" not great" in s.lower() for s, l in train if l == "negative")


def test_vocab_layout():
    vocab = sample.VOCAB_PATH.read_text(encoding="utf-8").split("\n")
    assert vocab[-1] == ""
    vocab = vocab[:-1]
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(vocab) == len(set(vocab))
    assert 800 <= len(vocab) <= 2000
    tokens = set(vocab)
    for c in string.ascii_lowercase + string.digits + string.punctuation:
        assert c in tokens and "##" + c in tokens, c
    # Learned from the data: whole frequent words, not just characters.
    for word in ("the", "not", "recommend", "great", "terrible"):
        assert word in tokens


def test_unk_rate_on_dev_below_half_percent(dev):
    tf = pytest.importorskip("tensorflow")
    from kerasbert.preprocessing import BertPreprocessor

    pre = BertPreprocessor(str(sample.VOCAB_PATH))
    ids = pre.tokenize(tf.constant([s for s, _ in dev])).flat_values.numpy()
    assert (ids == pre.unk_id).mean() < 0.005
    # Unseen English and symbols ASCII still avoid [UNK].
    ids = pre.tokenize(tf.constant(["Zebra-quokka @ 5:45pm costs $12 #wow"])).flat_values
    assert pre.unk_id not in ids.numpy().tolist()


def test_generator_reproduces_committed_files(tmp_path):
    pytest.importorskip("tensorflow_text")
    counts = generate.write_all(tmp_path)
    assert counts["train"] == 4000 and counts["dev"] == 300
    for name in ("train.tsv", "dev.tsv", "vocab.txt"):
        assert (tmp_path / name).read_bytes() == (sample.SAMPLE_DIR / name).read_bytes(), name


def test_generator_small_sizes_and_seed():
    a_train, a_dev = generate.generate_examples(train_size=40, dev_size=20, seed=1)
    b_train, b_dev = generate.generate_examples(train_size=40, dev_size=20, seed=1)
    c_train, _ = generate.generate_examples(train_size=40, dev_size=20, seed=2)
    assert (a_train, a_dev) == (b_train, b_dev)
    assert a_train != c_train
    assert len(a_train) == 40 and len(a_dev) == 20


def _bag_of_words(texts, index):
    x = np.zeros((len(texts), len(index)), np.float32)
    for i, text in enumerate(texts):
        for word in re.findall(r"[a-z0-9]+|[^a-z0-9\s]", text.lower()):
            if word in index:
                x[i, index[word]] = 1.0
    return x


def test_bag_of_words_is_not_enough(train, dev):
    """A unigram logistic regression learns a lot but cannot fit negation and
    contrast: well above chance, far from perfect (tiny BERT gets ~0.85+)."""
    index = {}
    for sentence, _ in train:
        for word in re.findall(r"[a-z0-9]+|[^a-z0-9\s]", sentence.lower()):
            index.setdefault(word, len(index))
    x = _bag_of_words([s for s, _ in train], index)
    y = np.array([label == "positive" for _, label in train], np.float32)
    xd = _bag_of_words([s for s, _ in dev], index)
    yd = np.array([label == "positive" for _, label in dev], np.float32)
    w, b = np.zeros(x.shape[1], np.float32), 0.0
    for _ in range(2000):  # full-batch gradient descent, lightly regularised
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        w -= 0.5 * (x.T @ (p - y) / len(y) + 1e-3 * w)
        b -= 0.5 * float((p - y).mean())
    train_acc = float(((x @ w + b > 0) == y).mean())
    dev_acc = float(((xd @ w + b > 0) == yd).mean())
    assert 0.7 < dev_acc < 0.9, dev_acc
    assert train_acc < 0.97, train_acc
