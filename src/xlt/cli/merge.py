"""``xlt merge``: weighted merge of a task LoRA and an alignment LoRA from the command line."""

from __future__ import annotations

import argparse
import json
import math

from xlt.alignment.merge_names import COMBINATIONS
from xlt.cli.options import add_option
from xlt.errors import XltError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("merge", help="merge LoRA adapters by weighted averaging (task adapter first)")
    add_option(p, "--adapters", nargs="+", required=True,
               help="run directories or adapter folders; the first one's task head is kept")
    add_option(p, "--weights", nargs="+", type=float, required=True, help="one weight per adapter, e.g. 0.9 0.1")
    add_option(p, "--output-dir", required=True,
               help="a run directory for `xlt evaluate` when all inputs are runs, else an adapter folder")
    add_option(p, "--overwrite", action="store_true",
               help="replace the earlier merge or xlt run in --output-dir (without it, such a folder is refused)")
    add_option(p, "--combination", default="exact", metavar="{" + ",".join(COMBINATIONS) + "}",
               help="exact: the exact sum at rank Σr; the others are PEFT's add_weighted_adapter types")
    return p


def check(args: argparse.Namespace) -> None:
    """Before any tensor is read: counts, weights, the combination, the output folder (never one of the
    inputs, which merging would delete), the inputs' safetensors headers and adapter configs, and that
    the runs among them share their English (stage-1) model."""
    from xlt.models.loading import check_safetensors
    from xlt.run_dir import ADAPTER_WEIGHTS
    from xlt.runs.preflight import check_output_dir, check_sibling_writable

    if len(args.adapters) < 2:
        raise XltError(f"--adapters needs at least 2 adapters, got {len(args.adapters)}")
    if len(args.weights) != len(args.adapters):
        raise XltError(f"--weights has {len(args.weights)} values for {len(args.adapters)} adapters; give one each")
    if not all(math.isfinite(w) for w in args.weights):
        raise XltError(f"--weights must be finite numbers, got {args.weights}")
    if args.combination not in COMBINATIONS:  # here, not argparse choices: any caller of run() gets an XltError
        raise XltError(f"unknown --combination {args.combination!r}; choose one of: {', '.join(COMBINATIONS)}")
    check_output_dir(args.output_dir)
    check_sibling_writable(args.output_dir)
    from xlt.alignment.merge import adapter_folder, check_output, check_same_english_model, read_adapter_config

    check_output(args.adapters, args.output_dir)

    for adapter in args.adapters:
        check_safetensors(adapter_folder(adapter) / ADAPTER_WEIGHTS)
    for adapter in args.adapters:
        read_adapter_config(adapter_folder(adapter))
    check_same_english_model(args.adapters)


def run(args: argparse.Namespace) -> int:
    check(args)
    from xlt.alignment.merge import is_run_dir, merge_adapters, merge_runs

    merge = merge_runs if all(is_run_dir(a) for a in args.adapters) else merge_adapters
    summary = merge(args.adapters, args.weights, args.output_dir, args.combination,
                    overwrite=getattr(args, "overwrite", False))
    print(json.dumps({k: summary[k] for k in ("combination", "weights", "rank", "modules_merged", "head_source")}))
    return 0
