"""WordPiece vocabulary learning and the `vocab` subcommand.

A synthetic corpus (English-like words built from stems and suffixes, plus
Chinese lines) checks the structure of the learned vocab and its [UNK] rate
on held-out text from the same distribution; WikiText-2 (skipped without
../shared) checks the [UNK] rate on held-out real lines.
"""

import random

import pytest
import tensorflow as tf

from conftest import shared_path
from kerasbert import cli, train
from kerasbert.preprocessing import SPECIAL_TOKENS, BertPreprocessor
from kerasbert.preprocessing import vocab as vocab_lib

STEMS = [
    "walk",
    "talk",
    "jump",
    "play",
    "read",
    "paint",
    "climb",
    "open",
    "call",
    "help",
    "work",
    "look",
    "train",
    "cook",
    "clean",
    "dance",
    "fish",
    "kick",
    "pull",
    "push",
]
SUFFIXES = ["", "s", "ed", "ing", "er", "ers"]
CJK = "我们今天天气很好学习中文非常有意思的朋友北京大学"


def sentences(seed, count):
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        words = [rng.choice(STEMS) + rng.choice(SUFFIXES) for _ in range(rng.randint(4, 12))]
        words[0] = words[0].capitalize()
        line = " ".join(words) + rng.choice([".", "!", "?", ", ok."])
        if i % 5 == 0:
            line += " " + "".join(rng.choice(CJK) for _ in range(rng.randint(3, 8))) + "。"
        lines.append(line)
    return lines


@pytest.fixture(scope="module")
def learned():
    return vocab_lib.learn_vocabulary(texts=sentences(0, 600), vocab_size=120, num_unused=3)


def test_vocab_structure(learned):
    assert learned[:8] == list(SPECIAL_TOKENS) + ["[unused0]", "[unused1]", "[unused2]"]
    assert learned[0] == "[PAD]" and len(set(learned)) == len(learned)
    assert 80 <= len(learned) <= 120  # the learner lands at or under the target
    # Uncased: normalised to lower case; every character both word-initial
    # and as a "##" continuation, plus frequent multi-character pieces.
    assert not any(t != t.lower() for t in learned if not t.startswith("["))
    assert set("abcdefghiklmnoprstuwy") <= set(learned)
    assert {"##" + c for c in "abcdefghiklmnoprstuwy"} <= set(learned)
    assert sum(len(t.lstrip("#")) > 1 for t in learned if not t.startswith("[")) >= 5
    # CJK characters are whole tokens, never "##" pieces.
    assert set(CJK) <= set(learned)
    assert not [t for t in learned if t.startswith("##") and vocab_lib.is_cjk_char(t[-1])]


def test_heldout_unk_rate_and_roundtrip(learned, tmp_path):
    path = tmp_path / "vocab.txt"
    vocab_lib.write_vocabulary(learned, path)
    heldout = sentences(1, 200)
    assert vocab_lib.unk_rate(str(path), heldout) < 0.001
    pre = BertPreprocessor(str(path), sequence_length=64)
    assert pre.pad_id == 0 and pre.vocabulary == learned
    ids = pre.tokenize(tf.constant(["Paintingers CLIMBED, 北京大学。"]))
    pieces = [t.decode() for t in pre.id_to_token(ids).flat_values.numpy()]
    assert pre.unk_id not in ids.flat_values.numpy()
    # CJK characters come out one token each; pieces re-join into the words.
    assert pieces[-5:] == ["北", "京", "大", "学", "。"]
    assert " ".join(pieces).replace(" ##", "") == "paintingers climbed , 北 京 大 学 。"
    packed = pre([tf.constant(["Walked ẞ"])])["token_ids"].numpy()[0]
    assert packed[0] == pre.cls_id and pre.unk_id in packed.tolist()  # unseen character


def test_cased_vocab_keeps_case():
    texts = ["Paris Berlin London paris berlin london Écoles"] * 30
    cased = vocab_lib.learn_vocabulary(texts=texts, vocab_size=60, lowercase=False)
    uncased = vocab_lib.learn_vocabulary(texts=texts, vocab_size=60, lowercase=True)
    assert {"Paris", "paris", "Écoles"} <= set(cased)
    assert "paris" in uncased and "Paris" not in uncased and "ecoles" in uncased
    assert vocab_lib.unk_rate(cased, ["Paris Écoles london"], lowercase=False) == 0.0


def test_cli_writes_vocab_and_rejects_bad_flags(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(sentences(2, 300)) + "\n")
    out = tmp_path / "out" / "vocab.txt"
    code = train.main(["vocab", "--input_files", str(corpus), "--output_file", str(out), "--vocab_size", "120"])
    assert code == 0
    tokens = out.read_text().splitlines()
    assert tokens[:5] == list(SPECIAL_TOKENS) and len(tokens) <= 120
    assert "[UNK] rate" in capsys.readouterr().out
    bad = [
        ["vocab", "--input_files", str(tmp_path / "nope.txt"), "--output_file", str(out)],
        ["vocab", "--input_files", str(corpus), "--output_file", str(out), "--vocab_size", "3"],
    ]
    for argv in bad:
        assert cli.run(train.main, argv) == 2
    err = capsys.readouterr().err
    assert "--input_files: no such file" in err and "--vocab_size 3 leaves no room" in err


def test_wikitext_vocab_heldout_unk_rate():
    path = shared_path("data", "wikitext2_raw", "wiki.test.raw.lines.txt")
    lines = path.read_text(encoding="utf-8").splitlines()
    vocab = vocab_lib.learn_vocabulary(texts=lines[:300], vocab_size=1000)
    assert 950 <= len(vocab) <= 1000
    rate = vocab_lib.unk_rate(vocab, lines[2500:])  # ~60k held-out pieces
    assert rate < 0.002, rate
