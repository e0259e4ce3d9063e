"""Classification metrics and multi-seed summaries, dependency-free so reports need no sklearn.

Macro-F1 convention: the mean of per-class F1 over the classes that occur in the golds or the
predictions; a class absent from both is left out (not counted as 0 or 1). A class that occurs
has F1 = 2*tp / (2*tp + fp + fn), which is 0 when it was never predicted correctly.
"""

from __future__ import annotations

import math
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


def summarize_runs(rows: list[dict]) -> list[dict]:
    """Group metrics.json-like rows by (task, method, fusion, target_lang) across seeds.

    Each output row has those keys, ``n_seeds``, ``seeds`` and ``metrics`` mapping every metric
    name to ``{"mean": .., "std": ..}``; only metrics every run of the group reports are kept.
    Groups keep the order in which they first appear.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row["task"], row["method"], row.get("fusion"), row["target_lang"])
        groups.setdefault(key, []).append(row)
    summary = []
    for (task, method, fusion, lang), runs in groups.items():
        names = [m for m in runs[0]["metrics"] if all(m in r["metrics"] for r in runs)]
        stats = {}
        for name in names:
            mean, std = mean_std([float(r["metrics"][name]) for r in runs])
            stats[name] = {"mean": mean, "std": std}
        summary.append({
            "task": task, "method": method, "fusion": fusion, "target_lang": lang,
            "n_seeds": len(runs), "seeds": [r.get("seed") for r in runs], "metrics": stats,
        })
    return summary


def gap_to_source(source_score: float, target_score: float) -> dict:
    """Transfer gap: how much is lost from source to target, absolute and relative to source."""
    absolute = source_score - target_score
    return {"absolute": absolute, "relative": absolute / source_score if source_score else math.nan}


def _method_name(row: dict) -> str:
    return f"{row['method']} ({row['fusion']})" if row.get("fusion") else row["method"]


def format_table(summary: list[dict], metric: str = "accuracy") -> str:
    """Markdown table of one task's summary: one row per method, one column per target language,
    then the mean over the languages the method has. Cells are "mean ± std" ("mean" alone for a
    single seed); a missing cell is "–"."""
    langs = list(dict.fromkeys(r["target_lang"] for r in summary))
    methods = list(dict.fromkeys(_method_name(r) for r in summary))
    cells: dict[tuple[str, str], dict] = {
        (_method_name(r), r["target_lang"]): r for r in summary if metric in r["metrics"]
    }
    lines = [
        "| method | " + " | ".join(langs) + " | mean |",
        "|---|" + "---:|" * (len(langs) + 1),
    ]
    for method in methods:
        row, means = [], []
        for lang in langs:
            r = cells.get((method, lang))
            if r is None:
                row.append("–")
                continue
            stat = r["metrics"][metric]
            means.append(stat["mean"])
            cell = f"{stat['mean']:.3f}"
            row.append(cell + (f" ± {stat['std']:.3f}" if r["n_seeds"] > 1 else ""))
        row.append(f"{sum(means) / len(means):.3f}" if means else "–")
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    return "\n".join(lines)
