"""GLUE-style evaluation metrics on numpy arrays.

Accuracy, F1 and Matthews correlation (MCC) for classification; Pearson and
Spearman correlation for regression. Numpy only, so the numbers can be
checked by hand and match scikit-learn / scipy definitions.
"""

import numpy as np


def accuracy(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if y_true.size else 0.0


def f1(y_true, y_pred, num_classes=2):
    """Binary F1 of class 1 for two classes; macro-averaged F1 otherwise.

    Example:

    >>> f1([1, 1, 0, 0], [1, 0, 1, 0])
    0.5
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = [1] if num_classes == 2 else range(num_classes)
    scores = []
    for c in classes:
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def matthews_corrcoef(y_true, y_pred, num_classes=2):
    """Multiclass Matthews correlation (Gorodkin's R_K), as scikit-learn.

    Example:

    >>> round(matthews_corrcoef([1, 1, 0, 0], [1, 0, 0, 0]), 4)
    0.5774
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    k = max(num_classes, int(max(y_true.max(initial=0), y_pred.max(initial=0))) + 1)
    cm = np.zeros((k, k), dtype=np.float64)
    np.add.at(cm, (y_true, y_pred), 1)
    t, p = cm.sum(axis=1), cm.sum(axis=0)
    c, s = np.trace(cm), cm.sum()
    cov_ytyp = c * s - np.dot(t, p)
    cov_ypyp = s * s - np.dot(p, p)
    cov_ytyt = s * s - np.dot(t, t)
    denom = np.sqrt(cov_ytyt * cov_ypyp)
    return float(cov_ytyp / denom) if denom else 0.0


def pearson(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt(np.sum(x * x) * np.sum(y * y))
    return float(np.sum(x * y) / denom) if denom else 0.0


def _ranks(x):
    """Ranks with ties given their average rank (as scipy.stats.rankdata)."""
    x = np.asarray(x)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def spearman(x, y):
    """Spearman rank correlation (Pearson of tie-averaged ranks).

    Example:

    >>> spearman([1, 2, 3, 4], [10, 20, 30, 40])
    1.0
    """
    return pearson(_ranks(x), _ranks(y))


def classification_metrics(y_true, y_pred, num_classes):
    """accuracy, f1 (binary or macro) and mcc."""
    return {
        "accuracy": accuracy(y_true, y_pred),
        "f1": f1(y_true, y_pred, num_classes),
        "mcc": matthews_corrcoef(y_true, y_pred, num_classes),
    }


def regression_metrics(y_true, y_pred):
    """pearson, spearman and their mean (GLUE's STS-B score)."""
    p, s = pearson(y_true, y_pred), spearman(y_true, y_pred)
    return {"pearson": p, "spearman": s, "corr": (p + s) / 2}
