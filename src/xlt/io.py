"""Atomic writes: a result or checkpoint is either complete on disk or absent.

Files and folders get the modes the user's umask gives any other tool (``tempfile`` alone would
make them private; a folder keeps the setgid bit it inherits), and folders are built in temporary
siblings named after their builder (``.NAME.xlt-tmp.HOST.PID.RANDOM``), so the next build can remove
the ones whose builder is gone. Every folder xlt builds goes through :func:`building_dir`. A folder being replaced is moved aside as ``.NAME.xlt-old.HOST.PID.RANDOM``
for the instant of the swap; if its builder died there, the next build puts it back.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import yaml

from xlt.errors import XltError

TEMP_TAG = "xlt-tmp"
OLD_TAG = "xlt-old"  # the folder a swap moved aside (replace_dir)
STALE_SECONDS = 24 * 3600  # a temp dir of another host (whose builder cannot be checked) is stale after this
_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the kernel reports it (Linux >= 4.7)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:  # elsewhere the only way to read it is to set it and put it back
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    return 0o777 & ~current_umask()


def apply_umask(folder: str | Path) -> None:
    """Give every file and folder under ``folder`` the umask's mode; libraries that write privately
    (safetensors makes its files 0600) would otherwise leave finished folders others cannot read."""
    folder = Path(folder)
    files = file_mode()
    for path in folder.rglob("*"):
        if not path.is_symlink():
            chmod_keeping_setgid(path) if path.is_dir() else path.chmod(files)
    chmod_keeping_setgid(folder)


def chmod_keeping_setgid(folder: Path, mode: int | None = None) -> None:
    """``chmod`` a folder to ``mode`` (default: the umask's) without clearing the setgid bit it inherited
    from a setgid parent (which makes files in it belong to the parent's group)."""
    folder.chmod((dir_mode() if mode is None else mode) | (folder.stat().st_mode & stat.S_ISGID))


WRITE_FAILURES = {errno.ENOSPC: "ENOSPC", errno.EFBIG: "EFBIG", errno.EDQUOT: "EDQUOT"}  # disk full, size limit, quota


class WriteFailed(XltError):
    """A write that failed for want of room: one line naming what was being written and the OS error."""

    def __init__(self, target: str | Path, code: int) -> None:
        super().__init__(f"cannot write {target}: {os.strerror(code)} ({WRITE_FAILURES[code]}); nothing was "
                         "written there")
        self.code = code


def write_failure(err: BaseException) -> int | None:
    """The errno of a write that failed for want of room (``WRITE_FAILURES``), else None: an OSError's,
    or the one a library's own error names (safetensors: "I/O error: File too large (os error 27)")."""
    if isinstance(err, WriteFailed):
        return err.code
    code = err.errno if isinstance(err, OSError) else None
    if code is None and not isinstance(err, XltError):
        found = re.search(r"\(os error (\d+)\)", str(err))
        code = int(found[1]) if found else None
    return code if code in WRITE_FAILURES else None


@contextlib.contextmanager
def failed_writes_named(target: str | Path):
    """Turn a write that fails for want of room (disk full, file size limit, quota) into :class:`WriteFailed`
    naming ``target``, the file or the folder being built (the outermost one, where these nest). Whatever
    was half written is in a temporary file or folder, which its writer removes: ``target`` stays as it was."""
    try:
        yield
    except Exception as err:
        code = write_failure(err)
        if code is None:
            raise
        raise WriteFailed(target, code) from None


def write_text_atomic(path: str | Path, text: str) -> None:
    with failed_writes_named(path):
        _write_text_atomic(Path(path), text)


def _write_text_atomic(path: Path, text: str) -> None:
    with atomic_target(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_target(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temp sibling of ``path`` (an ordinary file's mode) for the block to write, renamed onto ``path`` when the
    block ends and removed if it fails, so no reader sees a half-written file (a plot: ``fig.savefig(tmp)``); a
    write that fails for want of room names ``path``."""
    path = Path(path)
    with failed_writes_named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        try:
            os.fchmod(fd, file_mode())  # mkstemp makes it 0600
            os.close(fd)
            yield Path(tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def write_json(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_yaml(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, yaml.safe_dump(obj, sort_keys=False, allow_unicode=True))


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def host_tag() -> str:
    """This machine's name as it appears in temp dir names (a PID means something on its own host only)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def _temp_prefix(target: Path, tag: str = TEMP_TAG) -> str:
    return f".{target.name}.{tag}."


def process_tag() -> str:
    """``HOST.PID`` of this process, as folders name their builder."""
    return f"{host_tag()}.{os.getpid()}"


def make_temp_dir(target: str | Path) -> Path:
    """An empty folder next to ``target`` to build it in, named after this process; stale ones go first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(target)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_temp_prefix(target)}{process_tag()}.", dir=target.parent))
    chmod_keeping_setgid(tmp)  # mkdtemp makes it 0700; the finished folder is an ordinary one
    return tmp


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _builder_gone(entry: Path, host: str | None, pid: int | None, now: float) -> bool:
    """Whether the process that named ``entry`` is gone: checked by PID on this host; elsewhere (or for
    names without a PID) the folder is taken as abandoned once it is older than STALE_SECONDS."""
    if host == host_tag() and pid is not None:
        return not _process_alive(pid)
    try:
        return now - entry.stat().st_mtime > STALE_SECONDS
    except OSError:
        return False


def _named_by(prefix: str) -> re.Pattern:
    """Names ``PREFIX + HOST.PID.RANDOM``."""
    return re.compile(re.escape(prefix) + r"(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+")


def remove_stale_dirs(parent: str | Path, prefix: str) -> list[Path]:
    """Remove the folders ``PREFIX + HOST.PID.RANDOM`` in ``parent`` whose process is gone (a scratch
    folder a killed process could not clean up); returns what was removed."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    named, now, removed = _named_by(prefix), time.time(), []
    for entry in parent.iterdir():
        match = named.fullmatch(entry.name)
        if match and not entry.is_symlink() and entry.is_dir() and \
                _builder_gone(entry, match["host"], int(match["pid"]), now):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def remove_stale_temp_dirs(target: str | Path) -> list[Path]:
    """Clean up after builds of ``target`` that were killed: their temp siblings are removed, and a
    folder a swap had moved aside is put back when ``target`` is missing (the kill came between the two
    renames of :func:`replace_dir`) or removed when the new one made it. Returns what was removed."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    _restore_moved_aside(target)
    legacy = re.compile(re.escape(f".{target.name}.") + r"[a-z0-9_]{8}")  # mkdtemp's name, before PIDs were recorded
    removed = remove_stale_dirs(target.parent, _temp_prefix(target))
    now = time.time()
    for entry in target.parent.iterdir():
        if legacy.fullmatch(entry.name) and not entry.is_symlink() and entry.is_dir() and \
                _builder_gone(entry, None, None, now):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _restore_moved_aside(target: Path) -> None:
    """The folders a killed swap moved aside: the newest goes back in place of a missing ``target``,
    the others (their replacement made it) are removed."""
    named, now = _named_by(_temp_prefix(target, OLD_TAG)), time.time()
    aside = [entry for entry in target.parent.iterdir()
             if (match := named.fullmatch(entry.name)) and not entry.is_symlink() and entry.is_dir()
             and _builder_gone(entry, match["host"], int(match["pid"]), now)]
    for entry in sorted(aside, key=lambda e: e.stat().st_mtime, reverse=True):
        if target.exists() or target.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):  # another process put one back first: leave this one be
                os.rename(entry, target)


def replace_dir(complete: str | Path, target: str | Path) -> None:
    """Put the finished folder ``complete`` in place of ``target``; the old ``target`` is moved aside
    first (one rename) and deleted only once the new one is in place, so ``target`` is always either
    the old folder whole, the new folder whole, or (for the instant between the two renames) absent;
    a process killed in that instant leaves the old folder aside, which the next build of ``target`` puts
    back (:func:`remove_stale_temp_dirs`)."""
    complete, target = Path(complete), Path(target)
    aside = None
    if target.exists() or target.is_symlink():
        aside = target.parent / f"{_temp_prefix(target, OLD_TAG)}{process_tag()}.{secrets.token_hex(4)}"
        os.rename(target, aside)
    try:
        os.rename(complete, target)
    except BaseException:
        if aside is not None:
            os.rename(aside, target)  # put the old folder back
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def building_dir(target: str | Path, *, keep_mode: bool = False, complete_marker: str | None = None,
                 publish: bool = True) -> Iterator[Path]:
    """Build the folder ``target`` whole or not at all: ``with building_dir(target) as tmp:`` fills ``tmp``,
    an empty temp sibling named after this process (:func:`make_temp_dir`: those of killed builders go
    first, those of live ones stay). On a normal exit its files get the umask's modes and it takes
    ``target``'s place in one swap (:func:`replace_dir`); on an exception it is removed and ``target`` stays
    as it was.

    ``keep_mode``: the new folder keeps the group and mode of the ``target`` it replaces (a user's
    ``chmod 2770``; :func:`keep_folder_mode`). ``complete_marker``: a cache folder, complete once it holds
    that file (written last): a ``target`` without it (a crashed build) is replaced, one with it (another
    process published first) is kept and this copy dropped. ``publish=False``: the copy is only built to
    be discarded (a process taking part in a build that another one publishes).
    """
    target = Path(target)
    tmp = make_temp_dir(target)
    try:
        if keep_mode:
            keep_folder_mode(target, tmp)
        yield tmp
        if publish:
            _publish(tmp, target, keep_mode, complete_marker)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, target: Path, keep_mode: bool, complete_marker: str | None) -> None:
    if complete_marker is not None:
        (tmp / complete_marker).write_text("ok\n")
    mode = tmp.stat().st_mode & 0o7777
    apply_umask(tmp)
    if keep_mode:
        tmp.chmod(mode)  # the replaced folder's, kept
    if complete_marker is None:
        replace_dir(tmp, target)
        return
    if target.exists() and not (target / complete_marker).exists():
        shutil.rmtree(target, ignore_errors=True)
    try:
        os.replace(tmp, target)
    except OSError:  # another process published it first: theirs stays
        if not (target / complete_marker).exists():
            raise


def keep_folder_mode(existing: Path, replacement: Path) -> None:
    """Give ``replacement`` the group and mode (setgid bit included) of the folder it will replace (a
    user's ``chmod 2770`` stays), set before anything is written in it so that its files take that group
    too; a new folder keeps the umask's mode. A group this user may not give is left as it is."""
    if not existing.is_dir() or existing.is_symlink():
        return
    status = existing.stat()
    with contextlib.suppress(OSError):
        os.chown(replacement, -1, status.st_gid)
    replacement.chmod(status.st_mode & 0o7777)
