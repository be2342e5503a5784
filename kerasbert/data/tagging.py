"""Tagged (NER) data: readers, tag schemes, raw text, entities, WordPiece alignment.

Pure Python + numpy (no TensorFlow), so benchmarks and tools can read the
files without loading a model.

Files, read as they are:

* ``conll``: whitespace-separated columns, the tag in the last one, blank
  lines between sentences, ``-DOCSTART-`` lines between documents
  (CoNLL-2003: 4 columns, IOB1 tags). Words are joined with single spaces.
* ``bmes``: character files. Either one ``char tag`` per line with blank
  lines between sentences (Weibo), or one sentence per line, ``chars<TAB>tags``
  with space-separated characters and tags (Resume); the layout is detected.
  Characters are joined with ``""``.

Every tag scheme is converted to one internal scheme, IOB2 over entity types
(``O``, ``B-T``, ``I-T``), by the conlleval/seqeval reading of the input:
IOB1 (``I-`` everywhere, ``B-`` only between adjacent entities of one type),
IOB2/BIO, and BIOES/BMES (``M-`` and ``I-`` both mean inside, ``S-`` is a
single-word entity, an entity ends after ``E-``/``S-``). An ``I-T`` that
follows ``O`` or another type starts an entity, as in conlleval. The
conversion keeps every entity (span and type) exactly.

The raw text of a sentence is what gets tokenized, in training exactly as in
serving; ``sentence_text`` gives it and each word's code-point span.

Alignment of word tags to WordPieces (``align_labels``), recovery of word tags
from token tags (``word_tags_from_tokens``) and the split of long sentences
into windows (``window_ranges``) work on plain numpy arrays of token
code-point offsets, so they do not depend on how the tokens were made.

Example:

    >>> sentences = read_tagged("eng.train")                    # doctest: +SKIP
    >>> s = sentences[1]; s.words[:3], s.tags[:3]               # doctest: +SKIP
    (('EU', 'rejects', 'German'), ('B-ORG', 'O', 'B-MISC'))
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from kerasbert.data.encoding import not_utf8_message

FORMATS = ("auto", "conll", "bmes")
SCHEMES = ("auto", "iob1", "iob2", "bioes")
# Input tag prefixes (IOB1, IOB2, BIOES/BMES).
PREFIXES = ("B", "I", "M", "E", "S")
DOCSTART = "-DOCSTART-"
IGNORE_LABEL = -1  # label of tokens left out of loss and metrics


class TaggedDataError(ValueError):
    """A malformed tagged file; the message starts with ``path:line``."""


# ---------------------------------------------------------------------------
# Sentences
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TaggedSentence:
    """One sentence: words, their IOB2 tags, where it is in its file.

    Attributes:
        words: the words (characters for character files).
        tags: IOB2 tags, one per word.
        line: 1-based line number of the sentence's first word.
        joiner: what joins the words into the raw text (" " or "").
    """

    words: tuple
    tags: tuple
    line: int = 0
    joiner: str = " "

    @property
    def text(self) -> str:
        return self.joiner.join(self.words)

    @property
    def spans(self) -> np.ndarray:
        """int64 ``[words, 2]``: each word's ``[start, end)`` in ``text``."""
        return sentence_text(self.words, self.joiner)[1]

    def entities(self) -> list[tuple[str, int, int]]:
        """``(type, first_word, last_word + 1)`` of each entity."""
        return iob2_entities(self.tags)


class TaggedCorpus(list):
    """A list of `TaggedSentence` that remembers its file, format and scheme
    (slices keep them)."""

    def __init__(self, sentences=(), *, path="", format="", scheme=""):
        super().__init__(sentences)
        self.path = path
        self.format = format
        self.scheme = scheme

    def __getitem__(self, index):
        item = super().__getitem__(index)
        if isinstance(index, slice):
            return TaggedCorpus(item, path=self.path, format=self.format, scheme=self.scheme)
        return item

    def entity_types(self) -> list[str]:
        """Sorted entity types present in the corpus."""
        return sorted({t[2:] for s in self for t in s.tags if t != "O"})


def sentence_text(words, joiner=" "):
    """The raw text of `words` and each word's code-point span.

    Returns:
        ``(text, spans)`` with spans int64 ``[len(words), 2]`` such that
        ``text[start:end] == word``.
    """
    lengths = np.array([len(w) for w in words], dtype=np.int64)
    ends = np.cumsum(lengths + len(joiner)) - len(joiner)
    spans = np.stack([ends - lengths, ends], axis=1).reshape(-1, 2)
    return joiner.join(words), spans


# ---------------------------------------------------------------------------
# Tags and schemes
# ---------------------------------------------------------------------------
def split_tag(tag):
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", "")``.

    Raises:
        ValueError: not ``O`` nor ``P-TYPE`` with P one of B, I, M, E, S.
    """
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if not sep or prefix not in PREFIXES or not kind:
        raise ValueError(f"unknown tag {tag!r} (expected O or B-/I-/M-/E-/S- and a type)")
    return prefix, kind


def detect_scheme(tag_sequences) -> str:
    """``"bioes"`` if any ``M-``/``E-``/``S-`` tag occurs; else ``"iob1"`` if
    some entity starts with ``I-`` (after ``O``, another type, or at a
    sentence start), else ``"iob2"``."""
    iob1 = False
    for tags in tag_sequences:
        prev = "O"
        for tag in tags:
            prefix, kind = split_tag(tag)
            if prefix in ("M", "E", "S"):
                return "bioes"
            if prefix == "I" and (prev == "O" or split_tag(prev)[1] != kind):
                iob1 = True
            prev = tag
    return "iob1" if iob1 else "iob2"


def to_iob2(tags) -> list[str]:
    """Tags of any supported scheme as IOB2 (the conlleval reading).

    One rule covers all schemes: a tag starts an entity unless it is an
    inside tag (``I-``, ``M-``, ``E-``) continuing an open entity of its type;
    ``E-`` and ``S-`` close the entity.
    """
    out = []
    open_kind = None
    for tag in tags:
        prefix, kind = split_tag(tag)
        if prefix == "O":
            out.append("O")
            open_kind = None
            continue
        inside = prefix in ("I", "M", "E") and open_kind == kind
        out.append(("I-" if inside else "B-") + kind)
        open_kind = None if prefix in ("E", "S") else kind
    return out


def tag_names(entity_types) -> list[str]:
    """The tag list of the model: ``["O", "B-T1", "I-T1", "B-T2", ...]``,
    types sorted."""
    names = ["O"]
    for kind in sorted(entity_types):
        names += [f"B-{kind}", f"I-{kind}"]
    return names


def inside_ids(num_tags) -> np.ndarray:
    """``inside[tag_id]``: the id of the same type's ``I-`` tag (O stays O)."""
    ids = np.arange(num_tags)
    return np.where(ids % 2 == 1, ids + 1, ids)


def iob2_entities(tags) -> list[tuple[str, int, int]]:
    """Entities of an IOB2 sequence as ``(type, start, end)`` (end exclusive).

    An ``I-T`` after ``O`` or another type starts an entity (conlleval).
    Accepts any supported scheme too: it reads the tags through `to_iob2`'s
    rule.
    """
    entities = []
    start, open_kind = None, None
    for i, tag in enumerate(to_iob2(tags)):
        if tag == "O" or tag[0] == "B":
            if open_kind is not None:
                entities.append((open_kind, start, i))
            start, open_kind = (None, None) if tag == "O" else (i, tag[2:])
    if open_kind is not None:
        entities.append((open_kind, start, len(tags)))
    return entities


def entities_to_iob2(entities, length) -> list[str]:
    """The IOB2 tags of non-overlapping ``(type, start, end)`` entities."""
    tags = ["O"] * length
    for kind, start, end in entities:
        tags[start] = f"B-{kind}"
        for i in range(start + 1, end):
            tags[i] = f"I-{kind}"
    return tags


# ---------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------
def _lines(path):
    """``(line_number, text)`` of a UTF-8 file (a BOM and CR/LF removed).

    Raises:
        TaggedDataError: missing file or a line that is not UTF-8.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise TaggedDataError(f"{path}: cannot read: {e.strerror or e}") from e
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise TaggedDataError(not_utf8_message(path, number, line, e.start)) from None
        lines.append((number, text.rstrip("\r")))
    if lines and lines[-1][1] == "":
        lines.pop()
    return lines


def _is_sentence_per_line(lines) -> bool:
    """Resume layout: the first line is ``chars<TAB>tags`` (one tab; several
    characters or tags, so a two-column ``word<TAB>tag`` file is not)."""
    for _, text in lines:
        if not text.strip():
            continue
        parts = text.split("\t")
        return len(parts) == 2 and (len(parts[1].split()) > 1 or len(parts[0].split()) > 1)
    return False


def _detect_format(lines) -> str:
    """Returns "bmes" for the Resume layout or when the first 200 words are all one
    character long, else "conll"."""
    if _is_sentence_per_line(lines):
        return "bmes"
    seen = 0
    for _, text in lines:
        fields = text.split()
        if not fields:
            continue
        if fields[0] == DOCSTART or len(fields[0]) != 1:
            return "conll"
        seen += 1
        if seen >= 200:
            break
    return "bmes" if seen else "conll"


def _read_columns(path, lines, fmt):
    """CoNLL columns (and Weibo's char-per-line): ``[(words, tags, line)]``."""
    sentences, words, tags, first = [], [], [], 0
    columns = None

    def flush():
        nonlocal words, tags
        if words:
            sentences.append((words, tags, first))
        words, tags = [], []

    for number, text in lines:
        fields = text.split()
        if not fields:
            flush()
            continue
        if fields[0] == DOCSTART:
            flush()
            continue
        if fmt == "bmes":
            if len(fields) != 2:
                raise TaggedDataError(
                    f"{path}:{number}: expected 'character tag' (2 columns), got {len(fields)}: {text!r}"
                )
        elif columns is None:
            if len(fields) < 2:
                raise TaggedDataError(f"{path}:{number}: expected 'word ... tag' (2 or more columns), got 1: {text!r}")
            columns = len(fields)
        elif len(fields) != columns:
            raise TaggedDataError(
                f"{path}:{number}: expected {columns} columns like the first line, got {len(fields)}: {text!r}"
            )
        if not words:
            first = number
        words.append(fields[0])
        tags.append(fields[-1])
    flush()
    return sentences


def _read_sentence_lines(path, lines):
    """Resume's ``chars<TAB>tags`` lines: ``[(chars, tags, line)]``."""
    sentences = []
    for number, text in lines:
        if not text.strip():
            continue
        parts = text.split("\t")
        if len(parts) != 2:
            raise TaggedDataError(f"{path}:{number}: expected 'characters<TAB>tags' (1 tab), got {len(parts) - 1} tabs")
        chars, tags = parts[0].split(), parts[1].split()
        if len(chars) != len(tags):
            raise TaggedDataError(f"{path}:{number}: {len(chars)} characters but {len(tags)} tags")
        if chars:
            sentences.append((chars, tags, number))
    return sentences


def read_tagged(path, fmt="auto", scheme="auto") -> TaggedCorpus:
    """Reads a tagged file as sentences with IOB2 tags.

    Args:
        path: the file.
        fmt: "conll", "bmes" or "auto" (sentence-per-line ``chars<TAB>tags``
            or one-character words -> "bmes", else "conll").
        scheme: the file's tag scheme: "iob1", "iob2", "bioes" (also BMES)
            or "auto" (see `detect_scheme`). All convert to IOB2 the same
            way; a declared "iob1"/"iob2" file with ``M-``/``E-``/``S-`` tags
            is an error.

    Returns:
        A `TaggedCorpus` (list of `TaggedSentence`) with ``format`` and the
        (detected) ``scheme``.

    Raises:
        TaggedDataError: ``path:line: ...`` for a malformed line (column
            count, unknown tag, characters/tags count, not UTF-8), or a bad
            `fmt`/`scheme`.
    """
    if fmt not in FORMATS:
        raise TaggedDataError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if scheme not in SCHEMES:
        raise TaggedDataError(f"tag scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    path = os.fspath(path)
    lines = _lines(path)
    if fmt == "auto":
        fmt = _detect_format(lines)
    per_line = fmt == "bmes" and _is_sentence_per_line(lines)
    raw = _read_sentence_lines(path, lines) if per_line else _read_columns(path, lines, fmt)
    # Every tag checked, naming its line.
    for _, tags, first in raw:
        for i, tag in enumerate(tags):
            line = first if per_line else first + i
            try:
                prefix, _ = split_tag(tag)
            except ValueError as e:
                raise TaggedDataError(f"{path}:{line}: {e}") from None
            if scheme in ("iob1", "iob2") and prefix in ("M", "E", "S"):
                raise TaggedDataError(
                    f"{path}:{line}: tag {tag!r} is not {scheme.upper()} (use tag scheme bioes or auto)"
                )
    found = scheme if scheme != "auto" else detect_scheme(tags for _, tags, _ in raw)
    joiner = "" if fmt == "bmes" else " "
    sentences = [TaggedSentence(tuple(w), tuple(to_iob2(t)), first, joiner) for w, t, first in raw]
    return TaggedCorpus(sentences, path=path, format=fmt, scheme=found)


# ---------------------------------------------------------------------------
# WordPiece alignment (pure numpy over code-point offsets)
# ---------------------------------------------------------------------------
def _containing(starts, ends, positions):
    """For each position, the index of the ``[start, end)`` range holding it
    (ranges sorted and disjoint), or -1."""
    starts = np.asarray(starts, np.int64)
    ends = np.asarray(ends, np.int64)
    positions = np.asarray(positions, np.int64)
    index = np.searchsorted(starts, positions, side="right") - 1
    ok = index >= 0
    ok[ok] &= positions[ok] < ends[index[ok]]
    return np.where(ok, index, -1)


def align_labels(
    token_starts,
    token_ends,
    is_continuation,
    word_spans,
    word_tag_ids,
    label_all_subtokens=False,
) -> np.ndarray:
    """Training labels of one sentence's WordPieces.

    A token that starts a BERT word (not a ``##`` continuation) gets the tag
    of the dataset word holding its first character: the word's own tag if
    the token starts where the word starts, else (the word was split into
    several BERT words, "U.S." -> u . s .) the ``I-`` tag of the word's type
    (O stays O). Continuation tokens get `IGNORE_LABEL` (-1), or with
    `label_all_subtokens` the same rule as other tokens. A token in no word
    gets -1.

    Args:
        token_starts, token_ends: code-point offsets of the tokens in the raw
            text, ``[tokens]``.
        is_continuation: bool ``[tokens]``, True for ``##`` pieces.
        word_spans: int ``[words, 2]`` code-point spans of the words.
        word_tag_ids: int ``[words]`` ids into `tag_names` (O = 0,
            B-T = 2k+1, I-T = 2k+2).

    Returns:
        int32 ``[tokens]``.
    """
    token_starts = np.asarray(token_starts, np.int64)
    word_spans = np.asarray(word_spans, np.int64).reshape(-1, 2)
    word_tag_ids = np.asarray(word_tag_ids, np.int64)
    word = _containing(word_spans[:, 0], word_spans[:, 1], token_starts)
    safe = np.maximum(word, 0)
    tag = word_tag_ids[safe] if len(word_tag_ids) else np.zeros_like(safe)
    at_start = token_starts == word_spans[safe, 0] if len(word_spans) else np.zeros_like(safe, bool)
    tag = np.where(at_start, tag, np.where(tag % 2 == 1, tag + 1, tag))
    labels = np.where(word >= 0, tag, IGNORE_LABEL)
    if not label_all_subtokens:
        labels = np.where(np.asarray(is_continuation, bool), IGNORE_LABEL, labels)
    return labels.astype(np.int32)


def propagate_continuations(token_tag_ids, is_continuation) -> np.ndarray:
    """Token tags where each ``##`` piece takes the ``I-`` form of the tag
    of the token before it (so of its BERT word's first piece): the
    first-sub-token reading of a prediction."""
    tags = np.array(token_tag_ids, np.int64, copy=True)
    cont = np.asarray(is_continuation, bool)
    for i in np.flatnonzero(cont):
        if i > 0:
            prev = tags[i - 1]
            tags[i] = prev + 1 if prev % 2 == 1 else prev
    return tags


def word_tags_from_tokens(token_starts, token_ends, token_tag_ids, word_spans, is_continuation=None) -> np.ndarray:
    """Word tags from token tags (word-level prediction).

    Each word takes the tag of the token holding its first character; a
    word that starts inside a token (a Latin run "MBA" in a character file
    is one token but three words) takes the ``I-`` form of that token's tag
    (O stays O). A word whose first character is in no token (whitespace, a
    dropped control character) is O. With `is_continuation`, ``##`` pieces
    first take their BERT word's first piece's tag (`propagate_continuations`).

    Returns:
        int64 ``[words]`` tag ids.
    """
    token_tag_ids = np.asarray(token_tag_ids, np.int64)
    if is_continuation is not None:
        token_tag_ids = propagate_continuations(token_tag_ids, is_continuation)
    token_starts = np.asarray(token_starts, np.int64)
    word_spans = np.asarray(word_spans, np.int64).reshape(-1, 2)
    token = _containing(token_starts, token_ends, word_spans[:, 0])
    safe = np.maximum(token, 0)
    tag = token_tag_ids[safe] if len(token_tag_ids) else np.zeros_like(safe)
    at_start = word_spans[:, 0] == token_starts[safe] if len(token_starts) else np.zeros_like(safe, bool)
    tag = np.where(at_start, tag, np.where(tag % 2 == 1, tag + 1, tag))
    return np.where(token >= 0, tag, 0)


def window_ranges(num_tokens, max_tokens) -> list[tuple[int, int]]:
    """Non-overlapping ``[start, end)`` token windows of at most `max_tokens`
    (``sequence_length - 2``, room for ``[CLS]`` and ``[SEP]``) covering
    ``num_tokens``; one empty window for a sentence without tokens."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    if num_tokens <= 0:
        return [(0, 0)]
    return [(s, min(s + max_tokens, num_tokens)) for s in range(0, num_tokens, max_tokens)]


def merge_windows(window_values, window_sentences, num_sentences):
    """Per-sentence concatenation of per-window arrays (in window order).

    Args:
        window_values: a sequence of 1-D arrays, one per window.
        window_sentences: the sentence index of each window (windows of a
            sentence in order).
        num_sentences: how many sentences.

    Returns:
        A list of `num_sentences` 1-D arrays.
    """
    parts = [[] for _ in range(num_sentences)]
    for values, sentence in zip(window_values, window_sentences):
        parts[sentence].append(np.asarray(values))
    return [np.concatenate(p) if p else np.zeros((0,), np.int64) for p in parts]
