"""Entity-level metrics: hand-computed cases, and seqeval as the reference on
real CoNLL-2003 tags with random corruptions."""

import random
import warnings

import pytest

from conftest import shared_path
from kerasbert.data.tagging import read_tagged
from kerasbert.training import entity_metrics
from kerasbert.training.entity_metrics import classification_report, entity_scores, flat_scores


def test_hand_computed():
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG", "O"], ["B-ORG", "B-ORG"]]
    s = entity_scores(gold, pred)
    # gold: PER(0,2) LOC(3,4) ORG(s1 0,1); pred: PER(0,2) ORG(3,4) ORG(s1 0,1) ORG(s1 1,2)
    assert (s["correct"], s["predicted"], s["gold"]) == (2, 4, 3)
    assert s["precision"] == pytest.approx(0.5)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s["per_type"]["PER"] == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "support": 1,
        "predicted": 1,
        "correct": 1,
    }
    assert s["per_type"]["LOC"]["support"] == 1 and s["per_type"]["LOC"]["f1"] == 0.0
    assert s["per_type"]["ORG"]["precision"] == pytest.approx(1 / 3)
    assert s["per_type"]["ORG"]["recall"] == 1.0 and s["per_type"]["ORG"]["f1"] == pytest.approx(0.5)


def test_conlleval_reading():
    # I-X after O starts an entity; a type change splits; partial spans are wrong.
    assert entity_scores([["O", "B-PER", "I-PER"]], [["O", "I-PER", "I-PER"]])["f1"] == 1.0
    assert entity_scores([["B-PER", "I-PER"]], [["B-PER", "I-LOC"]])["correct"] == 0
    assert entity_scores([["B-PER", "I-PER", "I-PER"]], [["B-PER", "I-PER", "O"]])["f1"] == 0.0
    # No entities crosses a sentence boundary.
    s = entity_scores([["B-PER"], ["I-PER"]], [["B-PER"], ["I-PER"]])
    assert s["gold"] == 2 and s["f1"] == 1.0
    # Nothing predicted, nothing gold.
    assert entity_scores([["O"]], [["O"]])["f1"] == 0.0
    assert entity_scores([], [])["f1"] == 0.0


def test_errors():
    with pytest.raises(ValueError, match="2 gold sentences but 1 predicted"):
        entity_scores([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 0: 2 gold tags but 1 predicted"):
        entity_scores([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="unknown tag"):
        entity_scores([["X-PER"]], [["O"]])


def test_flat_scores_order():
    gold = [["B-PER", "O", "B-LOC"]]
    out = flat_scores(gold, gold)
    assert list(out) == ["f1", "precision", "recall", "f1_LOC", "f1_PER"]
    assert all(v == 1.0 for v in out.values())


def corrupt(sequences, rate, rng, types):
    choices = ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]
    out = []
    for tags in sequences:
        tags = list(tags)
        for i in range(len(tags)):
            r = rng.random()
            if r < rate:
                tags[i] = rng.choice(choices)
            elif r < 1.5 * rate and tags[i] != "O":
                tags[i] = "I" + tags[i][1:] if tags[i][0] == "B" else "B" + tags[i][1:]  # boundary errors
        out.append(tags)
    return out


@pytest.mark.parametrize("rate, seed", [(0.0, 0), (0.02, 1), (0.1, 2), (0.4, 3)])
def test_against_seqeval_on_real_conll(rate, seed):
    seqeval_metrics = pytest.importorskip("seqeval.metrics")
    corpus = read_tagged(shared_path("data", "conll2003", "eng.testa"))
    gold = [list(s.tags) for s in corpus]
    rng = random.Random(seed)
    pred = corrupt(gold, rate, rng, corpus.entity_types())
    if seed == 3:  # also corrupt the gold side, and feed IOB1-style gold
        gold = corrupt(gold, 0.05, rng, corpus.entity_types())
    ours = entity_scores(gold, pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns on types without predictions
        ref = seqeval_metrics.classification_report(gold, pred, output_dict=True, zero_division=0)
        assert ours["precision"] == pytest.approx(seqeval_metrics.precision_score(gold, pred), abs=1e-12)
        assert ours["recall"] == pytest.approx(seqeval_metrics.recall_score(gold, pred), abs=1e-12)
        assert ours["f1"] == pytest.approx(seqeval_metrics.f1_score(gold, pred), abs=1e-12)
    mine = classification_report(gold, pred)
    for kind in corpus.entity_types():
        for key in ("precision", "recall", "f1-score", "support"):
            assert mine[kind][key] == pytest.approx(ref[kind][key], abs=1e-12), (kind, key)
        assert ours["per_type"][kind]["f1"] == pytest.approx(ref[kind]["f1-score"], abs=1e-12)
    for avg in ("micro avg", "macro avg", "weighted avg"):
        for key in ("precision", "recall", "f1-score", "support"):
            assert mine[avg][key] == pytest.approx(ref[avg][key], abs=1e-12), (avg, key)
    if rate == 0.0:
        assert ours["f1"] == 1.0 and ours["gold"] == 5942


def test_module_docstring_example():
    import doctest

    assert doctest.testmod(entity_metrics).failed == 0
