"""Tagged-data readers (CoNLL-2003, Resume, Weibo, small malformed files),
tag-scheme conversion to IOB2 and entity extraction."""

import random

import numpy as np
import pytest

from conftest import shared_path
from kerasbert.data import tagging
from kerasbert.data.tagging import TaggedDataError, read_tagged


def seqeval_entities(tags):
    """seqeval's conlleval reading of one sentence (M- read as I-), end exclusive."""
    from seqeval.metrics.sequence_labeling import get_entities

    tags = ["I" + t[1:] if t.startswith("M-") else t for t in tags]
    return sorted((kind, start, end + 1) for kind, start, end in get_entities(tags))


def raw_tags(path, column=-1, layout="columns"):
    """Tag sequences of a file exactly as written (the test's own reader)."""
    sentences, current = [], []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if layout == "lines":
            if line.strip():
                sentences.append(line.split("\t")[1].split())
            continue
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if current:
                sentences.append(current)
            current = []
        else:
            current.append(fields[column])
    if current:
        sentences.append(current)
    return sentences


def is_valid_iob2(tags):
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            return False
        prev = tag
    return True


# ---------------------------------------------------------------------------
# Real files
# ---------------------------------------------------------------------------
def test_conll2003_iob1_read_and_converted():
    pytest.importorskip("seqeval")
    path = shared_path("data", "conll2003", "eng.train")
    corpus = read_tagged(path)
    assert (corpus.format, corpus.scheme) == ("conll", "iob1")
    assert len(corpus) == 14041
    assert sum(len(s.entities()) for s in corpus) == 23499
    assert corpus.entity_types() == ["LOC", "MISC", "ORG", "PER"]
    assert all("-DOCSTART-" not in s.words for s in corpus)
    first = corpus[0]
    assert first.line == 3 and first.words[:3] == ("EU", "rejects", "German")
    assert first.tags[:3] == ("B-ORG", "O", "B-MISC")
    assert first.text == "EU rejects German call to boycott British lamb ."
    # Every sentence: valid IOB2, the same entities as conlleval's reading of the IOB1 tags.
    raw = raw_tags(path)
    assert len(raw) == len(corpus)
    for original, sentence in zip(raw, corpus):
        assert is_valid_iob2(sentence.tags)
        assert sorted(sentence.entities()) == seqeval_entities(original)
    # The adjacent-entity B- cases (line 1945-1947: "Golan Heights" I-LOC I-LOC, "Israel" B-LOC).
    golan = next(s for s in corpus if s.line <= 1945 < s.line + len(s.words))
    i = 1945 - golan.line
    assert golan.words[i : i + 3] == ("Golan", "Heights", "Israel")
    assert golan.tags[i : i + 3] == ("B-LOC", "I-LOC", "B-LOC")
    assert ("LOC", i, i + 2) in golan.entities() and ("LOC", i + 2, i + 3) in golan.entities()
    b_cases = sum(t.startswith("B-") for tags in raw for t in tags)
    assert b_cases == 11 + 35 + 24  # B-LOC, B-MISC, B-ORG in eng.train


def test_conll2003_dev_detected_and_spans():
    path = shared_path("data", "conll2003", "eng.testa")
    corpus = read_tagged(path, fmt="auto", scheme="auto")
    assert (corpus.format, corpus.scheme, len(corpus)) == ("conll", "iob1", 3250)
    assert sum(len(s.entities()) for s in corpus) == 5942
    for sentence in corpus[:500]:
        text, spans = tagging.sentence_text(sentence.words, sentence.joiner)
        assert text == sentence.text
        assert [text[a:b] for a, b in spans] == list(sentence.words)


def test_resume_sentence_per_line_bmes():
    pytest.importorskip("seqeval")
    path = shared_path("data", "chinese_ner_resume", "dev.char.bmes")
    corpus = read_tagged(path)
    assert (corpus.format, corpus.scheme, len(corpus)) == ("bmes", "bioes", 463)
    assert corpus.entity_types() == ["CONT", "EDU", "LOC", "NAME", "ORG", "PRO", "RACE", "TITLE"]
    first = corpus[0]
    assert first.line == 1 and first.joiner == ""
    assert first.text.startswith("吴重阳，中国国籍") and len(first.text) == len(first.words)
    assert first.tags[:5] == ("B-NAME", "I-NAME", "I-NAME", "O", "B-CONT")
    raw = raw_tags(path, layout="lines")
    for original, sentence in zip(raw, corpus):
        assert len(original) == len(sentence.words)
        assert is_valid_iob2(sentence.tags)
        assert sorted(sentence.entities()) == seqeval_entities(original)
    # The sentence with a Latin run: characters stay words, joined with "".
    train = read_tagged(shared_path("data", "chinese_ner_resume", "train.char.bmes"), fmt="bmes")
    assert len(train) == 3821
    assert any("（PMIMember）" in s.text for s in train)


def test_weibo_char_per_line_bmes():
    pytest.importorskip("seqeval")
    path = shared_path("data", "chinese_ner_weibo", "dev.all.bmes")
    corpus = read_tagged(path)
    assert (corpus.format, corpus.scheme, len(corpus)) == ("bmes", "bioes", 270)
    assert corpus.entity_types() == [
        "GPE.NAM",
        "GPE.NOM",
        "LOC.NAM",
        "LOC.NOM",
        "ORG.NAM",
        "ORG.NOM",
        "PER.NAM",
        "PER.NOM",
    ]
    assert corpus[0].text == "口腔溃疡加上这玩意～酸酸甜甜好滋味。"
    raw = raw_tags(path)
    assert [len(t) for t in raw] == [len(s.words) for s in corpus]
    for original, sentence in zip(raw, corpus):
        assert is_valid_iob2(sentence.tags)
        assert sorted(sentence.entities()) == seqeval_entities(original)
    # Line numbers: sentence k starts after k blank lines.
    lines = open(path, encoding="utf-8").read().split("\n")
    for sentence in corpus[:50]:
        assert lines[sentence.line - 1].split()[0] == sentence.words[0]


# ---------------------------------------------------------------------------
# Scheme conversion and entities
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "tags, iob2",
    [
        (["I-PER", "I-PER", "B-PER", "O", "I-LOC"], ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]),  # IOB1
        (["B-PER", "I-PER", "I-LOC", "O"], ["B-PER", "I-PER", "B-LOC", "O"]),  # type change starts
        (["S-PER", "B-LOC", "M-LOC", "E-LOC", "O"], ["B-PER", "B-LOC", "I-LOC", "I-LOC", "O"]),  # BMES
        (["B-ORG", "I-ORG", "E-ORG", "S-ORG"], ["B-ORG", "I-ORG", "I-ORG", "B-ORG"]),  # BIOES
        (["E-ORG", "I-ORG", "O"], ["B-ORG", "B-ORG", "O"]),  # entity ends after E-
        (["O", "M-X", "E-X"], ["O", "B-X", "I-X"]),
    ],
)
def test_to_iob2(tags, iob2):
    assert tagging.to_iob2(tags) == iob2
    assert tagging.to_iob2(iob2) == iob2


def test_detect_scheme():
    assert tagging.detect_scheme([["B-A", "I-A", "O"], ["O"]]) == "iob2"
    assert tagging.detect_scheme([["O", "I-A", "I-A"]]) == "iob1"
    assert tagging.detect_scheme([["I-A"]]) == "iob1"
    assert tagging.detect_scheme([["B-A", "I-B"]]) == "iob1"
    assert tagging.detect_scheme([["B-A", "E-A"], ["O"]]) == "bioes"
    assert tagging.detect_scheme([["S-A"]]) == "bioes"
    assert tagging.detect_scheme([["O", "O"]]) == "iob2"


def test_entities_round_trip_and_seqeval_on_random_tags():
    pytest.importorskip("seqeval")
    rng = random.Random(0)
    choices = ["O", "B-A", "I-A", "M-A", "E-A", "S-A", "B-B", "I-B", "E-B", "S-B"]
    for _ in range(3000):
        tags = [rng.choice(choices) for _ in range(rng.randint(0, 9))]
        iob2 = tagging.to_iob2(tags)
        entities = tagging.iob2_entities(tags)
        assert sorted(entities) == seqeval_entities(tags)
        assert tagging.iob2_entities(iob2) == entities
        assert tagging.entities_to_iob2(entities, len(tags)) == iob2


def test_tag_names_and_inside_ids():
    assert tagging.tag_names(["PER", "LOC"]) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert tagging.inside_ids(5).tolist() == [0, 2, 2, 4, 4]
    assert tagging.split_tag("B-GPE.NAM") == ("B", "GPE.NAM")
    assert tagging.split_tag("I-A-B") == ("I", "A-B")
    for bad in ("X-PER", "B-", "PER", "b-PER", ""):
        with pytest.raises(ValueError):
            tagging.split_tag(bad)


def test_sentence_text():
    text, spans = tagging.sentence_text(["U.S.", "", "é", "Paris"], " ")
    assert text == "U.S.  é Paris"
    assert spans.tolist() == [[0, 4], [5, 5], [6, 7], [8, 13]]
    text, spans = tagging.sentence_text(list("读MBA"), "")
    assert text == "读MBA" and spans.tolist() == [[0, 1], [1, 2], [2, 3], [3, 4]]
    text, spans = tagging.sentence_text([], " ")
    assert text == "" and spans.shape == (0, 2) and spans.dtype == np.int64


# ---------------------------------------------------------------------------
# Small files: layouts, and malformed ones naming their line
# ---------------------------------------------------------------------------
def write(tmp_path, text, name="data.txt", raw=None):
    path = tmp_path / name
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_small_layouts(tmp_path):
    conll = write(
        tmp_path, "-DOCSTART- -X- O O\n\nJohn NNP I-NP I-PER\nlives VBZ I-VP O\n\n\nin IN I-PP O\nRome NNP I-NP I-LOC\n"
    )
    corpus = read_tagged(conll)
    assert corpus.format == "conll" and corpus.scheme == "iob1"
    assert [(s.words, s.tags, s.line) for s in corpus] == [
        (("John", "lives"), ("B-PER", "O"), 3),
        (("in", "Rome"), ("O", "B-LOC"), 7),
    ]
    two_columns_tab = write(tmp_path, "EU\tB-ORG\nrejects\tO\n\nPeter\tB-PER\nBlackburn\tI-PER\n", "bio.tsv")
    corpus = read_tagged(two_columns_tab)
    assert corpus.format == "conll" and corpus.scheme == "iob2"
    assert corpus[1].text == "Peter Blackburn" and corpus[1].entities() == [("PER", 0, 2)]
    bioes = write(tmp_path, "New B-LOC\nYork E-LOC\nis O\nbig S-MISC\n", "bioes.txt")
    corpus = read_tagged(bioes, fmt="conll")
    assert corpus.scheme == "bioes" and corpus[0].tags == ("B-LOC", "I-LOC", "O", "B-MISC")
    weibo = write(tmp_path, "张 B-PER.NAM\n三 E-PER.NAM\n好 O\n\n\n北 S-GPE.NAM\n", "w.bmes")
    corpus = read_tagged(weibo)
    assert corpus.format == "bmes" and [s.text for s in corpus] == ["张三好", "北"]
    assert [s.line for s in corpus] == [1, 6]
    resume = write(tmp_path, "张 三 读 M B A\tB-NAME E-NAME O B-EDU M-EDU E-EDU\n\n高 勇\tB-NAME E-NAME\n", "r.bmes")
    corpus = read_tagged(resume)
    assert corpus.format == "bmes" and corpus.scheme == "bioes"
    assert corpus[0].text == "张三读MBA" and corpus[0].entities() == [("NAME", 0, 2), ("EDU", 3, 6)]
    assert corpus[1].line == 3
    crlf_bom = write(tmp_path, None, "crlf.txt", raw="\ufeffJohn I-PER\r\nsmiles O\r\n".encode("utf-8"))
    corpus = read_tagged(crlf_bom)
    assert corpus[0].words == ("John", "smiles") and corpus[0].tags == ("B-PER", "O")
    assert read_tagged(write(tmp_path, "\n\n", "empty.txt")) == []
    # Slices keep the file's facts.
    sliced = read_tagged(conll)[:1]
    assert isinstance(sliced, tagging.TaggedCorpus) and sliced.scheme == "iob1" and len(sliced) == 1


@pytest.mark.parametrize(
    "content, fmt, scheme, expected",
    [
        ("John NNP I-PER\nlives VBZ O\nin IN\n", "auto", "auto", r":3: expected 3 columns like the first line, got 2"),
        ("John\n", "conll", "auto", r":1: expected 'word \.\.\. tag' \(2 or more columns\), got 1"),
        ("John I-PER\n\nlives X-PER\n", "auto", "auto", r":3: unknown tag 'X-PER'"),
        ("John B-\n", "conll", "auto", r":1: unknown tag 'B-'"),
        ("张 B-PER\n三 E PER\n", "bmes", "auto", r":2: expected 'character tag' \(2 columns\), got 3"),
        ("张 三\tB-PER E-PER\n高 勇 好\tB-PER E-PER\n", "auto", "auto", r":2: 3 characters but 2 tags"),
        (
            "张 三\tB-PER E-PER\n高 勇\tB-PER\tE-PER\n",
            "bmes",
            "auto",
            r":2: expected 'characters<TAB>tags' \(1 tab\), got 2",
        ),
        ("John B-PER\nSmith E-PER\n", "conll", "iob2", r":2: tag 'E-PER' is not IOB2"),
        ("张 三\tB-PER Q-PER\n", "bmes", "auto", r":1: unknown tag 'Q-PER'"),
    ],
)
def test_malformed_files_name_the_line(tmp_path, content, fmt, scheme, expected):
    path = write(tmp_path, content)
    with pytest.raises(TaggedDataError, match=str(path).replace(".", r"\.") + expected):
        read_tagged(path, fmt=fmt, scheme=scheme)


def test_not_utf8_names_the_line(tmp_path):
    path = write(tmp_path, None, raw="John I-PER\n\nJosé I-PER\n".encode("latin-1"))
    with pytest.raises(
        TaggedDataError,
        match=r"data\.txt:3: not UTF-8 \(byte 0xe9 at column 4, 'é' in Latin-1\); kerasbert reads UTF-8 text",
    ):
        read_tagged(path)


def test_bad_arguments_and_missing_file(tmp_path):
    with pytest.raises(TaggedDataError, match="format must be one of auto, conll, bmes"):
        read_tagged(tmp_path / "x", fmt="csv")
    with pytest.raises(TaggedDataError, match="tag scheme must be one of"):
        read_tagged(tmp_path / "x", scheme="bilou")
    with pytest.raises(TaggedDataError, match="cannot read"):
        read_tagged(tmp_path / "missing.txt")
    assert issubclass(TaggedDataError, ValueError)
