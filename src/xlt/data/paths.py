"""Where the data sets are read from: ``--data-dir``, $XLT_DATA_DIR, or ``shared/datasets`` beside the
working directory or the checkout."""

from __future__ import annotations

import os
from pathlib import Path

from xlt.errors import XltError

ENV_VAR = "XLT_DATA_DIR"


def _checkout_data_dir() -> Path | None:
    """``shared/datasets`` next to the repo checkout this file lives in (editable installs)."""
    parents = Path(__file__).resolve().parents
    return parents[4] / "shared" / "datasets" if len(parents) > 4 else None


CHECKOUT_DATA_DIR = _checkout_data_dir()


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: ``data_dir``, else $XLT_DATA_DIR, else ``../shared/datasets`` from the
    current directory, else the one beside the repo checkout."""
    for given, what in ((data_dir, "--data-dir"), (os.environ.get(ENV_VAR) or None, f"${ENV_VAR}")):
        if given is not None:
            path = Path(given).expanduser()
            if not path.is_dir():
                raise XltError(f"data directory {path} (from {what}) does not exist")
            return path
    for path in (Path.cwd().parent / "shared" / "datasets", CHECKOUT_DATA_DIR):
        if path is not None and path.is_dir():
            return path.resolve()
    raise XltError(
        f"no data directory found: pass --data-dir DIR or set {ENV_VAR}=DIR, where DIR holds "
        "nusax/, xnli/, massive/, panx/, uner/, mlqa/ or tydiqa-goldp/ (looked in ../shared/datasets and beside the repo checkout)"
    )
