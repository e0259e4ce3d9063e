"""``xlt report --plots DIR``: per task a bar chart of the report's table (languages on x, one bar per method, error
bars the std over seeds) and a heatmap method × language of the difference to ``lora``, drawn from the same
:class:`xlt.runs.report.Table` the text report prints. matplotlib (the ``plots`` extra) is imported only here, only
when plotting, with the Agg backend; the PNGs are written atomically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from xlt.errors import XltError
from xlt.io import atomic_target
from xlt.runs.report import Table

BASELINE = "lora"


@dataclass(frozen=True)
class GapMatrix:
    """Each method but the baseline (rows) × language (columns): its mean minus the baseline's (nan where either
    has no run), and whether the paired bootstrap interval against the baseline excludes 0."""

    methods: tuple[str, ...]
    languages: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]
    significant: tuple[tuple[bool, ...], ...]


def gap_matrix(table: Table, baseline: str = BASELINE) -> GapMatrix | None:
    """What the heatmap draws (None where the table has no ``baseline`` or nothing else)."""
    methods = tuple(m for m in table.methods if m != baseline)
    if baseline not in table.methods or not methods:
        return None
    nan = float("nan")
    values = tuple(tuple(table.cells[m, lang].mean - table.cells[baseline, lang].mean
                         if (m, lang) in table.cells and (baseline, lang) in table.cells else nan
                         for lang in table.languages) for m in methods)
    against = {c.method: c.differences for c in table.comparisons if c.baseline == baseline}
    significant = tuple(tuple(d is not None and d.excludes_zero
                              for d in against.get(m, (None,) * len(table.languages))) for m in methods)
    return GapMatrix(methods, table.languages, values, significant)


def require_matplotlib() -> None:
    """Refuse --plots, before any run is read, where matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise XltError('--plots needs matplotlib: pip install "xlt[plots]"') from None


def write_plots(tables: list[Table], folder: str | Path) -> list[Path]:
    """Per table ``{task}-{metric}.png`` (bars) and, where it has lora, ``{task}-{metric}-vs-lora.png`` (heatmap)."""
    require_matplotlib()
    folder = Path(folder)
    written = []
    for table in tables:
        stem = f"{table.task}-{table.metric}"
        written.append(_save(_bar_chart(table), folder / f"{stem}.png"))
        matrix = gap_matrix(table)
        if matrix is not None:
            written.append(_save(_heatmap(matrix, f"{table.task}: {table.metric} − {BASELINE}"),
                                 folder / f"{stem}-vs-{BASELINE}.png"))
    return written


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg, no pyplot: no global backend state
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    with atomic_target(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path


def _bar_chart(table: Table):
    """Languages on x, one bar per method (its mean over seeds), error bars the std over seeds (none for one)."""
    langs, methods = table.languages, table.methods
    fig = _figure(max(6.0, 1.2 + 0.35 * len(langs) * len(methods)), 4.5)
    ax = fig.add_subplot()
    width = 0.8 / len(methods)
    for k, method in enumerate(methods):
        cells = [table.cells.get((method, lang)) for lang in langs]
        ax.bar([i - 0.4 + (k + 0.5) * width for i in range(len(langs))],
               [c.mean if c else math.nan for c in cells], width, label=method,
               yerr=[(c.std or 0.0) if c else 0.0 for c in cells], capsize=3)
    ax.set_xticks(range(len(langs)), langs)
    ax.set(xlabel="target language", ylabel=table.metric, title=f"{table.task}: {table.metric}, mean ± std over seeds")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _heatmap(matrix: GapMatrix, title: str):
    """The difference of means per cell, annotated; * where the paired interval excludes 0."""
    finite = [abs(v) for row in matrix.values for v in row if not math.isnan(v)]
    bound = max(finite, default=0.0) or 1.0
    fig = _figure(max(4.5, 2.5 + 0.9 * len(matrix.languages)), max(2.5, 1.5 + 0.5 * len(matrix.methods)))
    ax = fig.add_subplot()
    image = ax.imshow(matrix.values, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(len(matrix.languages)), matrix.languages)
    ax.set_yticks(range(len(matrix.methods)), matrix.methods)
    for i, row in enumerate(matrix.values):
        for j, value in enumerate(row):
            if not math.isnan(value):
                ax.text(j, i, f"{value:+.3f}" + ("*" if matrix.significant[i][j] else ""), ha="center",
                        va="center", fontsize=8, color="white" if abs(value) > 0.6 * bound else "black")
    ax.set_title(f"{title}\n(difference of means; * 95% paired bootstrap interval excludes 0)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig
