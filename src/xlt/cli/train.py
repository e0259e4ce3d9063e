"""``xlt train``: stage 1 (cached) and one stage-2 method; its flags are generated from ``RunConfig``'s fields."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from xlt.cli.options import add_option

SKIPPED = ("command", "config", "overwrite")  # parsed values that are not RunConfig fields


def _task_list() -> str:
    """The tasks (--task) and methods (--method) with their one-line descriptions, from the task table
    (xlt.data.registry) and the method table (xlt.methods.table)."""
    from xlt.data.registry import TASKS
    from xlt.methods.table import METHODS

    width = max(map(len, [*TASKS, *METHODS]))
    tasks = "\n".join(f"  {name:<{width}}  {spec.description}" for name, spec in TASKS.items())
    methods = "\n".join(f"  {name:<{width}}  {method.description}" for name, method in METHODS.items())
    return f"tasks:\n{tasks}\n\nmethods:\n{methods}"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="stage 1 (cached) + one stage-2 method; writes metrics.json",
                              epilog=_task_list(), formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_run_flags(p)


def add_run_flags(p: argparse.ArgumentParser, leave_out: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """One flag per RunConfig field, and ``--config`` and ``--overwrite`` (but those in ``leave_out``): type from
    the annotation, choices and help from the field's metadata; xlt train's flags, and xlt compare's."""
    from xlt.config import FIELD_TYPES, RunConfig, field_choices, shown_default

    S = argparse.SUPPRESS  # only flags given on the command line override --config
    add_option(p, "--config", help="YAML file with the same keys as the flags (flags win)", shown="none")
    if "overwrite" not in leave_out:
        add_option(p, "--overwrite", action="store_true", default=S, shown="off",
                   help="replace the finished xlt run in --output-dir (without it, such a folder is refused)")
    for f in fields(RunConfig):
        if f.name in leave_out:
            continue
        kind, _ = FIELD_TYPES[f.name]
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            kwargs = {"action": argparse.BooleanOptionalAction}
        else:
            kwargs = {"type": kind, "choices": field_choices(f)}  # --task: the task table as it is now
        if f.metadata.get("many"):  # --report-to tensorboard wandb: RunConfig joins the names
            kwargs.update(nargs="+", metavar="NAME")
        add_option(p, flag, dest=f.name, default=S, help=f.metadata.get("help", ""), shown=shown_default(f),
                   **kwargs)
    return p


def run(args: argparse.Namespace) -> int:
    from xlt.config import RunConfig
    from xlt.run_dir import output_dir_for
    from xlt.runs.preflight import check_run

    values = {k: v for k, v in vars(args).items() if k not in SKIPPED}
    cfg = RunConfig.from_yaml(args.config, values) if args.config else RunConfig.from_dict(values)
    cfg = cfg.replace(output_dir=str(output_dir_for(cfg)))  # without --output-dir: a new folder under runs/
    overwrite = getattr(args, "overwrite", False)
    check_run(cfg, overwrite)
    from xlt.runs.stage2 import run_stage2
    from xlt.training.loop import bf16_is_native

    if cfg.bf16 and not bf16_is_native():
        print("xlt: warning: --bf16 on hardware without native bf16 (no CUDA bf16, no AVX512-BF16/AMX): "
              "PyTorch emulates it, many times slower than fp32", file=sys.stderr)

    metrics = run_stage2(cfg, overwrite=overwrite)
    print(json.dumps({**{k: metrics[k] for k in ("task", "method", "fusion", "target_lang", "seed", "metrics")},
                      "run_dir": cfg.output_dir}))
    return 0
