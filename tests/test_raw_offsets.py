"""`BertPreprocessor.tokenize_with_raw_offsets`: WordPiece ids with code point
offsets into the raw string (`text[start:end]` is the token's source), and
the same ids as `tokenize()` on real data."""

import random

import numpy as np
import pytest
import tensorflow as tf

from conftest import shared_path
from kerasbert.preprocessing.bert_preprocessor import SPECIAL_TOKENS, BertPreprocessor

UNCASED = list(SPECIAL_TOKENS) + [
    "cafe",
    "muller",
    "##s",
    "mu",
    "##ller",
    "i",
    "❤",
    "paris",
    "hello",
    "world",
    ",",
    "!",
    ".",
    "ａ",
    "##ｂ",
    "##ｃ",
    "##１",
    "##２",
    "##３",
    "abc",
    "a",
    "b",
    "c",
    "我",
    "爱",
    "北",
    "京",
    "天",
    "安",
    "门",
    "et",
    "##e",
    "ο",
    "##δ",
    "##ος",
    "new",
    "york",
]
CASED = list(SPECIAL_TOKENS) + [
    "Café",
    "Müller",
    "M",
    "##ü",
    "##ller",
    "I",
    "❤",
    "Paris",
    "ＡＢＣ",
    "##１２３",
    "我",
    "爱",
    "北",
    "京",
    "天",
    "安",
    "门",
    "été",
    "New",
    "York",
    "a",
    "b",
    "c",
    "abc",
]


def raw_tokens(pre, texts):
    """[(token, text[start:end]), ...] per text, checking ids against tokenize()."""
    ids, starts, ends = pre.tokenize_with_raw_offsets(tf.constant(texts))
    assert ids.dtype == tf.int32 and starts.dtype == tf.int64 and ends.dtype == tf.int64
    assert ids.to_list() == pre.tokenize(tf.constant(texts)).to_list()
    return [
        [(pre.vocabulary[i], text[s:e]) for i, s, e in zip(row_ids, row_s, row_e)]
        for text, row_ids, row_s, row_e in zip(texts, ids.to_list(), starts.to_list(), ends.to_list())
    ]


CASES = [
    # accents: NFD + strip marks changes byte lengths (uncased); NFC keeps them (cased)
    ("Café Müller", [("cafe", "Café"), ("muller", "Müller")], [("Café", "Café"), ("Müller", "Müller")]),
    # decomposed accent (e + U+0301): the mark belongs to its letter's span
    (
        "Cafe\u0301 Mu\u0308ller",
        [("cafe", "Cafe\u0301"), ("muller", "Mu\u0308ller")],
        [("Café", "Cafe\u0301"), ("Müller", "Mu\u0308ller")],
    ),
    # upper case
    (
        "HELLO, World!",
        [("hello", "HELLO"), (",", ","), ("world", "World"), ("!", "!")],
        [("[UNK]", "HELLO"), ("[UNK]", ","), ("[UNK]", "World"), ("[UNK]", "!")],
    ),
    # full-width letters and digits (BERT does no compatibility folding)
    (
        "ＡＢＣ１２３",
        [("ａ", "Ａ"), ("##ｂ", "Ｂ"), ("##ｃ", "Ｃ"), ("##１", "１"), ("##２", "２"), ("##３", "３")],
        [("ＡＢＣ", "ＡＢＣ"), ("##１２３", "１２３")],
    ),
    # control and format characters are dropped but stay inside the span;
    # an accent after a dropped character still composes with its letter
    ("A\xad\u0308 b", [("a", "A\xad\u0308"), ("b", "b")], [("[UNK]", "A\xad\u0308"), ("b", "b")]),
    ("a\x00b\u200bc", [("abc", "a\x00b\u200bc")], [("abc", "a\x00b\u200bc")]),
    # (dropped characters at a token's edge are outside its span)
    ("\x00a \u200b b\x7f", [("a", "a"), ("b", "b")], [("a", "a"), ("b", "b")]),
    # emoji: variation selector (a mark: stripped uncased, kept cased) and a
    # flag (two regional indicators)
    (
        "I ❤️ 🇫🇷 Paris",
        [("i", "I"), ("❤", "❤️"), ("[UNK]", "🇫🇷"), ("paris", "Paris")],
        [("I", "I"), ("[UNK]", "❤️"), ("[UNK]", "🇫🇷"), ("Paris", "Paris")],
    ),
    # astral-plane characters count as one code point each
    (
        "😀 Paris 𝒳",
        [("[UNK]", "😀"), ("paris", "Paris"), ("[UNK]", "𝒳")],
        [("[UNK]", "😀"), ("Paris", "Paris"), ("[UNK]", "𝒳")],
    ),
    # CJK: one token per character
    ("我爱北京天安门", [(c, c) for c in "我爱北京天安门"], [(c, c) for c in "我爱北京天安门"]),
    # several spaces, tabs, newlines
    (
        "  new \t\t york\n\n paris  ",
        [("new", "new"), ("york", "york"), ("paris", "paris")],
        [("[UNK]", "new"), ("[UNK]", "york"), ("[UNK]", "paris")],
    ),
    # mixed, including Greek final sigma (context-dependent lower-casing)
    (
        "\tÉté ΟΔΟΣ,  北京\u200b❤️ NEW  York.",
        [
            ("et", "Ét"),
            ("##e", "é"),
            ("ο", "Ο"),
            ("##δ", "Δ"),
            ("##ος", "ΟΣ"),
            (",", ","),
            ("北", "北"),
            ("京", "京"),
            ("❤", "❤️"),
            ("new", "NEW"),
            ("york", "York"),
            (".", "."),
        ],
        [
            ("[UNK]", "Été"),
            ("[UNK]", "ΟΔΟΣ"),
            ("[UNK]", ","),
            ("北", "北"),
            ("京", "京"),
            ("[UNK]", "❤️"),
            ("[UNK]", "NEW"),
            ("York", "York"),
            ("[UNK]", "."),
        ],
    ),
    # nothing to tokenize
    ("", [], []),
    (" \t\n ", [], []),
    ("\x00\u200b\u0301", [], [("[UNK]", "\u0301")]),
]


@pytest.mark.parametrize("lowercase", [True, False], ids=["uncased", "cased"])
def test_offsets_are_exact_on_raw_text(lowercase):
    pre = BertPreprocessor(UNCASED if lowercase else CASED, lowercase=lowercase)
    texts = [text for text, _, _ in CASES]
    got = raw_tokens(pre, texts)
    for (text, uncased, cased), tokens in zip(CASES, got):
        assert tokens == (uncased if lowercase else cased), repr(text)


def test_scalar_input_and_dense_masks():
    pre = BertPreprocessor(UNCASED)
    ids, starts, ends = pre.tokenize_with_raw_offsets(tf.constant("Mü ller"))
    assert [pre.vocabulary[i] for i in ids.numpy()] == ["mu", "[UNK]"]
    assert starts.numpy().tolist() == [0, 3] and ends.numpy().tolist() == [2, 7]
    ids = pre.tokenize(tf.constant(["Müllers café", "ab"]))
    assert [pre.vocabulary[i] for i in ids[0].numpy()] == ["muller", "##s", "cafe"]
    cont = pre.is_continuation(ids).to_list()
    assert cont[0] == [False, True, False]
    assert pre.word_start_mask(ids).to_list()[0] == [True, False, True]
    dense = tf.constant([[pre.vocabulary.index("##ller"), pre.vocabulary.index("cafe")]])
    assert pre.is_continuation(dense).numpy().tolist() == [[True, False]]
    assert pre.word_start_mask(dense).numpy().tolist() == [[False, True]]


def test_in_a_graph_and_on_an_empty_batch():
    pre = BertPreprocessor(UNCASED)
    fn = tf.function(pre.tokenize_with_raw_offsets, input_signature=[tf.TensorSpec([None], tf.string)])
    ids, starts, ends = fn(tf.constant([], tf.string))
    assert ids.nrows() == 0 and starts.shape[0] == 0
    ids, starts, ends = fn(tf.constant(["", "Café"]))
    assert ids.to_list() == [[], [pre.vocabulary.index("cafe")]]
    assert starts.to_list() == [[], [0]] and ends.to_list() == [[], [4]]


# Characters normalisation changes (case, accents, combining marks, control,
# format, full-width, Greek sigma, emoji + variation selector), separators and
# plain letters.
ALPHABET = list("aAbBzZéÉüÜñçøß") + [
    "e\u0301",
    "\u0301",
    "\u0308",
    "\u0323",
    "\x00",
    "\x07",
    "\x7f",
    "\u200b",
    "\u00ad",
    "\ufeff",
    "Ｈ",
    "ｅ",
    "１",
    "，",
    "Σ",
    "σ",
    "Ο",
    "ς",
    "ΐ",
    "İ",
    "ǅ",
    "ﬁ",
    "❤",
    "\ufe0f",
    "😀",
    "🇫",
    "🇷",
    "我",
    "北",
    "京",
    "の",
    "한",
    "ą",
    "Ω",
    "\u2126",
    "Å",
    "\u212b",
    " ",
    "  ",
    "\t",
    "\n",
    ",",
    ".",
    "!",
    "'",
    "-",
    "(",
    "$",
]


@pytest.mark.parametrize("lowercase", [True, False], ids=["uncased", "cased"])
def test_random_text_spans_cover_their_tokens(lowercase):
    """On random mixes of the characters above: the ids equal tokenize()'s,
    spans are ordered, non-empty and inside the text, and each run of known
    tokens that share raw characters is what normalising its raw span
    gives (a Hangul syllable is three jamo tokens uncased)."""
    rng = random.Random(7)
    texts = ["".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 30))) for _ in range(1000)]
    # A vocabulary that knows every single character (so few [UNK]s).
    chars = sorted({c for t in texts for c in t})
    probe = BertPreprocessor(list(SPECIAL_TOKENS) + ["a"], lowercase=lowercase)
    normal = {c.decode() for c in probe.normalize(tf.constant(chars)).numpy().tolist()}
    pieces = sorted({p for n in normal for p in n if not p.isspace()})
    pre = BertPreprocessor(list(SPECIAL_TOKENS) + pieces + ["##" + p for p in pieces], lowercase=lowercase)
    ids, starts, ends = pre.tokenize_with_raw_offsets(tf.constant(texts))
    assert ids.to_list() == pre.tokenize(tf.constant(texts)).to_list()
    runs = []  # [start, end, tokens joined, any unknown]: tokens that share raw characters
    for text, row_ids, row_s, row_e in zip(texts, ids.to_list(), starts.to_list(), ends.to_list()):
        run_end = 0
        for i, s, e in zip(row_ids, row_s, row_e):
            assert 0 <= s < e <= len(text), repr(text)
            piece = pre.vocabulary[i].removeprefix("##")
            if s < run_end:  # same raw character as the previous token
                runs[-1][1] = max(runs[-1][1], e)
                runs[-1][2] += piece
                runs[-1][3] |= i == pre.unk_id
            else:
                runs.append([s, e, piece, i == pre.unk_id, text])
            run_end = max(run_end, e)
    spans = [(text[s:e], tokens) for s, e, tokens, unknown, text in runs if not unknown]
    normalised = pre.normalize(tf.constant([s for s, _ in spans])).numpy().tolist()

    def canonical(text):  # out of context: Greek final sigma; no whitespace
        return "".join(text.replace("ς", "σ").split())

    assert [canonical(n.decode()) for n in normalised] == [canonical(t) for _, t in spans]
    assert len(spans) > 1000


def conll_sentences(path):
    """CoNLL-2003 sentences, words joined by single spaces."""
    sentences, words = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("-DOCSTART-"):
            if words:
                sentences.append(" ".join(words))
            words = []
        else:
            words.append(line.split()[0])
    if words:
        sentences.append(" ".join(words))
    return sentences


def resume_sentences(path):
    """Chinese Resume sentences, characters joined with ""."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return ["".join(line.split("\t")[0].split(" ")) for line in lines if line.strip()]


def sst2_sentences(path):
    return [line.split("\t")[0] for line in path.read_text(encoding="utf-8").splitlines()[1:]]


SST2_DEV = ("data", "glue_sst2", "dev.tsv")
CONLL_TESTA = ("data", "conll2003", "eng.testa")
RESUME_DEV = ("data", "chinese_ner_resume", "dev.char.bmes")
# name: (file, reader, vocabulary, lowercase, lines)
REAL_DATA = {
    "sst2_dev": (SST2_DEV, sst2_sentences, "bert-base-uncased", True, 872),
    "conll_testa": (CONLL_TESTA, conll_sentences, "bert-base-uncased", True, 3250),
    "conll_testa_cased": (CONLL_TESTA, conll_sentences, "bert-base-uncased", False, 3250),
    "resume_dev": (RESUME_DEV, resume_sentences, "bert-base-chinese", True, 463),
}


@pytest.mark.parametrize("name", sorted(REAL_DATA))
def test_same_ids_as_tokenize_on_real_data(name):
    """Zero mismatches on every line (measured: SST-2 dev 0/872, CoNLL
    eng.testa 0/3250 uncased and cased, Resume dev 0/463; SST-2 train 0/67349
    outside the suite)."""
    parts, read, vocab, lowercase, count = REAL_DATA[name]
    texts = read(shared_path(*parts))
    assert len(texts) == count
    pre = BertPreprocessor(shared_path("data", "vocab", vocab, "vocab.txt"), lowercase=lowercase)
    x = tf.constant(texts)
    ids, starts, ends = pre.tokenize_with_raw_offsets(x)
    reference = pre.tokenize(x).to_list()
    mismatches = [t for t, a, b in zip(texts, ids.to_list(), reference) if a != b]
    assert mismatches == []
    # Each token's raw span normalises to the token (known tokens).
    flat_ids = ids.flat_values.numpy()
    rows = ids.value_rowids().numpy()
    spans = [texts[r][s:e] for r, s, e in zip(rows, starts.flat_values.numpy(), ends.flat_values.numpy())]
    known = flat_ids != pre.unk_id
    normalised = pre.normalize(tf.constant(spans)).numpy()[known]
    vocabulary = np.array(pre.vocabulary, dtype=object)
    expected = [t.removeprefix("##").encode() for t in vocabulary[flat_ids[known]]]
    assert normalised.tolist() == expected


def test_known_difference_conjoining_hangul_jamo_cased():
    """The one documented difference from tokenize(): cased NFC composes
    conjoining jamo (not combining marks) across units. Offsets stay valid."""
    jamo = "\u1112\u1161\u11ab"  # composes to 한 under NFC
    pre = BertPreprocessor(list(SPECIAL_TOKENS) + ["한", "\u1112", "##\u1161", "##\u11ab"], lowercase=False)
    ids, starts, ends = pre.tokenize_with_raw_offsets(tf.constant([jamo, "한"]))
    assert [pre.vocabulary[i] for i in pre.tokenize(tf.constant([jamo]))[0].numpy()] == ["한"]
    assert [pre.vocabulary[i] for i in ids[0].numpy()] == ["\u1112", "##\u1161", "##\u11ab"]
    assert starts.to_list() == [[0, 1, 2], [0]] and ends.to_list() == [[1, 2, 3], [1]]
