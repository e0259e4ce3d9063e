"""The ``xlt`` command line. Bad input: one line on stderr and exit code 2, nothing half written."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields

from xlt.errors import XltError

EXIT_BAD_INPUT = 2


def _quiet_libraries() -> None:
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*TRANSFORMERS_CACHE.*")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from xlt.config import RunConfig

    S = argparse.SUPPRESS  # only flags given on the command line override --config
    p.add_argument("--config", help="YAML file with the same keys as the flags (flags win)")
    bools = {f.name for f in fields(RunConfig) if f.type in ("bool", bool)}
    for f in fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name in bools:
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=S)
        else:
            kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
            if "int" in str(f.type):
                kind = int
            elif "float" in str(f.type):
                kind = float
            p.add_argument(flag, dest=f.name, type=kind, default=S)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xlt", description="Parameter-efficient cross-lingual transfer.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="stage 1 (cached) + one stage-2 method; writes metrics.json")
    _add_train_args(train)
    ev = sub.add_parser("evaluate", help="reload a run directory and evaluate it again")
    ev.add_argument("--run-dir", required=True)
    demo = sub.add_parser("demo", help="the whole pipeline on e5-small and NusaX, with a comparison table")
    demo.add_argument("--suite", default="flare", choices=("flare", "alignment"),
                      help="flare: every baseline and FLARE; alignment: lora, lora+align, align, and their merge")
    demo.add_argument("--quick", action="store_true", help="fewer examples and epochs (about 3 minutes)")
    demo.add_argument("--output-dir", help="default: xlt-demo (flare suite) or xlt-demo-alignment")
    demo.add_argument("--seeds", type=int, nargs="+")
    demo.add_argument("--languages", nargs="+")
    demo.add_argument("--model", default="e5-small")
    demo.add_argument("--epochs", type=int, help="stage-2 epochs (default 3; the reference protocol uses 5)")
    demo.add_argument("--data-dir")
    demo.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                      help="bf16 autocast (default: on, as in the reference protocol)")
    from xlt.alignment import merge_cli, retrieval_cli

    retrieval_cli.add_parser(sub)
    merge_cli.add_parser(sub)
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from xlt.config import RunConfig
    from xlt.run import run_stage2

    values = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    cfg = RunConfig.from_yaml(args.config, values) if args.config else RunConfig.from_dict(values)
    metrics = run_stage2(cfg)
    print(json.dumps({k: metrics[k] for k in ("task", "method", "fusion", "target_lang", "seed", "metrics")}))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from xlt.run import differences_line, evaluate_run

    result = evaluate_run(args.run_dir)
    if differences_line(result):
        print(f"xlt: warning: {differences_line(result)}", file=sys.stderr)
    print(json.dumps(result))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import dataclasses

    from xlt.demo import DEFAULT_DEMO_DIRS, FULL, QUICK, run_demo, written_line

    plan = QUICK if args.quick else FULL
    if args.seeds:
        plan = dataclasses.replace(plan, seeds=tuple(args.seeds))
    if args.epochs is not None:
        plan = dataclasses.replace(plan, epochs=args.epochs)
    if args.bf16 is not None:
        plan = dataclasses.replace(plan, bf16=args.bf16)
    if args.languages:
        plan = dataclasses.replace(plan, languages=tuple(args.languages))
    out = args.output_dir or DEFAULT_DEMO_DIRS[args.suite]
    print(run_demo(out, plan, model=args.model, data_dir=args.data_dir, suite=args.suite))
    print(written_line(out))
    return 0


def _cmd_retrieval(args: argparse.Namespace) -> int:
    from xlt.alignment import retrieval_cli

    return retrieval_cli.run(args)


def _cmd_merge(args: argparse.Namespace) -> int:
    from xlt.alignment import merge_cli

    return merge_cli.run(args)


COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "demo": _cmd_demo, "retrieval": _cmd_retrieval,
            "merge": _cmd_merge}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        return COMMANDS[args.command](args)
    except XltError as err:
        print(f"xlt: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
