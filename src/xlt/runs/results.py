"""Multi-seed summaries of run metrics: mean and standard deviation, the gap to English, markdown tables."""

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
