"""Translations cached on disk, so a grid of runs translates each sentence once.

One sqlite file (``$XLT_CACHE_DIR/translations.sqlite`` unless the user names one) maps a digest of
(translator fingerprint, source language, target language, text) to the translation. Languages
enter by canonical code, so ``ace`` and ``acehnese`` share entries. Several processes may use the
file at once: every write is one sqlite transaction (a concurrent writer waits for the lock), and
entries are only ever added, never changed, so whichever of two identical translations lands first stays.
sqlite's locks do not hold on network filesystems (NFS, SMB, Lustre, ...), where concurrent writers corrupt the
file: a cache there is refused (:func:`check_local_disk`).
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from xlt.errors import XltError
from xlt.languages import canonical_code
from xlt.models.cache import cache_root

CACHE_FILE = "translations.sqlite"
_CHUNK = 500  # keys per query, below sqlite's limit on bound variables
_TIMEOUT_S = 120.0  # how long a writer waits for another process's transaction


# filesystem types (as /proc/self/mountinfo names them) that reach the disk over a network
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "lustre", "gpfs", "beegfs", "glusterfs", "ceph",
    "9p", "fuse.sshfs", "fuse.glusterfs", "fuse.ceph", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone"})
MOUNT_TABLES = ("/proc/self/mountinfo", "/proc/mounts")


def mount_type(mount_table: str, path: str | Path) -> str | None:
    """The filesystem type of the mount holding the absolute ``path``, from a mount table's text
    (/proc/self/mountinfo, or /proc/mounts): the longest mount point that contains it, the last one mounted on
    the same point; names with ``\\040``-style escapes (a space) read as the kernel wrote them. None: no entry."""
    parts = Path(path).parts
    best, best_length = None, -1
    for line in mount_table.splitlines():
        fields = line.split()
        if " - " in line:  # mountinfo: ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - TYPE SOURCE ...
            point, fstype = fields[4], line.split(" - ", 1)[1].split()[0]
        elif len(fields) >= 3:  # /proc/mounts: SOURCE MOUNT_POINT TYPE OPTIONS ...
            point, fstype = fields[1], fields[2]
        else:
            continue
        point_parts = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), point)).parts
        if parts[:len(point_parts)] == point_parts and len(point_parts) >= best_length:
            best, best_length = fstype, len(point_parts)
    return best


def check_local_disk(path: str | Path) -> None:
    """Refuse a translation cache on a network filesystem (Linux: the mount table of this process; elsewhere
    nothing is checked), before sqlite opens it there."""
    for table in MOUNT_TABLES:
        try:
            text = Path(table).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        existing = Path(os.path.abspath(path))
        while not existing.exists() and existing != existing.parent:  # the cache file may not exist yet
            existing = existing.parent
        fstype = mount_type(text, existing.resolve())
        if fstype in NETWORK_FILESYSTEMS:
            raise XltError(f"the translation cache {path} is on a network filesystem ({fstype}), where sqlite's "
                           "locks fail and concurrent runs corrupt it; set XLT_CACHE_DIR (or --translation-cache, "
                           "xlt translate's --cache-file) to a local disk")
        return


def default_cache_path() -> Path:
    return cache_root() / CACHE_FILE


def cache_key(fingerprint: str, source_lang: str, target_lang: str, text: str) -> str:
    """The digest that names one translation (``fingerprint`` as canonical JSON)."""
    h = hashlib.sha256()
    for part in (fingerprint, canonical_code(source_lang), canonical_code(target_lang), text):
        h.update(part.encode("utf-8") + b"\0")
    return h.hexdigest()


class TranslationCache:
    """digest -> translation in one sqlite file."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        check_local_disk(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=_TIMEOUT_S)
            with self._db:
                self._db.execute("CREATE TABLE IF NOT EXISTS translations "
                                 "(key TEXT PRIMARY KEY, translation TEXT NOT NULL)")
        except (OSError, sqlite3.Error) as err:
            raise XltError(f"cannot use translation cache {self.path}: {err}") from None

    def get_many(self, keys: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start:start + _CHUNK]
            rows = self._db.execute(f"SELECT key, translation FROM translations WHERE key IN "
                                    f"({','.join('?' * len(chunk))})", chunk)
            found.update(rows)
        return found

    def put_many(self, items: dict[str, str]) -> None:
        with self._db:  # one transaction
            self._db.executemany("INSERT OR IGNORE INTO translations (key, translation) VALUES (?, ?)",
                                 items.items())

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM translations").fetchone()[0]

    def close(self) -> None:
        self._db.close()


@dataclass(frozen=True)
class CachedTranslation:
    translations: list[str]  # in input order
    hits: int  # input rows answered from the cache
    misses: int  # input rows that were translated now (hits + misses = rows)
    translated: int  # distinct texts sent to the translator


def translate_cached(translator, texts: list[str], source_lang: str, target_lang: str,
                     cache: TranslationCache | None) -> CachedTranslation:
    """Translate ``texts``, asking the translator only for texts the cache lacks (each distinct text once)
    and storing them; ``cache=None`` translates everything and stores nothing."""
    from xlt.mt.translator import settings_json

    texts = list(texts)
    if cache is None:
        unique = list(dict.fromkeys(texts))
        done = dict(zip(unique, translator.translate(unique, source_lang, target_lang)))
        return CachedTranslation([done[t] for t in texts], 0, len(texts), len(unique))
    fingerprint = settings_json(translator)
    keys = [cache_key(fingerprint, source_lang, target_lang, t) for t in texts]
    found = cache.get_many(keys)
    missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in found))
    if missing:
        new = translator.translate(missing, source_lang, target_lang)
        if len(new) != len(missing):
            raise RuntimeError(f"translator returned {len(new)} translations for {len(missing)} texts")
        added = {cache_key(fingerprint, source_lang, target_lang, t): out for t, out in zip(missing, new)}
        cache.put_many(added)
        found.update(added)
    fresh = set(missing)
    hits = sum(t not in fresh for t in texts)
    return CachedTranslation([found[k] for k in keys], hits, len(texts) - hits, len(missing))
