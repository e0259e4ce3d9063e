"""``xlt study STUDY.yaml``: every run of a comparison (a list-valued key is an axis), then its report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xlt.cli.options import add_option

EXIT_FAILED_RUNS = 1  # the study ran, but some of its runs failed (bad input is 2, before anything runs)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("study", help="run every cell of a study file (lists are axes), then report")
    p.add_argument("study", metavar="STUDY.yaml", help="RunConfig's keys; a key whose value is a list is an axis")
    add_option(p, "--output-dir", default=None, shown="runs/STUDY (the file's name)",
               help="folder of the study's runs (one folder per cell, named for its axis values)")
    add_option(p, "--workers", type=int, default=1, help="runs at once on this machine, each with cores / workers "
                                                         "torch threads (on SLURM: array tasks at once)")
    add_option(p, "--engine", default="pool", metavar="{pool,submitit}",
               help="pool: a process pool on this machine; submitit: submitit's jobs, here or, with the study "
                    "file's slurm: block, as one SLURM job array (pip install \"xlt[cluster]\")")
    add_option(p, "--dry-run", action="store_true", default=False, help="list the runs and which are done; run none")
    add_option(p, "--samples", type=int, default=1000, help="bootstrap samples of the report")
    return p


def run(args: argparse.Namespace) -> int:
    from xlt.runs.report import find_runs, report
    from xlt.runs.study import run_study

    output_dir = Path(args.output_dir or Path("runs") / Path(args.study).stem)
    lines = run_study(args.study, output_dir, workers=args.workers, dry_run=args.dry_run, engine=args.engine)
    for line in lines:
        print(line, flush=True)
    failed = sum(line.startswith("failed") for line in lines)
    if not args.dry_run and failed < len(lines):
        print(report(find_runs([output_dir]), samples=args.samples))
    if failed:
        print(f"xlt: error: {failed} of the study's runs failed (their lines above say why); the finished ones "
              "stay: run the same command again to run the failed ones", file=sys.stderr)
    return EXIT_FAILED_RUNS if failed else 0
