"""``xlt evaluate``: rebuild a run directory's model from that directory alone and evaluate it again."""

from __future__ import annotations

import argparse
import json
import sys

from xlt.cli.options import add_option


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("evaluate", help="reload a run directory and evaluate it again")
    add_option(p, "--run-dir", required=True, help="a run directory written by xlt train or xlt merge")
    return p


def run(args: argparse.Namespace) -> int:
    from xlt.runs.preflight import check_run_dir

    check_run_dir(args.run_dir)
    from xlt.runs.evaluate import differences_line, evaluate_run

    result = evaluate_run(args.run_dir)
    if differences_line(result):
        print(f"xlt: warning: {differences_line(result)}", file=sys.stderr)
    print(json.dumps(result))
    return 0
