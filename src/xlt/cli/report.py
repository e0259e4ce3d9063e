"""``xlt report``: finished runs (folders, or folders holding runs) as one table with paired bootstrap intervals,
as Markdown, CSV or LaTeX, and optionally as plots."""

from __future__ import annotations

import argparse
import sys

from xlt.cli.options import add_option

FORMATS = ("markdown", "csv", "latex")  # xlt.runs.report.FORMATS, named here so --help loads no run code


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="mean ± std over seeds and paired bootstrap differences of finished runs")
    p.add_argument("paths", nargs="+", metavar="RUN_OR_FOLDER", help="run directories, or folders holding them")
    add_option(p, "--samples", type=int, default=1000, help="bootstrap samples")
    add_option(p, "--format", choices=FORMATS, default="markdown",
               help="Markdown tables; CSV, one row per task, language and method (mean, std, seeds, gap to "
                    "English) and one per comparison and language (difference, low, high, significant); or LaTeX "
                    "booktabs tabulars")
    add_option(p, "--output", default=None, shown="print only", help="also write the report to this file")
    add_option(p, "--plots", default=None, metavar="DIR", shown="none",
               help="write per task a bar chart (mean ± std over seeds per language and method) and a heatmap of "
                    "each method's difference to lora into DIR as PNG (needs matplotlib: pip install \"xlt[plots]\")")
    return p


def run(args: argparse.Namespace) -> int:
    from xlt.errors import XltError

    if args.samples < 1:
        raise XltError(f"--samples must be >= 1, got {args.samples}")
    from xlt.io import write_text_atomic
    from xlt.runs.report import build_tables, find_runs, render

    if args.plots:
        from xlt.runs.report_plots import require_matplotlib

        require_matplotlib()
    tables = build_tables(find_runs(args.paths), samples=args.samples)
    text = render(tables, args.format)
    print(text, end="" if text.endswith("\n") else "\n")
    if args.output:
        write_text_atomic(args.output, text if text.endswith("\n") else text + "\n")
    if args.plots:
        from xlt.runs.report_plots import write_plots

        print(f"wrote {', '.join(map(str, write_plots(tables, args.plots)))}", file=sys.stderr)
    return 0
