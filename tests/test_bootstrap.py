"""The paired bootstrap against cases whose answer is known: identical systems, a system always right against one
always wrong, a hand-enumerated two-example case, the normal approximation of a mean difference, and a
corpus-level metric recomputed from the drawn examples."""

import numpy as np
import pytest

from xlt.errors import XltError
from xlt.scoring.bootstrap import accuracy_metric, paired_bootstrap
from xlt.scoring.entities import tagging_metrics


def test_identical_systems_differ_by_exactly_zero():
    golds = [0, 1, 2, 1, 0, 2]
    preds = [0, 1, 1, 1, 2, 2]
    diff = paired_bootstrap(accuracy_metric, golds, [preds], [list(preds)], samples=200)
    assert (diff.observed, diff.low, diff.high, diff.excludes_zero) == (0.0, 0.0, 0.0, False)


def test_always_right_against_always_wrong_is_one_with_no_spread():
    golds = list(range(10))
    diff = paired_bootstrap(accuracy_metric, golds, [golds], [[g + 1 for g in golds]], samples=100)
    assert (diff.observed, diff.low, diff.high, diff.excludes_zero) == (1.0, 1.0, 1.0, True)


def test_two_examples_match_the_enumerated_bootstrap_distribution():
    """A right on example 0 only, B on neither: the four equally likely draws give differences 1, .5, .5, 0, so
    the 95% interval spans [0, 1] and about a quarter of the draws give exactly 1."""
    diff = paired_bootstrap(accuracy_metric, ["y", "y"], [["y", "n"]], [["n", "n"]], samples=4000, seed=1)
    assert diff.observed == 0.5 and (diff.low, diff.high) == (0.0, 1.0) and not diff.excludes_zero


def test_a_mean_difference_has_the_width_the_normal_approximation_gives():
    """For accuracy the difference is a mean of per-example differences d_i in {-1, 0, 1}: its bootstrap
    interval is close to observed ± 1.96 · sd(d) / sqrt(n)."""
    rng = np.random.default_rng(0)
    n = 400
    golds = [0] * n
    a = list((rng.random(n) > 0.2).astype(int) ^ 1)  # right (0) about 80% of the time
    b = list((rng.random(n) > 0.3).astype(int) ^ 1)  # about 70%
    d = np.array([int(x == 0) - int(y == 0) for x, y in zip(a, b)], dtype=float)
    diff = paired_bootstrap(accuracy_metric, golds, [a], [b], samples=2000, seed=3)
    half = 1.96 * d.std() / np.sqrt(n)
    assert diff.observed == pytest.approx(d.mean())
    assert (diff.high - diff.low) / 2 == pytest.approx(half, rel=0.1)
    assert diff.excludes_zero == (abs(d.mean()) > half)


def test_seeds_are_averaged_and_resampled_together():
    golds = [1, 1, 1, 1]
    seed_runs_a = [[1, 1, 1, 1], [1, 1, 0, 0]]  # 1.0 and 0.5: mean 0.75
    seed_runs_b = [[0, 0, 0, 0], [1, 0, 0, 0]]  # 0.0 and 0.25: mean 0.125
    diff = paired_bootstrap(accuracy_metric, golds, seed_runs_a, seed_runs_b, samples=500)
    assert diff.observed == pytest.approx(0.625)
    assert diff.low <= 0.625 <= diff.high


def test_a_corpus_metric_is_recomputed_from_the_drawn_examples():
    """Entity F1 over the drawn sentences, not a mean of per-sentence F1: with one sentence of three entities
    and two of none, the observed F1 is the corpus one."""
    golds = [["B-PER", "O", "B-LOC", "B-ORG"], ["O", "O"], ["O"]]
    a = [["B-PER", "O", "B-LOC", "O"], ["O", "O"], ["O"]]  # 2 of 3 entities: P 1, R 2/3, F1 0.8
    b = [["O", "O", "O", "O"], ["B-PER", "O"], ["O"]]  # nothing right, one false entity
    f1 = lambda preds, gold: tagging_metrics(preds, gold)["f1"]  # noqa: E731
    diff = paired_bootstrap(f1, golds, [a], [b], samples=300)
    assert diff.observed == pytest.approx(0.8)
    assert diff.low <= diff.observed <= diff.high <= 1.0


def test_runs_of_another_test_set_are_refused():
    with pytest.raises(XltError, match=r"every run must predict the same 3 test examples; got runs of \[2, 3\]"):
        paired_bootstrap(accuracy_metric, [0, 1, 2], [[0, 1, 2]], [[0, 1]])
