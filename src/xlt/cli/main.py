"""The ``xlt`` command line: the parser built from the sub-command modules, and errors mapped to exit codes.
Bad input: one line on stderr and exit code 2, nothing half written; so is a write that fails for want of room
(disk full, file size limit). Ctrl-C: "xlt: interrupted", exit code 130.

Each sub-command is one module of this package, named for it, with ``add_parser(subparsers)`` (its flags,
each help line ending with its default or "required") and ``run(args) -> int``. Parsing and ``--help``
import neither torch nor transformers.
"""

from __future__ import annotations

import argparse
import os
import sys

from xlt.cli import compare, demo, evaluate, export, lid, merge, predict, report, retrieval, study, train, translate
from xlt.cli.options import EXIT_BAD_INPUT, EXIT_INTERRUPTED, Parser
from xlt.errors import XltError

SUBCOMMANDS = (train, study, compare, evaluate, predict, export, report, demo, retrieval, merge,
               translate, lid)  # in the order --help lists them
COMMANDS = {module.__name__.rpartition(".")[2]: module for module in SUBCOMMANDS}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="xlt", description="Parameter-efficient cross-lingual transfer.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def _quiet_libraries() -> None:
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*TRANSFORMERS_CACHE.*")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args = build_parser().parse_args(argv)
        _quiet_libraries()
        return COMMANDS[args.command].run(args)
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
