"""Task ``nusax``: NusaX-Senti sentiment, 12 languages parallel by ``id``.

Reads ``<data_dir>/nusax/sentiment/<language>/{train,valid,test}.csv`` (columns id,text,label).
Every target row's ``source`` is the row with the same id in the source language's folder
(English by default), so each example carries its gold human translation.
"""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

from xlt.data.examples import Example, TaskData
from xlt.data.formats.user_file import read_table
from xlt.errors import XltError
from xlt.languages import canonical_code, dataset_name, iso639_3

LABELS = ("negative", "neutral", "positive")
SPLITS = ("train", "valid", "test")
HUB_ID = "indonlp/NusaX-senti"

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


def hub_available() -> bool:
    """Whether the Hub fallback may run: ``datasets`` importable and not offline."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")
    return not offline and find_spec("datasets") is not None


def _read_hub(lang: str) -> Rows:  # UNTESTED: needs network; used only when local files are missing.
    from datasets import load_dataset

    ds = load_dataset(HUB_ID, iso639_3(lang))
    feature = ds["train"].features["label"]
    name = feature.int2str if hasattr(feature, "int2str") else str
    return {
        split: [(str(r["id"]), r["text"], name(r["label"])) for r in ds[hub_split]]
        for split, hub_split in zip(SPLITS, ("train", "validation", "test"))
    }


def load(root: Path | None, target_lang: str, source_lang: str = "en") -> TaskData:
    """Load NusaX from ``root`` (the data dir). When ``root`` is None or lacks the files and
    :func:`hub_available`, load from the Hub instead; otherwise the missing file is the error."""
    for lang in (target_lang, source_lang):
        dataset_name("nusax", lang)  # unknown language -> XltError listing NusaX's
    target, source = canonical_code(target_lang), canonical_code(source_lang)
    langs = {target, source}
    local = root is not None and all(_path(root, g, s).is_file() for g in langs for s in SPLITS)
    if local or not hub_available():
        if root is None:
            raise XltError("no data directory for nusax (pass --data-dir or set XLT_DATA_DIR)")
        rows = {lang: _read_local(root, lang) for lang in langs}

        def where(split):
            return f"{_path(root, target, split)} vs {_path(root, source, split)}"
    else:
        rows = {lang: _read_hub(lang) for lang in langs}

        def where(split):
            return f"{HUB_ID} {iso639_3(target)} vs {iso639_3(source)}, {split}"
    splits = _build(rows[target], rows[source], where)
    return TaskData("nusax", LABELS, source, target, splits["train"], splits["valid"], splits["test"])
