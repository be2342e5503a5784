"""Entity-level precision, recall and F1 (conlleval / seqeval semantics).

An entity is an exact ``(type, start, end)`` span; a predicted entity counts
only if the gold sequence has the same span with the same type. Spans are
read from the tags as conlleval and seqeval's default mode read them: an
``I-X`` after ``O`` or after another type starts an entity, ``B-X`` always
starts one, and (for BIOES input) ``E-``/``S-`` close one. Sentences are
scored separately (no entity crosses a sentence boundary).

Micro scores pool all entities: precision = correct / predicted, recall =
correct / gold, F1 their harmonic mean (0 when both are 0). Per type the
same, with ``support`` = gold entities of the type. Pure Python; checked
against seqeval in ``tests/test_entity_metrics.py``.

Example:

    >>> gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    >>> pred = [["B-PER", "I-PER", "O", "B-ORG"]]
    >>> scores = entity_scores(gold, pred)
    >>> scores["f1"], scores["per_type"]["PER"]["f1"]
    (0.5, 1.0)
"""

from __future__ import annotations

from collections import Counter

from kerasbert.data.tagging import iob2_entities


def _prf(correct, predicted, gold):
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _entity_sets(sequences):
    """``{(sentence, type, start, end)}`` of a list of tag sequences."""
    found = set()
    for i, tags in enumerate(sequences):
        for kind, start, end in iob2_entities(list(tags)):
            found.add((i, kind, start, end))
    return found


def entity_scores(gold, pred) -> dict:
    """Entity-level scores of predicted tag sequences against gold ones.

    Args:
        gold, pred: lists of tag sequences (one per sentence, same lengths),
            IOB2 (IOB1 and BIOES/BMES tags are read the same way).

    Returns:
        ``{"precision", "recall", "f1", "correct", "predicted", "gold",
        "per_type": {type: {"precision", "recall", "f1", "support",
        "predicted", "correct"}}}``; types are those in gold or predictions,
        sorted.

    Raises:
        ValueError: different numbers of sentences or of tags in a sentence,
            or a tag that is not ``O``/``B-``/``I-``/``M-``/``E-``/``S-``.
    """
    gold, pred = list(gold), list(pred)
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")
    gold_set, pred_set = _entity_sets(gold), _entity_sets(pred)
    correct_set = gold_set & pred_set
    n_gold = Counter(e[1] for e in gold_set)
    n_pred = Counter(e[1] for e in pred_set)
    n_correct = Counter(e[1] for e in correct_set)
    per_type = {}
    for kind in sorted(set(n_gold) | set(n_pred)):
        p, r, f = _prf(n_correct[kind], n_pred[kind], n_gold[kind])
        per_type[kind] = {
            "precision": p,
            "recall": r,
            "f1": f,
            "support": n_gold[kind],
            "predicted": n_pred[kind],
            "correct": n_correct[kind],
        }
    p, r, f = _prf(len(correct_set), len(pred_set), len(gold_set))
    return {
        "precision": p,
        "recall": r,
        "f1": f,
        "correct": len(correct_set),
        "predicted": len(pred_set),
        "gold": len(gold_set),
        "per_type": per_type,
    }


def classification_report(gold, pred) -> dict:
    """seqeval's ``classification_report(..., output_dict=True)`` layout:
    ``{type: {"precision", "recall", "f1-score", "support"}, "micro avg",
    "macro avg", "weighted avg"}`` (averages over the gold types' rows,
    supports summed)."""
    scores = entity_scores(gold, pred)
    report = {
        kind: {"precision": s["precision"], "recall": s["recall"], "f1-score": s["f1"], "support": s["support"]}
        for kind, s in scores["per_type"].items()
    }
    rows = list(report.values())
    support = sum(r["support"] for r in rows)
    report["micro avg"] = {
        "precision": scores["precision"],
        "recall": scores["recall"],
        "f1-score": scores["f1"],
        "support": support,
    }
    keys = ("precision", "recall", "f1-score")
    report["macro avg"] = {k: (sum(r[k] for r in rows) / len(rows) if rows else 0.0) for k in keys}
    report["macro avg"]["support"] = support
    report["weighted avg"] = {k: (sum(r[k] * r["support"] for r in rows) / support if support else 0.0) for k in keys}
    report["weighted avg"]["support"] = support
    return report


def flat_scores(gold, pred) -> dict[str, float]:
    """``{"f1", "precision", "recall", "f1_<TYPE>", ...}``: the dev metrics a
    run logs (F1 first)."""
    scores = entity_scores(gold, pred)
    out = {"f1": scores["f1"], "precision": scores["precision"], "recall": scores["recall"]}
    for kind, s in scores["per_type"].items():
        out[f"f1_{kind}"] = s["f1"]
    return out
