"""Where xlt keeps what it builds on first use (converted and tiny models, stage-1 models)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from xlt.io import building_dir

COMPLETE_MARKER = ".xlt-complete"


def cache_root() -> Path:
    root = os.environ.get("XLT_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "xlt"


def build_once(target: Path, build: Callable[[Path], None], collective: bool = False) -> Path:
    """Build a folder atomically: ``build`` fills a temp dir that is renamed into place when done.

    Under ``accelerate launch`` (several processes of one machine, or a shared cache folder) one
    process builds and publishes while the others wait; with ``collective=True`` (a build that trains,
    so every process must take part) the others run ``build`` too and discard what they wrote.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return _build_once_distributed(Path(target), build, collective)
    return _build_once(Path(target), build)


def _build_once_distributed(target: Path, build: Callable[[Path], None], collective: bool) -> Path:
    from accelerate.utils import broadcast_object_list

    from xlt.processes import processes as run_processes

    processes = run_processes()
    complete = broadcast_object_list([(target / COMPLETE_MARKER).exists()])[0]  # the main process decides
    if complete:
        return target
    if processes.is_main_process:
        _build_once(target, build)
    elif collective:
        with building_dir(target, publish=False) as tmp:
            build(tmp)
    processes.wait_for_everyone()
    return target


def _build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """The single-process build: temp dir, completion marker, rename into place.

    A folder without the completion marker (a crashed build) is rebuilt; a concurrent builder
    that loses the rename race discards its copy. Temp dirs of builds that were killed (their
    process is gone) are removed when the next build starts (:func:`xlt.io.building_dir`).
    """
    if (target / COMPLETE_MARKER).exists():
        return target
    with building_dir(target, complete_marker=COMPLETE_MARKER) as tmp:
        build(tmp)
    return target
