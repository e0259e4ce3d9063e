"""Where xlt keeps what it builds on first use (converted and tiny models, stage-1 models)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Callable, Iterator

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
    with build_lock(target):
        if (target / COMPLETE_MARKER).exists():  # another process built it while this one waited: reuse it
            return target
        with building_dir(target, complete_marker=COMPLETE_MARKER) as tmp:
            build(tmp)
    return target


@contextlib.contextmanager
def build_lock(target: Path) -> Iterator[None]:
    """One builder per folder: two runs that need the same English model (a study's workers, two shells) must
    not both train it. The second waits, saying so in one line, and then finds the folder built. The lock
    (``filelock``: an OS lock the kernel drops when its holder dies, so a killed build blocks nobody) is a file
    named for the folder's resolved path under ``$XLT_CACHE_DIR/locks``, beside the run folders' locks
    (xlt.run_dir.output_lock), and stays (deleting a lock another process holds open would let two builders in)."""
    from filelock import FileLock, Timeout

    resolved = target.resolve()
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:24]
    path = cache_root() / "locks" / f"build-{re.sub(r'[^A-Za-z0-9+_.-]', '_', resolved.name)[:64]}-{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"xlt: waiting for another process building {target}", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
