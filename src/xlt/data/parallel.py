"""Multiway-parallel sentence sets for the retrieval diagnostic: language -> sentences, row k = same meaning.

Built-in sets, read from the data directory (:func:`xlt.data.paths.resolve_data_dir`):

- ``nusax-mt``: ``nusax/mt/<split>.csv``, 12 languages in column order; splits train/valid/test
  (500/100/400 rows).
- ``xnli``: the premises of ``xnli/<split>-<lang>.tsv``, 15 languages; splits dev/test.
- ``massive``: ``utt`` of ``massive/<locale>.jsonl`` in partition ``split`` (train/dev/test), matched
  by ``id``; only ids present in every requested locale are kept, in numeric id order.
- ``tatoeba``: ``tatoeba/tatoeba.<xxx>-eng.{xxx,eng}``. Not multiway (each pair has its own English
  side), so a call takes English plus exactly one other language; ``split`` is ignored.
- ``wmt23``: the WMT23 general test set's English source and its refA references in cs, he, ja, ru, uk, zh
  (xlt.data.sets.wmt23.read_multiway); splits train/test are task wmt23's halves (1,037 segments each), so
  alignment on ``train`` never sees a segment the task is tested on.

Any other name is a user ``.csv``/``.jsonl`` file with one column per language (header = language
code, so ``id`` is Indonesian; a column with a blank name, like a CSV index, is ignored); ``split``
is ignored.

Keys are canonical codes (:mod:`xlt.languages`) where the table knows the language, else the data
set's own code (``jpn`` for Tatoeba, ``ja`` for MASSIVE ``ja-JP``). ``valid`` and ``dev`` name the
same split. ``max_sentences`` keeps the first N rows.
"""

from __future__ import annotations

import json
from pathlib import Path

from xlt.data.formats.lines import read_lines
from xlt.data.formats.user_file import read_table
from xlt.data.paths import resolve_data_dir
from xlt.errors import XltError
from xlt.languages import canonical_code

Parallel = dict[str, list[str]]
_NOT_MULTIWAY = "tatoeba is not multiway parallel: pass English and exactly one other language (--langs en,jv)"


def _code(name: str) -> str:
    """Canonical code when known, else the set's own code lower-cased (sets hold languages the table lacks)."""
    try:
        return canonical_code(name)
    except XltError:
        return name.strip().lower()


def _pick(what: str, available: dict[str, str], langs: list[str] | None) -> dict[str, str]:
    """Requested languages -> the set's own names, keyed by :func:`_code`; all of them when ``langs`` is None."""
    if langs is None:
        return dict(available)
    aliases = {name.lower(): key for key, name in available.items()} | {key: key for key in available}
    picked = {}
    for lang in langs:
        key = aliases.get(lang.strip().lower()) or aliases.get(_code(lang))
        if key is None:
            raise XltError(f"{what}: no language {lang!r} (available: {', '.join(sorted(available))})")
        if key in picked:
            raise XltError(f"{what}: language {key!r} requested twice ({', '.join(langs)})")
        picked[key] = available[key]
    return picked


def _files(folder: Path, pattern: str) -> list[Path]:
    found = sorted(folder.glob(pattern))
    if not found:
        raise XltError(f"no {pattern} files in {folder}")
    return found


def _split(what: str, split: str, names: dict[str, str]) -> str:
    name = names.get(split.strip().lower())
    if name is None:
        raise XltError(f"{what} has no split {split!r}; choose one of: {', '.join(sorted(set(names.values())))}")
    return name


def _nusax_mt(root: Path, langs, split) -> Parallel:
    split = _split("nusax-mt", split, {"train": "train", "valid": "valid", "dev": "valid", "test": "test"})
    path = root / "nusax" / "mt" / f"{split}.csv"
    rows = read_table(path, ())
    columns = [c for c in (rows[0] if rows else {}) if c.strip()]
    picked = _pick("nusax-mt", {canonical_code(c): c for c in columns}, langs)
    return {code: [r[col] for r in rows] for code, col in picked.items()}


def _xnli(root: Path, langs, split) -> Parallel:
    from xlt.data.sets.xnli import read_tsv

    split = _split("xnli", split, {"dev": "dev", "valid": "dev", "test": "test"})
    files = {p.stem.split("-", 1)[1]: p for p in _files(root / "xnli", f"{split}-*.tsv")}
    picked = _pick("xnli", {_code(lang): lang for lang in files}, langs)
    return {code: [premise for premise, _, _ in read_tsv(files[lang])] for code, lang in picked.items()}


def _massive(root: Path, langs, split) -> Parallel:
    split = _split("massive", split, {"train": "train", "dev": "dev", "valid": "dev", "test": "test"})
    locales = [p.stem for p in _files(root / "massive", "*.jsonl")]
    picked = _pick("massive", {_code(loc.split("-")[0]): loc for loc in locales}, langs)
    utts = {}
    for code, loc in picked.items():
        with (root / "massive" / f"{loc}.jsonl").open(encoding="utf-8") as f:
            rows = (json.loads(line) for line in f if line.strip())
            utts[code] = {r["id"]: r["utt"] for r in rows if r["partition"] == split}
    common = set.intersection(*(set(u) for u in utts.values())) if utts else set()
    ids = sorted(common, key=lambda i: (len(i), i))  # numeric order for digit ids
    return {code: [u[i] for i in ids] for code, u in utts.items()}


def _tatoeba(root: Path, langs, split) -> Parallel:
    folder = root / "tatoeba"
    others = {_code(p.suffix[1:]): p.suffix[1:] for p in _files(folder, "tatoeba.*-eng.*") if p.suffix != ".eng"}
    if langs is None or len(langs) != 2:
        raise XltError(_NOT_MULTIWAY)
    picked = _pick("tatoeba", others | {"en": "eng"}, langs)
    other = [key for key in picked if key != "en"]
    if "en" not in picked or len(other) != 1:
        raise XltError(_NOT_MULTIWAY)
    xxx = picked[other[0]]
    return {key: read_lines(folder / f"tatoeba.{xxx}-eng.{picked[key]}") for key in picked}


def _wmt23(root: Path, langs, split) -> Parallel:
    from xlt.data.sets.wmt23 import TARGETS, read_multiway, split_rows

    split = _split("wmt23", split, {"train": "train", "test": "test"})
    picked = _pick("wmt23", {code: code for code in ("en", *TARGETS)}, langs)
    rows = read_multiway(root, list(picked))
    keep = split_rows(len(next(iter(rows.values()), [])))[split]
    return {code: [sentences[i] for i in keep] for code, sentences in rows.items()}


def _user_file(path: Path, langs) -> Parallel:
    rows = read_table(path, ())
    if not rows:
        raise XltError(f"{path}: no rows")
    columns = {}
    for col in rows[0]:
        if col.strip():
            if _code(col) in columns:
                raise XltError(f"{path}: columns {columns[_code(col)]!r} and {col!r} are the same language")
            columns[_code(col)] = col
    picked = _pick(str(path), columns, langs)
    out = {code: [r.get(col, "") for r in rows] for code, col in picked.items()}
    for code, sentences in out.items():
        for row_no, text in enumerate(sentences, 1):
            if not text.strip():
                raise XltError(f"{path}: row {row_no} has an empty {picked[code]!r}")
    return out


BUILTIN = {"nusax-mt": _nusax_mt, "xnli": _xnli, "massive": _massive, "tatoeba": _tatoeba, "wmt23": _wmt23}


def load_parallel(name_or_path: str, langs: list[str] | None = None, data_dir=None,
                  max_sentences: int | None = None, split: str = "test", min_sentences: int = 1) -> Parallel:
    """Load a parallel set (built-in name or file path) as canonical code -> sentences, all equally long.

    ``min_sentences``: fewer rows (after ``max_sentences``) is an error; retrieval and contrastive
    alignment need 2, a second sentence to tell the right translation from.
    """
    if max_sentences is not None and max_sentences < min_sentences:
        raise XltError(f"max_sentences must be at least {min_sentences}, got {max_sentences}")
    loader = BUILTIN.get(name_or_path.strip().lower())
    if loader is not None:
        out = loader(resolve_data_dir(data_dir), langs, split)
    elif Path(name_or_path).suffix.lower() in (".csv", ".jsonl"):
        out = _user_file(Path(name_or_path), langs)
    else:
        raise XltError(f"unknown parallel set {name_or_path!r}; use one of {', '.join(BUILTIN)} or a .csv/.jsonl file")
    if len(out) < 2:
        raise XltError(f"{name_or_path}: need at least 2 languages, got {', '.join(out) or 'none'}")
    lengths = {code: len(s) for code, s in out.items()}
    if len(set(lengths.values())) != 1:
        raise XltError(f"{name_or_path}: unequal numbers of sentences per language: {lengths}")
    if not next(iter(lengths.values())):
        raise XltError(f"{name_or_path}: no sentences (split {split!r})")
    if max_sentences is not None:
        out = {code: s[:max_sentences] for code, s in out.items()}
    rows = len(next(iter(out.values())))
    if rows < min_sentences:
        raise XltError(f"{name_or_path}: {rows} sentence(s) per language (split {split!r}); "
                       f"need at least {min_sentences}")
    return out
