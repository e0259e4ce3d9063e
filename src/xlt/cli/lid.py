"""``xlt lid train``: the language identifier ``xlt predict --run-dirs`` routes by (xlt.lid.train), trained on
NusaX's training splits, its held-out accuracy printed and stored in the file."""

from __future__ import annotations

import argparse
from pathlib import Path

from xlt.cli.options import add_option
from xlt.errors import XltError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("lid", help="train the language identifier that routes xlt predict --run-dirs")
    add_option(p, "action", choices=("train",), help="train: fit the identifier and write --output")
    add_option(p, "--output", required=True, help="the identifier file to write (.npz, about 1.2 MB)")
    add_option(p, "--data-dir", default=None, help="the data sets' folder (holds nusax/)",
               shown="$XLT_DATA_DIR or ../shared/datasets")
    add_option(p, "--langs", nargs="+", default=None, metavar="LANG",
               help="the languages to identify (codes or names)", shown="NusaX's 12")
    add_option(p, "--overwrite", action="store_true", default=False, help="replace an existing --output file")
    return p


def run(args: argparse.Namespace) -> int:
    from xlt.data.paths import resolve_data_dir
    from xlt.lid.train import accuracy_table, check_langs, train_identifier

    output = Path(args.output)
    if output.suffix.lower() != ".npz":
        raise XltError(f"{output}: the identifier is written as .npz, not {output.suffix or '(no suffix)'!r}")
    if output.is_dir() or (output.exists() and not args.overwrite):
        raise XltError(f"{output} exists; choose another --output or pass --overwrite")
    langs = check_langs(args.langs)
    identifier = train_identifier(resolve_data_dir(args.data_dir), langs)
    identifier.save(output)
    print(accuracy_table(identifier))
    print(f"language identifier for {len(langs)} languages written to {output} "
          f"({output.stat().st_size / 1e6:.1f} MB)")
    return 0
