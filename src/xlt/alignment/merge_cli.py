"""``xlt merge``: weighted merge of a task LoRA and an alignment LoRA from the command line."""

from __future__ import annotations

import argparse
import json
import math

from xlt.errors import XltError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("merge", help="merge LoRA adapters by weighted averaging (task adapter first)")
    p.add_argument("--adapters", nargs="+", required=True,
                   help="run directories or adapter folders; the first one's task head is kept")
    p.add_argument("--weights", nargs="+", type=float, required=True, help="one weight per adapter, e.g. 0.9 0.1")
    p.add_argument("--output-dir", required=True,
                   help="a run directory for `xlt evaluate` when all inputs are runs, else an adapter folder")
    p.add_argument("--combination", default="exact",
                   help="exact (default: exact sum at rank Σr) or a PEFT type: linear, svd, cat, ties, ...")
    return p


def run(args: argparse.Namespace) -> int:
    from xlt.alignment.merge import COMBINATIONS, is_run_dir, merge_adapters, merge_runs

    if len(args.adapters) < 2:
        raise XltError(f"--adapters needs at least 2 adapters, got {len(args.adapters)}")
    if len(args.weights) != len(args.adapters):
        raise XltError(f"--weights has {len(args.weights)} values for {len(args.adapters)} adapters; give one each")
    if not all(math.isfinite(w) for w in args.weights):
        raise XltError(f"--weights must be finite numbers, got {args.weights}")
    if args.combination not in COMBINATIONS:
        raise XltError(f"unknown --combination {args.combination!r}; choose one of: {', '.join(COMBINATIONS)}")
    merge = merge_runs if all(is_run_dir(a) for a in args.adapters) else merge_adapters
    summary = merge(args.adapters, args.weights, args.output_dir, args.combination)
    print(json.dumps({k: summary[k] for k in ("combination", "weights", "rank", "modules_merged", "head_source")}))
    return 0
