"""Metrics against values worked out by hand / published by scikit-learn and scipy."""

import numpy as np
import pytest

from kerasbert.training import metrics as M


def test_accuracy_f1_mcc_binary():
    y_true = [1, 1, 1, 0, 0, 0, 1, 0]
    y_pred = [1, 1, 0, 0, 0, 1, 1, 0]
    # tp=3 fp=1 fn=1 tn=3
    assert M.accuracy(y_true, y_pred) == 0.75
    assert M.f1(y_true, y_pred) == pytest.approx(0.75)
    assert M.matthews_corrcoef(y_true, y_pred) == pytest.approx((9 - 1) / 16)


def test_mcc_multiclass_matches_sklearn_value():
    # sklearn.metrics.matthews_corrcoef(y_true, y_pred) == 0.6190476190476191
    y_true, y_pred = [0, 1, 2, 2, 1, 0, 2, 1], [0, 1, 2, 1, 1, 0, 2, 2]
    assert M.matthews_corrcoef(y_true, y_pred, 3) == pytest.approx(0.6190476190476191)
    assert M.matthews_corrcoef([0, 0, 0], [0, 0, 0]) == 0.0  # undefined -> 0 like sklearn


def test_macro_f1_for_three_classes():
    # per class F1: c0 tp=1 fp=1 fn=0 -> 2/3; c1 tp=1 fp=0 fn=1 -> 2/3; c2 -> 1
    # (sklearn f1_score(average="macro") == 0.7777...)
    assert M.f1([0, 1, 1, 2], [0, 1, 0, 2], num_classes=3) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def test_pearson_and_spearman_with_ties():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    y = [2.0, 4.0, 6.0, 8.0, 11.0]
    assert M.pearson(x, y) == pytest.approx(0.9958932064677037)  # scipy.stats.pearsonr
    assert M.spearman(x, y) == pytest.approx(1.0)
    # scipy.stats.spearmanr([1, 2, 2, 3], [1, 3, 2, 4]).statistic == 0.9486832980505138
    assert M.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(0.9486832980505138)
    r = M.regression_metrics(x, y)
    assert r["corr"] == pytest.approx((r["pearson"] + r["spearman"]) / 2)


def test_constant_predictions_give_zero_not_nan():
    assert M.pearson([1, 2, 3], [5, 5, 5]) == 0.0
    assert np.isfinite(M.spearman([1, 2, 3], [5, 5, 5]))
