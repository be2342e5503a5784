"""The official SQuAD v1.1 metrics: exact match and F1 (pure Python).

The logic of the official `evaluate-v1.1.py`: both the prediction and each
gold answer go through `normalize_answer` (lower case, drop punctuation,
drop the articles a/an/the, collapse whitespace); EM is 1 when they are
equal; F1 is the harmonic mean of token precision and recall over the
normalized whitespace tokens (a bag: common tokens counted with
multiplicity); each question scores its best gold answer; the totals are
means in percent.

>>> normalize_answer("The  Denver Broncos!")
'denver broncos'
>>> round(f1_score("Denver Broncos team", "the Denver Broncos"), 4)
0.8
>>> squad_scores({"q1": ["Denver Broncos"], "q2": ["1895"]}, {"q1": "denver broncos.", "q2": "1896"})
{'exact_match': 50.0, 'f1': 50.0}
"""

from __future__ import annotations

import collections
import re
import string

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def metric_max_over_ground_truths(metric_fn, prediction, ground_truths) -> float:
    return max(metric_fn(prediction, gt) for gt in ground_truths)


def squad_scores(gold: dict, predictions: dict) -> dict[str, float]:
    """`{"exact_match", "f1"}` in percent over the questions of `gold`.

    Args:
        gold: question id -> list of gold answer texts.
        predictions: question id -> predicted text; a question without a
            prediction scores 0 (the official script warns and counts it).
    """
    em = f1 = 0.0
    for qid, truths in gold.items():
        if qid not in predictions:
            continue
        em += metric_max_over_ground_truths(exact_match_score, predictions[qid], truths)
        f1 += metric_max_over_ground_truths(f1_score, predictions[qid], truths)
    total = max(len(gold), 1)
    return {"exact_match": 100.0 * em / total, "f1": 100.0 * f1 / total}
