"""``xlt demo``: a suite of runs (every baseline and FLARE, the alignment recipe, or the MT sources) with a
comparison table."""

from __future__ import annotations

import argparse
import dataclasses

from xlt.cli.options import add_option
from xlt.errors import XltError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo", help="the whole pipeline on e5-small and NusaX, with a comparison table")
    add_option(p, "--suite", default="flare", choices=("flare", "alignment", "mt"),
               help="flare: every baseline and FLARE; alignment: lora, lora+align, align, and their merge; "
                    "mt: translate-test, input-fusion and FLARE on gold, pivot and lexicon-MT English")
    add_option(p, "--task", default="nusax", choices=("nusax", "xnli", "uner", "mlqa"),
               help="the task; other than nusax, with --suite flare (languages: xnli de sw ur, uner de ru zh, "
                    "mlqa de es)")
    add_option(p, "--quick", action="store_true", help="fewer examples and epochs (about 3 minutes)")
    add_option(p, "--output-dir", help="where results.jsonl, summary.md and the runs go",
               shown="xlt-demo, xlt-demo-alignment or xlt-demo-mt (by suite)")
    add_option(p, "--seeds", type=int, nargs="+", help="seeds to run", shown="0")
    add_option(p, "--languages", nargs="+", help="target languages", shown="ace bug jv; the task's (--task)")
    add_option(p, "--model", default="e5-small", help="the model (as for xlt train --model)")
    add_option(p, "--epochs", type=int, help="stage-2 epochs (the reference protocol uses 5)", shown="3")
    add_option(p, "--max-train-examples", type=int, help="target training examples per run",
               shown="all 500; 256 for gemma3-270m; 1000 for xnli and mlqa")
    add_option(p, "--max-eval-examples", type=int, help="target test examples per run",
               shown="all 400; 1000 for xnli and mlqa")
    add_option(p, "--data-dir", help="data set folder", shown="$XLT_DATA_DIR, else ../shared/datasets")
    add_option(p, "--bf16", action=argparse.BooleanOptionalAction, default=None,
               help="bf16 autocast", shown="on where the hardware has bf16 (CUDA, AVX512-BF16/AMX CPUs), else off")
    return p


def check(args: argparse.Namespace, output_dir: str) -> None:
    """Before any data or model loads: the numbers, the seeds, the suite and task together, the languages,
    the output folder and the model."""
    from xlt.languages import dataset_name
    from xlt.models.loading import check_model
    from xlt.runs.preflight import check_output_dir
    from xlt.training.limits import MAX_OPTIMIZER_STEPS

    if args.epochs is not None and args.epochs < 1:
        raise XltError(f"--epochs must be >= 1, got {args.epochs}")
    if args.epochs is not None and args.epochs > MAX_OPTIMIZER_STEPS:  # each epoch is at least one step
        raise XltError(f"--epochs must be at most {MAX_OPTIMIZER_STEPS:,} (optimizer steps a run plans), "
                       f"got {args.epochs:,}")
    for flag in ("max_train_examples", "max_eval_examples"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise XltError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    bad_seeds = [s for s in args.seeds or () if not 0 <= s < 2**32]
    if bad_seeds:
        raise XltError(f"--seeds must be in 0 .. 2**32-1, got {bad_seeds[0]}")
    if args.task != "nusax" and args.suite != "flare":
        raise XltError(f"the {args.suite} suite runs NusaX; --task {args.task} runs with --suite flare")
    for lang in args.languages or ():
        dataset_name(args.task, lang)  # a language the task lacks: one line naming those it has
    check_output_dir(output_dir)
    check_model(args.model)


def plan_of(args: argparse.Namespace):
    """The suite's plan for the model, with what the flags change."""
    from xlt.runs.demo import demo_plan

    plan = demo_plan(args.model, args.quick, args.task)
    given = {"seeds": tuple(args.seeds) if args.seeds else None, "epochs": args.epochs, "bf16": args.bf16,
             "languages": tuple(args.languages) if args.languages else None,
             "max_train_examples": args.max_train_examples, "max_eval_examples": args.max_eval_examples}
    return dataclasses.replace(plan, **{name: value for name, value in given.items() if value is not None})


def run(args: argparse.Namespace) -> int:
    from xlt.runs.demo import DEFAULT_DEMO_DIRS, run_demo, written_line

    output_dir = args.output_dir or DEFAULT_DEMO_DIRS[args.suite]
    check(args, output_dir)
    print(run_demo(output_dir, plan_of(args), model=args.model, data_dir=args.data_dir, suite=args.suite))
    print(written_line(output_dir))
    return 0
