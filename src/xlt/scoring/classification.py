"""Classification metrics, dependency-free so reports need no sklearn.

Macro-F1 convention: the mean of per-class F1 over the classes that occur in the golds or the
predictions; a class absent from both is left out (not counted as 0 or 1). A class that occurs
has F1 = 2*tp / (2*tp + fp + fn), which is 0 when it was never predicted correctly.
"""

from __future__ import annotations

from collections.abc import Sequence

METRICS = ("accuracy", "macro_f1")


def _check(preds: Sequence[int], golds: Sequence[int]) -> None:
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions for {len(golds)} gold labels")
    if not golds:
        raise ValueError("no examples to score")


def accuracy(preds: Sequence[int], golds: Sequence[int]) -> float:
    _check(preds, golds)
    return sum(p == g for p, g in zip(preds, golds)) / len(golds)


def macro_f1(preds: Sequence[int], golds: Sequence[int], num_labels: int) -> float:
    """Mean per-class F1 over labels ``0..num_labels-1`` present in golds or preds."""
    _check(preds, golds)
    f1s = []
    for c in range(num_labels):
        tp = sum(p == c and g == c for p, g in zip(preds, golds))
        fp = sum(p == c and g != c for p, g in zip(preds, golds))
        fn = sum(p != c and g == c for p, g in zip(preds, golds))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / len(f1s)


def classification_metrics(preds: Sequence[int], golds: Sequence[int], num_labels: int) -> dict:
    return {"accuracy": accuracy(preds, golds), "macro_f1": macro_f1(preds, golds, num_labels)}
