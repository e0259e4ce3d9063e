"""``xlt report``: any set of finished runs as one comparison. Per task, language and method the mean ± std over
seeds of the main metric, and for each method against its baselines (``lora``; FLARE also against
``input-fusion``) the difference with a 95% paired bootstrap interval over the test examples and seeds
(:mod:`xlt.scoring.bootstrap`), read from each run's predictions.jsonl and recomputed with the task's metric.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from xlt.data.registry import get_task
from xlt.errors import XltError
from xlt.methods.table import METHODS
from xlt.run_dir import MARKER, METRICS, read_predictions
from xlt.runs.results import format_mean_std
from xlt.scoring.bootstrap import Difference, accuracy_metric, paired_bootstrap
from xlt.scoring.entities import tagging_metrics
from xlt.scoring.squad import squad_metrics

BASELINES = {"*": ("lora",), "flare": ("lora", "input-fusion")}  # method -> what it is compared against
MAIN_METRIC = {"classification": "accuracy", "tagging": "f1", "extractive-qa": "f1"}  # generation: its first


@dataclass(frozen=True)
class FinishedRun:
    """One finished run as the report reads it: metrics.json and, where kept, its predictions."""

    folder: Path
    metrics: dict
    predictions: list[dict] | None

    @property
    def method(self) -> str:
        return f"{self.metrics['method']} ({self.metrics['fusion']})" if self.metrics.get("fusion") \
            else self.metrics["method"]

    @property
    def key(self) -> tuple[str, str]:
        return self.metrics["task"], self.metrics["target_lang"]


def find_runs(paths: list[str | Path]) -> list[FinishedRun]:
    """Every finished run at or under ``paths`` (a folder holding xlt's marker and a metrics.json with metrics)."""
    found = []
    for path in map(Path, paths):
        if not path.exists():
            raise XltError(f"{path} does not exist")
        folders = [path] if (path / MARKER).is_file() else sorted(p.parent for p in path.rglob(MARKER))
        for folder in folders:
            metrics = json.loads((folder / METRICS).read_text()) if (folder / METRICS).is_file() else {}
            if isinstance(metrics.get("metrics"), dict):
                found.append(FinishedRun(folder, metrics, read_predictions(folder)))
    if not found:
        raise XltError(f"no finished xlt run under {', '.join(map(str, paths))}")
    return found


def main_metric(runs: list[FinishedRun]) -> str:
    kind = get_task(runs[0].metrics["task"]).kind
    return MAIN_METRIC.get(kind) or next(iter(runs[0].metrics["metrics"]))


def rescoring_metric(task: str, lang: str, metric: str):
    """The metric recomputed from drawn predictions (None where predictions.jsonl cannot say: generation)."""
    kind = get_task(task).kind
    if kind == "classification":
        return accuracy_metric
    if kind == "tagging":
        return lambda preds, golds: tagging_metrics(preds, golds)[metric]
    if kind == "extractive-qa":
        return lambda preds, golds: squad_metrics(preds, golds, lang)[metric]
    return None


def compare(method_runs: list[FinishedRun], baseline_runs: list[FinishedRun], metric: str, samples: int) -> Difference | None:
    """Method minus baseline over the seeds both have, paired by test example; None without predictions."""
    seeds = sorted({r.metrics["seed"] for r in method_runs} & {r.metrics["seed"] for r in baseline_runs})
    by_seed = lambda runs: {r.metrics["seed"]: r for r in runs}  # noqa: E731
    a, b = by_seed(method_runs), by_seed(baseline_runs)
    pairs = [(a[s], b[s]) for s in seeds if a[s].predictions is not None and b[s].predictions is not None]
    task, lang = method_runs[0].key
    rescore = rescoring_metric(task, lang, metric)
    if not pairs or rescore is None:
        return None
    ids = [row["id"] for row in pairs[0][0].predictions]
    for x, y in pairs:
        for run in (x, y):
            if [row["id"] for row in run.predictions] != ids:
                raise XltError(f"{run.folder} was tested on other examples than {pairs[0][0].folder}; a paired "
                               "comparison needs the same test set")
    golds = [row["gold"] for row in pairs[0][0].predictions]
    return paired_bootstrap(rescore, golds, [[row["prediction"] for row in x.predictions] for x, _ in pairs],
                            [[row["prediction"] for row in y.predictions] for _, y in pairs], samples=samples)


def report(runs: list[FinishedRun], samples: int = 1000) -> str:
    """The Markdown report: one table of mean ± std per task, and the paired differences against baselines."""
    lines = []
    for task in dict.fromkeys(r.metrics["task"] for r in runs):
        task_runs = [r for r in runs if r.metrics["task"] == task]
        metric = main_metric(task_runs)
        langs = list(dict.fromkeys(r.metrics["target_lang"] for r in task_runs))
        methods = sorted(dict.fromkeys(r.method for r in task_runs), key=_table_order)
        cell = {(m, lang): [r for r in task_runs if r.method == m and r.metrics["target_lang"] == lang]
                for m in methods for lang in langs}
        lines += [f"## {task}: {metric}, mean ± std over seeds", "", f"| method | {' | '.join(langs)} |",
                  "|---|" + "---:|" * len(langs)]
        lines += [f"| {m} | " + " | ".join(format_mean_std([r.metrics["metrics"][metric] for r in cell[m, lang]])
                                           if cell[m, lang] else "" for lang in langs) + " |" for m in methods]
        lines += ["", *_differences(cell, methods, langs, metric, samples), ""]
    return "\n".join(lines)


def _differences(cell: dict, methods: list[str], langs: list[str], metric: str, samples: int) -> list[str]:
    """The paired-bootstrap table: method − baseline per language, its 95% interval, * where it excludes 0."""
    rows = []
    for m in methods:
        name = m.split(" (")[0]
        for baseline in BASELINES.get(name, BASELINES["*"]):
            if baseline == name or baseline not in methods:
                continue
            found = [compare(cell[m, lang], cell[baseline, lang], metric, samples)
                     if cell[m, lang] and cell[baseline, lang] else None for lang in langs]
            rows.append(f"| {m} − {baseline} | " + " | ".join(_difference_cell(d) for d in found) + " |")
    if not rows:
        return []
    return [f"Differences in {metric}, 95% paired bootstrap interval over test examples and seeds "
            f"({samples} samples); * the interval excludes 0:", "", f"| comparison | {' | '.join(langs)} |",
            "|---|" + "---:|" * len(langs), *rows]


def _table_order(method: str) -> tuple[int, str]:
    """Methods in the method table's order (baselines first, FLARE after), fusions by name."""
    name = method.split(" (")[0]
    return (list(METHODS).index(name) if name in METHODS else len(METHODS), method)


def _difference_cell(d: Difference | None) -> str:
    if d is None:
        return "n/a"
    return f"{d.observed:+.3f} [{d.low:+.3f}, {d.high:+.3f}]" + ("*" if d.excludes_zero else "")
