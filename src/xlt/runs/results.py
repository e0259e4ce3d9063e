"""Multi-seed statistics of run metrics: mean and standard deviation (and its one "mean ± std" format), the gap to
English. The tables built from them are :mod:`xlt.runs.report`'s."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value)."""
    if not values:
        raise ValueError("mean_std of no values")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def format_mean_std(values: Sequence[float]) -> str:
    """"mean ± std" over seeds; the mean alone for a single value, whose std says nothing."""
    mean, std = mean_std(values)
    return f"{mean:.3f}" + (f" ± {std:.3f}" if len(values) > 1 else "")


def gap_to_source(source_score: float, target_score: float) -> dict:
    """Transfer gap: how much is lost from source to target, absolute and relative to source."""
    absolute = source_score - target_score
    return {"absolute": absolute, "relative": absolute / source_score if source_score else math.nan}
