"""Where xlt keeps what it builds on first use (converted and tiny models, stage-1 models)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from xlt.io import apply_umask, make_temp_dir

COMPLETE_MARKER = ".xlt-complete"


def cache_root() -> Path:
    root = os.environ.get("XLT_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "xlt"


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Build a folder atomically: ``build`` fills a temp dir that is renamed into place when done.

    A folder without the completion marker (a crashed build) is rebuilt; a concurrent builder
    that loses the rename race discards its copy. Temp dirs of builds that were killed (their
    process is gone) are removed when the next build starts (:func:`xlt.io.make_temp_dir`).
    """
    target = Path(target)
    if (target / COMPLETE_MARKER).exists():
        return target
    tmp = make_temp_dir(target)
    try:
        build(tmp)
        (tmp / COMPLETE_MARKER).write_text("ok\n")
        apply_umask(tmp)
        if target.exists() and not (target / COMPLETE_MARKER).exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / COMPLETE_MARKER).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
