"""SQuAD v1.1 JSON for extractive question answering: reading, alignment, windows.

The file is read as it is (``{"version", "data": [{"title", "paragraphs":
[{"context", "qas": [{"id", "question", "answers": [{"text",
"answer_start"}]}]}]}]}``). `answer_start` counts Python characters (Unicode
code points) into `context`, the unit of `BertPreprocessor.tokenize_with_raw_offsets`,
so answers map onto WordPieces through the tokens' raw offsets:

* `align_answer`: the answer's tokens are those whose raw span overlaps
  ``[answer_start, answer_start + len(text))``; then Google's
  `_improve_answer_span` (run_squad.py) narrows them to a sub-run whose ids
  equal the tokenized answer text, when there is one. An answer that
  overlaps no token (whitespace-only, or outside the context) or whose text
  is not what the context has at `answer_start` is *unalignable*: counted
  (`AlignmentReport`) and its windows are dropped from training, as
  run_squad.py skips such questions; dev scoring still uses every question
  with all its gold texts.
* `window_spans`: run_squad.py's sliding windows. The question is cut to
  `max_query_length` tokens; a window holds ``max_seq_length - len(question)
  - 3`` context tokens, window starts step by `doc_stride` (or the window
  size when that is smaller), and the last window ends at the context's end.
  Rows are ``[CLS] question [SEP] window [SEP]`` (segment ids 0 for
  ``[CLS] question [SEP]``, 1 after). A window that does not hold the whole
  answer is labelled at ``[CLS]`` (start = end = 0).
* `max_context_mask`: Google's `_check_is_max_context`: a token seen in
  several windows belongs to the one where ``min(left, right) + 0.01 *
  window_length`` is largest (the first on ties); only there may an answer
  start at it.

Splitting by article: `parse_articles("0-29")` -> indices; `read_squad(path,
articles=...)` keeps those articles (0-based, file order), so one file can
give the training and the dev set.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from kerasbert.data.encoding import NotUTF8Error, read_utf8


class SquadDataError(ValueError):
    """A malformed SQuAD file; the message names the file, article and question id."""


@dataclasses.dataclass(frozen=True)
class SquadExample:
    """One question.

    Attributes:
        id: the question id.
        question, context: raw strings.
        answers: the gold answer texts (all of them, for EM/F1).
        answer_starts: their `answer_start` offsets (code points).
        article: the article's index in the file; title its title.
    """

    id: str
    question: str
    context: str
    answers: tuple
    answer_starts: tuple
    article: int = 0
    title: str = ""


class SquadDataset(list):
    """A list of `SquadExample` with where it came from (`path`, `articles`)."""

    def __init__(self, examples=(), path="", articles=None):
        super().__init__(examples)
        self.path = path
        self.articles = articles


def parse_articles(spec):
    """Article indices from ``"0-29"``, ``"30-37"``, ``"0,3,5-7"`` (0-based,
    inclusive ranges); None or "" for every article.

    Raises:
        ValueError: not such a list.
    """
    if spec is None or str(spec).strip() in ("", "all"):
        return None
    out = []
    for part in str(spec).split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(f"{spec!r} is not a list of article indices such as 0-29 or 0,3,5-7") from None
        if a < 0 or b < a:
            raise ValueError(f"{spec!r}: range {part!r} is empty or negative")
        out.extend(range(a, b + 1))
    return sorted(set(out))


def _need(value, kind, where):
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise SquadDataError(f"{where}: expected {name}, got {type(value).__name__}")
    return value


def read_squad(path, articles=None):
    """Reads a SQuAD v1.1 JSON file.

    Args:
        path: the file.
        articles: indices of the articles to keep (see `parse_articles`);
            None keeps all.

    Returns:
        A `SquadDataset` of `SquadExample`, in file order.

    Raises:
        SquadDataError: not JSON, not SQuAD's layout, a question without an
            id/question/answers, an answer_start outside its context, or an
            article index beyond the file; the message names the article and
            question id.
    """
    path = os.fspath(path)
    try:
        data = json.loads(read_utf8(path))
    except json.JSONDecodeError as e:
        raise SquadDataError(f"{path}: not JSON ({e})") from e
    except NotUTF8Error as e:
        raise SquadDataError(str(e)) from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise SquadDataError(f'{path}: not a SQuAD file (expected {{"version": ..., "data": [articles]}})')
    n = len(data["data"])
    keep = range(n) if articles is None else articles
    beyond = [a for a in keep if a >= n]
    if beyond:
        raise SquadDataError(f"{path}: has {n} articles (0-{n - 1}); article {beyond[0]} asked for")
    examples, seen = [], {}
    for a in keep:
        article = _need(data["data"][a], dict, f"{path}: article {a}")
        title = article.get("title", "")
        where_article = f"{path}: article {a} ({title!r})" if title else f"{path}: article {a}"
        paragraphs = _need(article.get("paragraphs"), list, f"{where_article} paragraphs")
        for p, paragraph in enumerate(paragraphs):
            where_p = f"{where_article} paragraph {p}"
            paragraph = _need(paragraph, dict, where_p)
            context = _need(paragraph.get("context"), str, f"{where_p} context")
            for q, qa in enumerate(_need(paragraph.get("qas"), list, f"{where_p} qas")):
                qa = _need(qa, dict, f"{where_p} question {q}")
                qid = qa.get("id")
                if not isinstance(qid, str) or not qid:
                    raise SquadDataError(f"{where_p} question {q}: no id")
                where = f"{where_article} question id {qid}"
                if qid in seen:
                    raise SquadDataError(f"{where}: the id is used twice (also in article {seen[qid]})")
                seen[qid] = a
                question = _need(qa.get("question"), str, f"{where} question")
                answers = _need(qa.get("answers"), list, f"{where} answers")
                if not answers:
                    raise SquadDataError(f"{where}: no answers (SQuAD v1.1 has at least one per question)")
                texts, starts = [], []
                for j, answer in enumerate(answers):
                    answer = _need(answer, dict, f"{where} answer {j}")
                    text = _need(answer.get("text"), str, f"{where} answer {j} text")
                    start = answer.get("answer_start")
                    if isinstance(start, bool) or not isinstance(start, int):
                        raise SquadDataError(f"{where} answer {j}: answer_start must be an integer, got {start!r}")
                    if not 0 <= start <= len(context) - len(text):
                        raise SquadDataError(
                            f"{where} answer {j}: answer_start {start} + {len(text)} characters lies outside "
                            f"the context ({len(context)} characters)"
                        )
                    texts.append(text)
                    starts.append(start)
                examples.append(SquadExample(qid, question, context, tuple(texts), tuple(starts), a, title))
    return SquadDataset(examples, path=path, articles=None if articles is None else list(articles))


# ----------------------------------------------------------------------------- alignment


@dataclasses.dataclass
class AlignmentReport:
    """How the training answers mapped onto WordPieces.

    Attributes:
        questions: questions aligned.
        exact: the overlapping tokens' ids equal the tokenized answer.
        improved: `_improve_answer_span` narrowed the overlapping tokens.
        inexact: kept as the overlapping tokens: the answer starts or ends
            inside a WordPiece (in the shared SQuAD file e.g. "8" of "18",
            "gold" of "golden": 32 of the 7,010 answers of articles 0-29).
        unalignable: ids of questions whose answer overlaps no token or whose
            text is not the context's at answer_start.
    """

    questions: int = 0
    exact: int = 0
    improved: int = 0
    inexact: int = 0
    unalignable: list = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        return (
            f"{self.questions} answers: {self.exact} exact, {self.improved} narrowed by improve-answer-span, "
            f"{self.inexact} inside WordPieces, {len(self.unalignable)} unalignable"
        )


def align_answer(starts, ends, ids, answer_start, answer_text, answer_ids, context):
    """The answer's first and last context token (inclusive) and how it aligned.

    Args:
        starts, ends: the context tokens' raw code point offsets.
        ids: their WordPiece ids.
        answer_start: the answer's code point offset; answer_text its text.
        answer_ids: the WordPiece ids of `answer_text` tokenized alone.
        context: the raw context.

    Returns:
        `(first, last, how)` with `how` one of "exact", "improved",
        "inexact"; or `(-1, -1, "unalignable")`.
    """
    end = answer_start + len(answer_text)
    if context[answer_start:end] != answer_text or not answer_text.strip():
        return -1, -1, "unalignable"
    overlapping = np.nonzero((np.asarray(ends) > answer_start) & (np.asarray(starts) < end))[0]
    if len(overlapping) == 0:
        return -1, -1, "unalignable"
    first, last = int(overlapping[0]), int(overlapping[-1])
    want = list(answer_ids)
    if list(ids[first : last + 1]) == want:
        return first, last, "exact"
    # Google's _improve_answer_span: the first sub-run (by start, then longest)
    # of the overlapping tokens that is exactly the tokenized answer.
    for new_start in range(first, last + 1):
        for new_end in range(last, new_start - 1, -1):
            if list(ids[new_start : new_end + 1]) == want:
                return new_start, new_end, "improved"
    return first, last, "inexact"


# ----------------------------------------------------------------------------- windows


def window_spans(num_doc_tokens, max_doc_tokens, doc_stride):
    """run_squad.py's doc spans: `[(start, length), ...]`, at least one (an
    empty context gives `[(0, 0)]`)."""
    if max_doc_tokens < 1:
        raise ValueError(f"no room for context tokens (max_doc_tokens {max_doc_tokens})")
    step = min(max_doc_tokens, doc_stride)
    spans, start = [], 0
    while True:
        length = min(max_doc_tokens, num_doc_tokens - start)
        spans.append((start, max(length, 0)))
        if start + length >= num_doc_tokens:
            return spans
        start += step


def num_windows(num_doc_tokens, max_doc_tokens, doc_stride):
    """`len(window_spans(...))` in closed form (what the serving graph computes)."""
    step = min(max_doc_tokens, doc_stride)
    extra = max(num_doc_tokens - max_doc_tokens, 0)
    return 1 + (extra + step - 1) // step


def max_context_mask(spans, num_doc_tokens):
    """Per window, True at the context tokens whose max context it is.

    Google's `_check_is_max_context` with its score ``min(left, right) +
    0.01 * length`` scaled by 100 to integers (the same order; the first
    window wins ties). Returns a list of bool arrays, one per window, of the
    window's length.
    """
    best_score = np.full(num_doc_tokens, -1, np.int64)
    best_window = np.full(num_doc_tokens, -1, np.int64)
    for w, (start, length) in enumerate(spans):
        i = np.arange(length)
        score = 100 * np.minimum(i, length - 1 - i) + length
        better = score > best_score[start : start + length]
        best_score[start : start + length] = np.where(better, score, best_score[start : start + length])
        best_window[start : start + length] = np.where(better, w, best_window[start : start + length])
    return [best_window[start : start + length] == w for w, (start, length) in enumerate(spans)]
