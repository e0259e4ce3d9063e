"""``xlt report``: finished runs (folders, or folders holding runs) as one table with paired bootstrap intervals."""

from __future__ import annotations

import argparse

from xlt.cli.options import add_option


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="mean ± std over seeds and paired bootstrap differences of finished runs")
    p.add_argument("paths", nargs="+", metavar="RUN_OR_FOLDER", help="run directories, or folders holding them")
    add_option(p, "--samples", type=int, default=1000, help="bootstrap samples")
    add_option(p, "--output", default=None, shown="print only", help="also write the Markdown report to this file")
    return p


def run(args: argparse.Namespace) -> int:
    from xlt.errors import XltError

    if args.samples < 1:
        raise XltError(f"--samples must be >= 1, got {args.samples}")
    from xlt.io import write_text_atomic
    from xlt.runs.report import find_runs, report

    text = report(find_runs(args.paths), samples=args.samples)
    print(text)
    if args.output:
        write_text_atomic(args.output, text + "\n")
    return 0
