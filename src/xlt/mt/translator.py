"""The translator interface every MT backend implements (:mod:`xlt.mt.seq2seq`, :mod:`xlt.mt.ct2`, :mod:`xlt.mt.lexicon`;
:func:`xlt.mt.factory.load_translator` picks one).

A translator turns sentences of one language into another and says, in ``fingerprint``, everything
that decides its output (model files and decoding settings), so that :mod:`xlt.mt.cache` can reuse a
translation exactly when the same translator would produce it again. Decoding is deterministic
(greedy, or beam search with ``num_beams``; never sampling, whatever the checkpoint's defaults say).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path

SEQ2SEQ_TYPES = ("m2m_100", "marian", "nllb-moe")  # model types whose language tags xlt knows (mt.tags)


class Translator(ABC):
    """``translate(texts, source_lang, target_lang)`` in input order; ``fingerprint`` identifies the output."""

    show_progress: bool = False

    @property
    @abstractmethod
    def fingerprint(self) -> dict: ...

    def check_pair(self, source_lang: str, target_lang: str) -> None:
        """Refuse (``XltError``) a pair this translator cannot do, before any weights load."""

    @abstractmethod
    def translate(self, texts: list[str], source_lang: str, target_lang: str) -> list[str]: ...


def files_digest(folder: str | Path) -> str:
    """A digest of a model folder's file names, sizes and modification times (cheap for any size)."""
    h = hashlib.sha256()
    folder = Path(folder)
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        stat = path.stat()
        h.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def length_order(lengths: list[int]) -> list[int]:
    """Indices longest first (ties in input order), so each batch pads little."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def settings_json(translator: Translator) -> str:
    """The fingerprint as canonical JSON (the part of every cache key that names the translator)."""
    return json.dumps(translator.fingerprint, sort_keys=True, ensure_ascii=False)
