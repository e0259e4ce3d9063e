"""Task ``nusax``: NusaX-Senti sentiment, 12 languages parallel by ``id``.

Reads ``<data_dir>/nusax/sentiment/<language>/{train,valid,test}.csv`` (columns id,text,label).
Every target row's ``source`` is the row with the same id in the source language's folder
(English by default), so each example carries its gold human translation.
"""

from __future__ import annotations

from pathlib import Path

from xlt.data.examples import Example, TaskData
from xlt.data.formats.user_file import read_table
from xlt.errors import XltError
from xlt.languages import canonical_code, dataset_name

LABELS = ("negative", "neutral", "positive")
SPLITS = ("train", "valid", "test")

Rows = dict[str, list[tuple[str, str, str]]]  # split -> [(id, text, label)]


def _path(root: Path, lang: str, split: str) -> Path:
    return root / "nusax" / "sentiment" / dataset_name("nusax", lang) / f"{split}.csv"


def _read_local(root: Path, lang: str) -> Rows:
    out = {}
    for split in SPLITS:
        path = _path(root, lang, split)
        rows = read_table(path, ("id", "text", "label"))
        for row_no, r in enumerate(rows, 1):
            if r["label"] not in LABELS:
                raise XltError(f"{path}: row {row_no} has label {r['label']!r}, expected one of {LABELS}")
        out[split] = [(r["id"], r["text"], r["label"]) for r in rows]
    return out


def _build(target: Rows, source: Rows, where) -> dict[str, list[Example]]:
    """Pair every target row with the source row of the same id; ``where(split)`` names the files."""
    out = {}
    for split in SPLITS:
        src = {i: (text, label) for i, text, label in source[split]}
        examples = []
        for i, text, label in target[split]:
            if i not in src:
                raise XltError(f"misaligned nusax data: id {i!r} has no source row ({where(split)})")
            if src[i][1] != label:
                raise XltError(f"misaligned nusax data: id {i!r} is {label} in the target but "
                               f"{src[i][1]} in the source ({where(split)})")
            examples.append(Example((text,), (src[i][0],), LABELS.index(label), i))
        out[split] = examples
    return out


def load(root: Path, target_lang: str, source_lang: str = "en") -> TaskData:
    """Load NusaX from ``root`` (the data dir)."""
    for lang in (target_lang, source_lang):
        dataset_name("nusax", lang)  # unknown language -> XltError listing NusaX's
    target, source = canonical_code(target_lang), canonical_code(source_lang)
    rows = {lang: _read_local(root, lang) for lang in {target, source}}

    def where(split):
        return f"{_path(root, target, split)} vs {_path(root, source, split)}"

    splits = _build(rows[target], rows[source], where)
    return TaskData("nusax", LABELS, source, target, splits["train"], splits["valid"], splits["test"])
