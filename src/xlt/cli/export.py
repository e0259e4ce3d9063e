"""``xlt export``: a finished run as one self-contained folder (English model, adapter, card, tokenizer), and
optionally on the Hugging Face Hub."""

from __future__ import annotations

import argparse
import json

from xlt.cli.options import add_option
from xlt.errors import XltError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("export", help="write a run as one folder that loads anywhere; push it to the Hub")
    add_option(p, "--run-dir", required=True, help="a run directory written by xlt train or xlt merge")
    add_option(p, "--output-dir", required=True,
               help="the folder to write: the run with its own copy of the English model (stage1/)")
    add_option(p, "--overwrite", action="store_true",
               help="replace an earlier export or xlt run in --output-dir (without it, such a folder is refused)")
    add_option(p, "--push-to-hub", default=None, metavar="REPO",
               help="also upload the folder to this Hub model repository (created if missing; token: HF_TOKEN or "
                    "huggingface-cli login)")
    add_option(p, "--private", action="store_true", help="with --push-to-hub: create the repository private")
    return p


def check(args: argparse.Namespace) -> None:
    """Before anything is copied: the repository name, the run and the output folder."""
    if args.private and not args.push_to_hub:
        raise XltError("--private needs --push-to-hub REPO")
    if args.push_to_hub:
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(args.push_to_hub)
        except HFValidationError as err:
            raise XltError(f"--push-to-hub {args.push_to_hub!r} is not a Hub repository id: "
                           f"{str(err).splitlines()[0]}") from None
    from xlt.runs.preflight import check_output_dir, check_sibling_writable

    check_output_dir(args.output_dir)
    check_sibling_writable(args.output_dir)
    from xlt.runs.export import check_export

    check_export(args.run_dir, args.output_dir, args.overwrite)


def run(args: argparse.Namespace) -> int:
    check(args)
    from xlt.runs.export import export_run, push_to_hub

    out = export_run(args.run_dir, args.output_dir, args.overwrite)
    result = {"output_dir": str(out)}
    if args.push_to_hub:
        result["pushed"] = push_to_hub(out, args.push_to_hub, private=args.private or None)
    print(json.dumps(result))
    return 0
