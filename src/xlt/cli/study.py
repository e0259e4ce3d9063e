"""``xlt study STUDY.yaml``: every run of a comparison (a list-valued key is an axis), then its report."""

from __future__ import annotations

import argparse
from pathlib import Path

from xlt.cli.options import add_option


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("study", help="run every cell of a study file (lists are axes), then report")
    p.add_argument("study", metavar="STUDY.yaml", help="RunConfig's keys; a key whose value is a list is an axis")
    add_option(p, "--output-dir", default=None, shown="runs/STUDY (the file's name)",
               help="folder of the study's runs (one folder per cell, named for its axis values)")
    add_option(p, "--workers", type=int, default=1, help="runs at once on this machine, each with cores / workers "
                                                         "torch threads")
    add_option(p, "--dry-run", action="store_true", default=False, help="list the runs and which are done; run none")
    add_option(p, "--samples", type=int, default=1000, help="bootstrap samples of the report")
    return p


def run(args: argparse.Namespace) -> int:
    from xlt.runs.report import find_runs, report
    from xlt.runs.study import run_study

    output_dir = Path(args.output_dir or Path("runs") / Path(args.study).stem)
    for line in run_study(args.study, output_dir, workers=args.workers, dry_run=args.dry_run):
        print(line, flush=True)
    if not args.dry_run:
        print(report(find_runs([output_dir]), samples=args.samples))
    return 0
