"""``xlt report``: any set of finished runs as one comparison, the one implementation of xlt's result tables (the
demo's summary prints through it too). Per task, language and method the mean ± std over seeds of the main metric
and the gap to English, and for each method against its baselines (``lora``; FLARE, any fusion, also against
``input-fusion``) the difference with a 95% paired bootstrap interval over the test examples and seeds
(:mod:`xlt.scoring.bootstrap`), read from each run's predictions.jsonl and recomputed with the task's metric — a
corpus metric (entity F1, SQuAD F1, BLEU, chrF) from the drawn examples, never a mean of per-example scores.

:func:`build_tables` computes everything once into :class:`Table` objects; :func:`render` writes them as Markdown,
CSV or LaTeX, and :mod:`xlt.runs.report_plots` draws them.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from xlt.data.registry import get_task
from xlt.errors import XltError
from xlt.methods.table import METHODS
from xlt.run_dir import CONFIG, MARKER, METRICS, read_predictions
from xlt.runs.results import format_mean_std, mean_std
from xlt.scoring.bootstrap import Difference, Metric, accuracy_metric, paired_bootstrap, summed_statistics
from xlt.scoring.entities import tagging_metrics
from xlt.scoring.generation import MAIN_SCORE, get_metric, metric_of_scores, translation_statistics
from xlt.scoring.squad import squad_metrics

BASELINES = {"*": ("lora",), "flare": ("lora", "input-fusion")}  # method (label before " (fusion)") -> baselines
MAIN_METRIC = {"classification": "accuracy", "tagging": "f1", "extractive-qa": "f1"}  # generation: MAIN_SCORE
FORMATS = ("markdown", "csv", "latex")
ENGLISH = "English (stage-1 model)"  # the row of the English models' own test scores
# settings that place a run in its table (its cell) or say where its files go, never what it measured
CELL_SETTINGS = {"seed", "target_lang", "method", "fusion", "output_dir", "stage1_dir", "data_dir", "show_progress",
                 "report_to", "translation_cache", "train_file", "test_file"}
ZEROED = "{method}, English zeroed at test"  # FLARE's diagnostic rows (no comparisons: no predictions are kept)


@dataclass(frozen=True)
class FinishedRun:
    """One finished run as the report reads it: metrics.json and, where kept, its predictions."""

    folder: Path
    metrics: dict
    predictions: list[dict] | None
    settings: dict = field(default_factory=dict)  # its config.yaml (empty where there is none: a demo row)
    variant: str = ""  # the settings that set it apart from the other runs of its table, "key=value, ..."

    @classmethod
    def from_row(cls, row: dict, predictions: bool = True) -> FinishedRun:
        """A run from its metrics.json as a row (the demo's results.jsonl: ``method`` may be the row's label), with
        the predictions of its ``output_dir`` where ``predictions`` and the row names one."""
        folder = row.get("output_dir")
        return cls(Path(folder or "."), row, read_predictions(folder) if folder and predictions else None)

    @property
    def method(self) -> str:
        if self.metrics.get("label"):  # a diagnostic row (ZEROED)
            return self.metrics["label"]
        return f"{self.base_label} [{self.variant}]" if self.variant else self.base_label

    @property
    def base_label(self) -> str:
        """The method with its fusion (``flare (mul)``); a merge names what it merged (``merge (0.9 lora + 0.1
        align)``)."""
        merged, weights = self.metrics.get("merged_runs"), (self.metrics.get("merge") or {}).get("weights")
        if merged and weights and len(weights) == len(merged) and self.metrics["method"] in METHODS:  # not a demo label
            return "merge (" + " + ".join(f"{w:g} {run['method']}" for w, run in zip(weights, merged)) + ")"
        return f"{self.metrics['method']} ({self.metrics['fusion']})" if self.metrics.get("fusion") \
            else self.metrics["method"]

    def zeroed(self) -> FinishedRun | None:
        """The same run scored with the English states zeroed at test (FLARE's diagnostic), as a row of its own."""
        scores = self.metrics.get("metrics_zero_source")
        if not scores:
            return None
        return FinishedRun(self.folder, {**self.metrics, "metrics": scores, "gap": None,
                                         "label": ZEROED.format(method=self.method)}, None)

    @property
    def key(self) -> tuple[str, str]:
        return self.metrics["task"], self.metrics["target_lang"]

    def gap(self, metric: str) -> float | None:
        """English − target in ``metric`` as the run recorded it (None where it did not: an English score of 0)."""
        return ((self.metrics.get("gap") or {}).get(metric) or {}).get("absolute")


@dataclass(frozen=True)
class Cell:
    """One task, language and method: each seed's score and gap to English."""

    values: tuple[float, ...]
    seeds: tuple
    gaps: tuple[float | None, ...]

    @property
    def mean(self) -> float:
        return mean_std(self.values)[0]

    @property
    def std(self) -> float | None:
        """The sample standard deviation over seeds (None for one seed: it says nothing)."""
        return mean_std(self.values)[1] if len(self.values) > 1 else None

    @property
    def gap(self) -> float | None:
        """The mean gap to English over seeds (None unless every run recorded one)."""
        return None if None in self.gaps or not self.gaps else mean_std(self.gaps)[0]


@dataclass(frozen=True)
class Comparison:
    """``method`` − ``baseline`` per language of its table (None where predictions cannot say)."""

    method: str
    baseline: str
    differences: tuple[Difference | None, ...]

    @property
    def label(self) -> str:
        return f"{self.method} − {self.baseline}"


@dataclass(frozen=True)
class Table:
    """One task's ``metric``: a cell per method and language, and the paired comparisons (``samples`` draws)."""

    task: str
    metric: str
    languages: tuple[str, ...]
    methods: tuple[str, ...]
    cells: dict[tuple[str, str], Cell]
    comparisons: tuple[Comparison, ...] = ()
    samples: int = 0
    english: Cell | None = None  # the English score of each distinct English model (stage 1) the runs used

    def method_mean(self, method: str) -> float | None:
        """The mean over the languages ``method`` has of its cells' means."""
        means = [self.cells[method, lang].mean for lang in self.languages if (method, lang) in self.cells]
        return sum(means) / len(means) if means else None


def find_runs(paths: list[str | Path]) -> list[FinishedRun]:
    """Every finished run at or under ``paths`` (a folder holding xlt's marker and a metrics.json with metrics)."""
    found, seen = [], set()
    for path in map(Path, paths):
        if not path.exists():
            raise XltError(f"{path} does not exist")
        folders = [path] if (path / MARKER).is_file() else sorted(p.parent for p in path.rglob(MARKER))
        for folder in folders:
            if folder.resolve() in seen:  # paths that overlap (a folder and a run inside it) name a run once
                continue
            seen.add(folder.resolve())
            metrics = json.loads((folder / METRICS).read_text()) if (folder / METRICS).is_file() else {}
            if isinstance(metrics.get("metrics"), dict):
                settings = yaml.safe_load((folder / CONFIG).read_text()) if (folder / CONFIG).is_file() else {}
                found.append(FinishedRun(folder, metrics, read_predictions(folder), settings or {}))
    if not found:
        raise XltError(f"no finished xlt run under {', '.join(map(str, paths))}")
    return found


def main_metric(runs: list[FinishedRun]) -> str:
    """The task kind's metric; a generation task's main score (chrF for translation), else its first."""
    scores = runs[0].metrics["metrics"]
    kind = get_task(runs[0].metrics["task"]).kind
    return MAIN_METRIC.get(kind) or MAIN_SCORE.get(metric_of_scores(scores)) or next(iter(scores))


@dataclass(frozen=True)
class Rescoring:
    """How the bootstrap recomputes a metric: ``items(predictions, golds)`` is what one run's test rows become,
    each paired with that run's own gold (translate-test scores the English version of an example against its
    English gold), and ``metric(items, golds)`` the score of the drawn items."""

    metric: Metric
    items: Callable[[list, list], list]


def _on_own_golds(score: Callable[[list, list], float]) -> Rescoring:
    """``score(predictions, golds)`` over drawn (prediction, gold) pairs."""
    return Rescoring(lambda pairs, golds: score([p for p, _ in pairs], [g for _, g in pairs]),
                     lambda predictions, golds: list(zip(predictions, golds)))


def rescoring(task: str, lang: str, metric: str, scores: dict) -> Rescoring | None:
    """The metric recomputed from drawn predictions (None where predictions.jsonl cannot say: a score that is no
    corpus metric of the predictions, such as macro-F1 over labels the rows do not list)."""
    kind = get_task(task).kind
    if kind == "classification":
        return _on_own_golds(accuracy_metric) if metric == "accuracy" else None
    if kind == "tagging":
        return _on_own_golds(lambda preds, golds: tagging_metrics(preds, golds)[metric])
    if kind == "extractive-qa":
        return _on_own_golds(lambda preds, golds: squad_metrics(preds, golds, lang)[metric])
    generation = metric_of_scores(scores)
    if generation == "mt":
        statistics, corpus = translation_statistics(metric, lang)
        return Rescoring(summed_statistics(corpus), statistics)
    if generation is None:
        return None
    score = get_metric(generation, lang)
    return _on_own_golds(lambda preds, golds: score(preds, golds)[metric])


def compare(method_runs: list[FinishedRun], baseline_runs: list[FinishedRun], metric: str, samples: int) -> Difference | None:
    """Method minus baseline over the seeds both have, paired by test example; None without predictions."""
    seeds = sorted({r.metrics["seed"] for r in method_runs} & {r.metrics["seed"] for r in baseline_runs})
    by_seed = lambda runs: {r.metrics["seed"]: r for r in runs}  # noqa: E731
    a, b = by_seed(method_runs), by_seed(baseline_runs)
    pairs = [(a[s], b[s]) for s in seeds if a[s].predictions is not None and b[s].predictions is not None]
    task, lang = method_runs[0].key
    rescore = rescoring(task, lang, metric, method_runs[0].metrics["metrics"])
    if not pairs or rescore is None:
        return None
    ids = [row["id"] for row in pairs[0][0].predictions]
    for x, y in pairs:
        for run in (x, y):
            if [row["id"] for row in run.predictions] != ids:
                raise XltError(f"{run.folder} was tested on other examples than {pairs[0][0].folder}; a paired "
                               "comparison needs the same test set")
    golds = [row["gold"] for row in pairs[0][0].predictions]
    items = lambda run: rescore.items([row["prediction"] for row in run.predictions],  # noqa: E731
                                      [row["gold"] for row in run.predictions])
    return paired_bootstrap(rescore.metric, golds, [items(x) for x, _ in pairs], [items(y) for _, y in pairs],
                            samples=samples)


def comparison_pairs(methods: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """(method, baseline) for every method and each of its baselines among ``methods``, in ``methods``' order; a
    method label's fusion (``flare (mul)``) does not change its baselines, and its variant (``[source_from=lexicon]``)
    picks the baseline of the same variant where there is one."""
    pairs = []
    for method in (m for m in methods if not m.endswith(ZEROED.format(method=""))):
        name, variant = method.split(" [")[0].split(" (")[0], method.partition(" [")[2]
        for baseline in BASELINES.get(name, BASELINES["*"]):
            same = f"{baseline} [{variant}" if variant else baseline
            chosen = same if same in methods else baseline
            if baseline != name and chosen in methods:
                pairs.append((method, chosen))
    return pairs


def with_variants(runs: list[FinishedRun]) -> list[FinishedRun]:
    """The runs labelled with the settings that vary among the runs of one method (and fusion) besides the cells'
    own axes (seed, language) and where things go: runs of another source, model or rate are never averaged into
    one cell. A method's own defaults (LoRA's rank against the align methods') are no variant."""
    labelled = []
    for label in dict.fromkeys(r.base_label for r in runs):
        group = [r for r in runs if r.base_label == label]
        keys = sorted({key for r in group for key in r.settings} - CELL_SETTINGS)
        varying = [k for k in keys if len({json.dumps(r.settings.get(k), sort_keys=True) for r in group}) > 1]
        labelled += [dataclasses.replace(r, variant=", ".join(f"{k}={r.settings.get(k)}" for k in varying))
                     if varying else r for r in group]
    return labelled


def build_table(runs: list[FinishedRun], metric: str, samples: int = 1000, keep_order: bool = False) -> Table:
    """One task's table of ``metric`` over ``runs``, with the paired comparisons bootstrapped with ``samples`` draws
    (none for 0). Methods in the method table's order, or in the order they come (``keep_order``)."""
    langs = tuple(dict.fromkeys(r.metrics["target_lang"] for r in runs))
    found = list(dict.fromkeys(r.method for r in runs))
    methods = tuple(found if keep_order else sorted(found, key=_table_order))
    groups = {(m, lang): [r for r in runs if r.method == m and r.metrics["target_lang"] == lang
                          and metric in r.metrics["metrics"]] for m in methods for lang in langs}
    for (method, lang), group in groups.items():
        seeds = [r.metrics.get("seed") for r in group]
        if len(set(seeds)) < len(seeds):
            twice = next(seed for seed in seeds if seeds.count(seed) > 1)
            folders = [str(r.folder) for r in group if r.metrics.get("seed") == twice]
            raise XltError(f"{method} on {lang} has {len(folders)} runs of seed {twice} with the same settings "
                           f"({', '.join(folders)}): report one of them")
    cells = {key: Cell(tuple(float(r.metrics["metrics"][metric]) for r in group),
                       tuple(r.metrics.get("seed") for r in group), tuple(r.gap(metric) for r in group))
             for key, group in groups.items() if group}
    comparisons = tuple(
        Comparison(m, b, tuple(compare(groups[m, lang], groups[b, lang], metric, samples)
                               if groups[m, lang] and groups[b, lang] else None for lang in langs))
        for m, b in (comparison_pairs(methods) if samples else []))
    return Table(runs[0].metrics["task"], metric, langs, methods, cells, comparisons, samples)


def build_tables(runs: list[FinishedRun], samples: int = 1000) -> list[Table]:
    """One table per task (in the order the runs come) of its main metric, with the English models' row and
    FLARE's rows with the English zeroed at test."""
    tasks = dict.fromkeys(r.metrics["task"] for r in runs)
    return [full_table(with_variants(task_runs), main_metric(task_runs), samples)
            for task_runs in ([r for r in runs if r.metrics["task"] == task] for task in tasks)]


def full_table(runs: list[FinishedRun], metric: str, samples: int = 1000, keep_order: bool = False) -> Table:
    """:func:`build_table` plus the English models' row and FLARE's rows with the English zeroed at test."""
    zeroed = [z for z in map(FinishedRun.zeroed, runs) if z is not None]
    table = build_table(runs + zeroed, metric, samples, keep_order)
    return dataclasses.replace(table, english=english_cell(runs, metric))


def english_cell(runs: list[FinishedRun], metric: str) -> Cell | None:
    """The English test score of each distinct English model the runs were adapted from (one per stage-1 folder)."""
    models = {}
    for r in runs:
        score = (r.metrics.get("source_metrics") or {}).get(metric)
        if score is not None:
            models.setdefault(r.metrics.get("stage1_dir") or r.metrics.get("seed"), (float(score), r.metrics.get("seed")))
    if not models:
        return None
    return Cell(tuple(v for v, _ in models.values()), tuple(seed for _, seed in models.values()), ())


def render(tables: list[Table], fmt: str = "markdown") -> str:
    """The tables as ``fmt``: one of :data:`FORMATS`."""
    writers = {"markdown": markdown, "csv": csv_text, "latex": latex}
    if fmt not in writers:
        raise XltError(f"unknown report format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    return writers[fmt](tables)


def report(runs: list[FinishedRun], samples: int = 1000, fmt: str = "markdown") -> str:
    """The report of ``runs`` as ``fmt``: each task's table, and the paired differences against baselines."""
    return render(build_tables(runs, samples), fmt)


def _table_order(method: str) -> tuple[int, str]:
    """Methods in the method table's order (baselines first, FLARE after), fusions by name."""
    name = method.split(" (")[0]
    return (list(METHODS).index(name) if name in METHODS else len(METHODS), method)


# Markdown


def markdown(tables: list[Table]) -> str:
    lines = []
    for table in tables:
        lines += [f"## {table.task}: {table.metric}, mean ± std over seeds", "", *markdown_table(table), ""]
        lines += [*markdown_comparisons(table), ""] if table.comparisons else []
    return "\n".join(lines)


def markdown_table(table: Table) -> list[str]:
    """One row per method, one column per language ("mean ± std", the mean alone for one seed, – where the method
    has no run), then the mean over the languages the method has, and (where the runs recorded it) the mean gap
    to English; first the English models' own score where the table has it."""
    gaps = any(c.gap is not None for c in table.cells.values())
    header = f"| method | {' | '.join(table.languages)} | mean |" + (" gap to English |" if gaps else "")
    lines = [header, "|---|" + "---:|" * (len(table.languages) + 1 + gaps)]
    if table.english is not None:
        lines.append(f"| {ENGLISH} | " + " | " * len(table.languages) + format_mean_std(table.english.values)
                     + (" | |" if gaps else " |"))
    for method in table.methods:
        cells = [table.cells.get((method, lang)) for lang in table.languages]
        mean = table.method_mean(method)
        row = f"| {method} | " + " | ".join(format_mean_std(c.values) if c else "–" for c in cells) \
            + f" | {'–' if mean is None else f'{mean:.3f}'} |"
        if gaps:
            known = [c.gap for c in cells if c is not None and c.gap is not None]
            row += f" {sum(known) / len(known):.3f} |" if known else " – |"
        lines.append(row)
    return lines


def markdown_comparisons(table: Table) -> list[str]:
    """The paired-bootstrap table: method − baseline per language, its 95% interval, * where it excludes 0."""
    return [f"Differences in {table.metric}, 95% paired bootstrap interval over test examples and seeds "
            f"({table.samples} samples); * the interval excludes 0:", "",
            f"| comparison | {' | '.join(table.languages)} |", "|---|" + "---:|" * len(table.languages),
            *(f"| {c.label} | " + " | ".join(map(_difference_cell, c.differences)) + " |" for c in table.comparisons)]


def _difference_cell(d: Difference | None) -> str:
    if d is None:
        return "n/a"
    return f"{d.observed:+.3f} [{d.low:+.3f}, {d.high:+.3f}]" + ("*" if d.excludes_zero else "")


# CSV

CSV_COLUMNS = ("row", "task", "metric", "language", "method", "baseline", "mean", "std", "seeds", "gap_to_english",
               "difference", "low", "high", "significant")


def csv_text(tables: list[Table]) -> str:
    """One ``mean`` row per task, language and method (mean, std over seeds, their number, the mean gap to English)
    and one ``difference`` row per comparison and language (difference, interval, whether it excludes 0); numbers
    to 6 decimals, a field left empty where it does not apply or is not known."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for t in tables:
        for method in t.methods:
            for lang in t.languages:
                if (cell := t.cells.get((method, lang))) is not None:
                    writer.writerow(["mean", t.task, t.metric, lang, method, "", _fixed(cell.mean), _fixed(cell.std),
                                     len(cell.values), _fixed(cell.gap), "", "", "", ""])
        for c in t.comparisons:
            for lang, d in zip(t.languages, c.differences):
                numbers = ["", "", "", ""] if d is None else [_fixed(d.observed), _fixed(d.low), _fixed(d.high),
                                                             str(d.excludes_zero).lower()]
                writer.writerow(["difference", t.task, t.metric, lang, c.method, c.baseline, "", "", "", "", *numbers])
    return out.getvalue()


def _fixed(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


# LaTeX

_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "−": "$-$", "→": r"$\to$"}


def latex_escape(text: str) -> str:
    """``text`` safe in a LaTeX table cell (``_``, ``&``, ``%`` ... escaped; ``±`` and ``−`` in math mode)."""
    return "".join(_LATEX.get(char, char) for char in text)


def latex(tables: list[Table]) -> str:
    """Each task's table as a booktabs tabular (mean $\\pm$ std), then its comparisons' intervals, $^*$ where the
    interval excludes 0; each preceded by a comment naming the task and the metric."""
    lines = []
    for t in tables:
        rows = [[m, *(format_mean_std(t.cells[m, lang].values) if (m, lang) in t.cells else "–" for lang in
                      t.languages), "–" if t.method_mean(m) is None else f"{t.method_mean(m):.3f}"] for m in t.methods]
        lines += [f"% {t.task}: {t.metric}, mean and sample standard deviation over seeds",
                  *_tabular(["method", *t.languages, "mean"], [[latex_escape(x) for x in row] for row in rows]), ""]
        if t.comparisons:
            lines += [f"% {t.task}: differences in {t.metric}, 95 percent paired bootstrap intervals over test examples "
                      f"and seeds ({t.samples} samples); * the interval excludes 0",
                      *_tabular(["comparison", *t.languages], [[latex_escape(c.label), *map(_latex_difference,
                                                                                            c.differences)]
                                                               for c in t.comparisons]), ""]
    return "\n".join(lines)


def _tabular(header: list[str], rows: list[list[str]]) -> list[str]:
    return [r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
            " & ".join(map(latex_escape, header)) + r" \\", r"\midrule", *(" & ".join(row) + r" \\" for row in rows),
            r"\bottomrule", r"\end{tabular}"]


def _latex_difference(d: Difference | None) -> str:
    if d is None:
        return "n/a"
    return f"${d.observed:+.3f}{'^*' if d.excludes_zero else ''}$ [${d.low:+.3f}$, ${d.high:+.3f}$]"
