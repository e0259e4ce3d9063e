"""Paired bootstrap intervals for the difference between two systems on the same test examples.

Each bootstrap sample draws the test examples with replacement (the same draw for both systems, and for every
seed), recomputes the metric on the drawn examples for each system and seed (a corpus-level metric — entity F1,
BLEU, SQuAD F1 — is recomputed from the drawn predictions, never averaged from per-example scores), averages over
seeds and takes the difference. The interval is the percentile interval of those differences; a difference is
called real when the interval excludes zero. Pure Python and numpy; the draws come from one seeded generator, so
a report is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from xlt.errors import XltError

Metric = Callable[[list, list], float]  # (predictions, golds) of some examples -> one number


@dataclass(frozen=True)
class Difference:
    """System A minus system B: the observed difference (mean over seeds) and its bootstrap interval."""

    observed: float
    low: float
    high: float
    level: float
    samples: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_bootstrap(metric: Metric, golds: Sequence, system_a: Sequence[Sequence], system_b: Sequence[Sequence],
                     samples: int = 1000, level: float = 0.95, seed: int = 0) -> Difference:
    """The difference ``metric(A) - metric(B)`` with a paired bootstrap interval. ``system_a`` and ``system_b`` hold
    one prediction list per training seed (seeds of the same test set, in the golds' order); each side's seeds are
    averaged. The examples are resampled together for both systems and all seeds."""
    n = len(golds)
    runs = [*system_a, *system_b]
    if n == 0 or not system_a or not system_b:
        raise XltError("a paired bootstrap needs test examples and at least one run of each system")
    if any(len(run) != n for run in runs):
        raise XltError(f"every run must predict the same {n} test examples; got runs of {sorted({len(r) for r in runs})}")
    if samples < 1 or not 0 < level < 1:
        raise XltError(f"bootstrap samples must be >= 1 and the level in (0, 1); got {samples}, {level}")

    def difference(indices: np.ndarray) -> float:
        gold = [golds[i] for i in indices]
        score = [float(np.mean([metric([run[i] for i in indices], gold) for run in side]))
                 for side in (system_a, system_b)]
        return score[0] - score[1]

    draws = np.random.default_rng(seed).integers(0, n, size=(samples, n))
    differences = np.array([difference(indices) for indices in draws])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return Difference(difference(np.arange(n)), float(low), float(high), level, samples)


def accuracy_metric(predictions: list, golds: list) -> float:
    """Accuracy as the bootstrap recomputes it (any comparable labels)."""
    return sum(p == g for p, g in zip(predictions, golds)) / len(golds)


def summed_statistics(corpus: Callable[[np.ndarray], float]) -> Metric:
    """A corpus metric over rows of per-example sufficient statistics (sacreBLEU's BLEU and chrF counts, which
    already pair each prediction with its gold): the corpus score of the drawn rows' sum."""
    return lambda rows, golds: corpus(np.sum(np.asarray(rows, dtype=float), axis=0))
