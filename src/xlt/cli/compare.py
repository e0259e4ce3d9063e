"""``xlt compare``: a study of the user's own file in one command: every baseline and FLARE over seeds, then the
table with paired bootstrap intervals. The flags are xlt train's, with ``--methods`` and ``--seeds`` for its one
method and seed."""

from __future__ import annotations

import argparse
from pathlib import Path

from xlt.cli.options import add_option

METHODS = ("zero-shot", "translate-test", "lora", "input-fusion", "flare")  # the FLARE paper's comparison
SEEDS = (0, 1, 2)


def add_parser(subparsers) -> argparse.ArgumentParser:
    from xlt.cli.train import add_run_flags

    p = subparsers.add_parser("compare", help="every baseline and FLARE on one task (your file: --task custom "
                                              "--train-file --test-file) over seeds, then the table with intervals")
    add_option(p, "--methods", nargs="+", default=list(METHODS), help="methods to compare")
    add_option(p, "--seeds", nargs="+", type=int, default=list(SEEDS), help="seeds of every method")
    add_option(p, "--output-dir", default=None, shown="runs/compare-NAME (the train file's name, else the task)",
               help="folder of the comparison's runs (one folder per method and seed; finished ones are skipped)")
    add_option(p, "--workers", type=int, default=1, help="runs at once on this machine")
    add_option(p, "--samples", type=int, default=1000, help="bootstrap samples of the report")
    return add_run_flags(p, leave_out=("method", "seed", "output_dir", "overwrite"))  # finished runs are skipped


def run(args: argparse.Namespace) -> int:
    from xlt.config import RunConfig
    from xlt.runs.report import find_runs, report
    from xlt.runs.study import run_cells

    skipped = ("command", "config", "methods", "seeds", "workers", "samples", "output_dir")
    values = {k: v for k, v in vars(args).items() if k not in skipped}
    shared = RunConfig.from_yaml(args.config, values).to_dict() if args.config else values
    shared.pop("method", None), shared.pop("seed", None), shared.pop("output_dir", None)
    name = Path(shared["train_file"]).stem if shared.get("train_file") else shared.get("task", "nusax")
    output_dir = Path(args.output_dir or Path("runs") / f"compare-{name}")
    for line in run_cells(shared, {"method": list(args.methods), "seed": list(args.seeds)}, output_dir,
                          workers=args.workers):
        print(line, flush=True)
    print(report(find_runs([output_dir]), samples=args.samples))
    return 0
