"""The ``xlt`` command line. Bad input: one line on stderr and exit code 2, nothing half written; so is a
write that fails for want of room (disk full, file size limit). Ctrl-C: "xlt: interrupted", exit code 130.

Every flag's help line ends with its default (or "required"); ``xlt train``'s flags are generated from
``RunConfig``'s fields. Parsing and ``--help`` import neither torch nor transformers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields

from xlt.cli.options import EXIT_BAD_INPUT, EXIT_INTERRUPTED, Parser, add_option
from xlt.errors import XltError

def _quiet_libraries() -> None:
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*TRANSFORMERS_CACHE.*")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field: type from the annotation, choices and help from the field's metadata."""
    from xlt.config import FIELD_TYPES, RunConfig, field_choices, shown_default

    S = argparse.SUPPRESS  # only flags given on the command line override --config
    add_option(p, "--config", help="YAML file with the same keys as the flags (flags win)", shown="none")
    add_option(p, "--overwrite", action="store_true", default=S, shown="off",
               help="replace the finished xlt run in --output-dir (without it, such a folder is refused)")
    for f in fields(RunConfig):
        kind, _ = FIELD_TYPES[f.name]
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            kwargs = {"action": argparse.BooleanOptionalAction}
        else:
            kwargs = {"type": kind, "choices": field_choices(f)}  # --task: the task table as it is now
        add_option(p, flag, dest=f.name, default=S, help=f.metadata.get("help", ""), shown=shown_default(f),
                   **kwargs)


def _add_demo_args(demo: argparse.ArgumentParser) -> None:
    add_option(demo, "--suite", default="flare", choices=("flare", "alignment", "mt"),
               help="flare: every baseline and FLARE; alignment: lora, lora+align, align, and their merge; "
                    "mt: translate-test, input-fusion and FLARE on gold, pivot and lexicon-MT English")
    add_option(demo, "--task", default="nusax", choices=("nusax", "xnli", "uner", "mlqa"),
               help="the task; other than nusax, with --suite flare (languages: xnli de sw ur, uner de ru zh, "
                    "mlqa de es)")
    add_option(demo, "--quick", action="store_true", help="fewer examples and epochs (about 3 minutes)")
    add_option(demo, "--output-dir", help="where results.jsonl, summary.md and the runs go",
               shown="xlt-demo, xlt-demo-alignment or xlt-demo-mt (by suite)")
    add_option(demo, "--seeds", type=int, nargs="+", help="seeds to run", shown="0")
    add_option(demo, "--languages", nargs="+", help="target languages", shown="ace bug jv; the task's (--task)")
    add_option(demo, "--model", default="e5-small", help="the model (as for xlt train --model)")
    add_option(demo, "--epochs", type=int, help="stage-2 epochs (the reference protocol uses 5)", shown="3")
    add_option(demo, "--max-train-examples", type=int, help="target training examples per run",
               shown="all 500; 256 for gemma3-270m; 1000 for xnli and mlqa")
    add_option(demo, "--max-eval-examples", type=int, help="target test examples per run",
               shown="all 400; 1000 for xnli and mlqa")
    add_option(demo, "--data-dir", help="data set folder", shown="$XLT_DATA_DIR, else ../shared/datasets")
    add_option(demo, "--bf16", action=argparse.BooleanOptionalAction, default=None,
               help="bf16 autocast", shown="on where the hardware has bf16 (CUDA, AVX512-BF16/AMX CPUs), else off")


def _task_list() -> str:
    """The tasks (--task) with their one-line descriptions, from the task table (xlt.data.registry)."""
    from xlt.data.registry import TASKS

    width = max(map(len, TASKS))
    return "tasks:\n" + "\n".join(f"  {name:<{width}}  {spec.description}" for name, spec in TASKS.items())


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="xlt", description="Parameter-efficient cross-lingual transfer.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="stage 1 (cached) + one stage-2 method; writes metrics.json",
                           epilog=_task_list(), formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_train_args(train)
    ev = sub.add_parser("evaluate", help="reload a run directory and evaluate it again")
    add_option(ev, "--run-dir", required=True, help="a run directory written by xlt train or xlt merge")
    demo = sub.add_parser("demo", help="the whole pipeline on e5-small and NusaX, with a comparison table")
    _add_demo_args(demo)
    from xlt.cli import merge as merge_cli
    from xlt.cli import retrieval as retrieval_cli

    retrieval_cli.add_parser(sub)
    merge_cli.add_parser(sub)
    from xlt.cli import translate as translate_cli

    translate_cli.add_parser(sub)
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from xlt.config import RunConfig
    from xlt.runs.preflight import check_run

    from xlt.run_dir import output_dir_for

    values = {k: v for k, v in vars(args).items() if k not in ("command", "config", "overwrite")}
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


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from xlt.runs.preflight import check_run_dir

    check_run_dir(args.run_dir)
    from xlt.runs.stage2 import differences_line, evaluate_run

    result = evaluate_run(args.run_dir)
    if differences_line(result):
        print(f"xlt: warning: {differences_line(result)}", file=sys.stderr)
    print(json.dumps(result))
    return 0


def _check_demo(args: argparse.Namespace, output_dir: str) -> None:
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
    from xlt.languages import dataset_name

    for lang in args.languages or ():
        dataset_name(args.task, lang)  # a language the task lacks: one line naming those it has
    check_output_dir(output_dir)
    check_model(args.model)


def _cmd_demo(args: argparse.Namespace) -> int:
    import dataclasses

    from xlt.runs.demo import DEFAULT_DEMO_DIRS, demo_plan, run_demo, written_line

    output_dir = args.output_dir or DEFAULT_DEMO_DIRS[args.suite]
    _check_demo(args, output_dir)
    plan = demo_plan(args.model, args.quick, args.task)
    if args.seeds:
        plan = dataclasses.replace(plan, seeds=tuple(args.seeds))
    if args.epochs is not None:
        plan = dataclasses.replace(plan, epochs=args.epochs)
    if args.bf16 is not None:
        plan = dataclasses.replace(plan, bf16=args.bf16)
    if args.languages:
        plan = dataclasses.replace(plan, languages=tuple(args.languages))
    for cap in ("max_train_examples", "max_eval_examples"):
        if getattr(args, cap) is not None:
            plan = dataclasses.replace(plan, **{cap: getattr(args, cap)})
    print(run_demo(output_dir, plan, model=args.model, data_dir=args.data_dir, suite=args.suite))
    print(written_line(output_dir))
    return 0


def _cmd_retrieval(args: argparse.Namespace) -> int:
    from xlt.cli import retrieval as retrieval_cli

    return retrieval_cli.run(args)


def _cmd_merge(args: argparse.Namespace) -> int:
    from xlt.cli import merge as merge_cli

    return merge_cli.run(args)


def _cmd_translate(args: argparse.Namespace) -> int:
    from xlt.cli import translate as translate_cli

    return translate_cli.run(args)


COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "demo": _cmd_demo, "retrieval": _cmd_retrieval,
            "merge": _cmd_merge, "translate": _cmd_translate}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args = build_parser().parse_args(argv)
        _quiet_libraries()
        return COMMANDS[args.command](args)
    except XltError as err:
        print(f"xlt: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # Ctrl-C: what was being built sits in temp files and folders, removed on the way out
        print("xlt: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # a full disk or a file size limit where no writer named its target
        from xlt.io import WriteFailed, write_failure

        code = write_failure(err)
        if code is None:
            raise
        print(f"xlt: error: {WriteFailed(getattr(err, 'filename', None) or 'a file', code)}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
