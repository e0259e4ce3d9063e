"""Tasks ``massive`` (slot filling) and ``massive-intent``: MASSIVE 1.1, 23 locales parallel by ``id``.

Reads ``<data_dir>/massive/<locale>.jsonl`` (one JSON object per line with ``id, partition,
intent, utt, annot_utt``). Splits come from ``partition`` (train/dev/test -> train/valid/test).
Slots are generated as text, ``slot: words; slot: words`` or ``None`` (:func:`format_slots`), so the
same decoder-only/mT5 generation code serves every language; words stay in the target language.
Every target example carries the source-language (English) example with the same id.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from xlt.data.examples import GenExample, GenTaskData
from xlt.errors import XltError
from xlt.languages import canonical_code, dataset_name

SPLITS = {"train": "train", "dev": "valid", "test": "test"}  # partition -> GenTaskData field
VARIANTS = {"slots": "massive", "intent": "massive-intent"}  # variant -> task name
NO_SLOTS = "None"

_SLOT = re.compile(r"\[([^\[\]]*)\]")

Row = tuple[str, str, str]  # (partition, utt, answer)


def parse_annot(annot_utt: str) -> list[tuple[str, str]]:
    """``(slot, words)`` for each ``[slot : words]`` in order; words are stripped of surrounding
    spaces but otherwise kept as they appear (the name ends at the first colon, so ``5:30`` survives)."""
    pairs = []
    for inner in _SLOT.findall(annot_utt):
        slot, _, words = inner.partition(":")
        pairs.append((slot.strip(), words.strip()))
    return pairs


def format_slots(pairs: list[tuple[str, str]]) -> str:
    """The generation target: ``slot: words; slot: words``, or ``None`` when there are no slots
    (an explicit word rather than an empty string, so the model always emits something to stop after)."""
    return "; ".join(f"{slot}: {words}" for slot, words in pairs) or NO_SLOTS


def _path(root: Path, lang: str) -> Path:
    return root / "massive" / f"{dataset_name('massive', lang)}.jsonl"


def _read(path: Path, variant: str) -> dict[str, Row]:
    """id -> (partition, utt, answer) for one locale file, in file order."""
    if not path.is_file():
        raise XltError(f"file not found: {path}")
    rows = {}
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                i, part, utt = str(r["id"]), r["partition"], r["utt"]
                answer = r["intent"] if variant == "intent" else format_slots(parse_annot(r["annot_utt"]))
            except (ValueError, KeyError, TypeError) as e:
                raise XltError(f"{path}: line {line_no} is not a MASSIVE record "
                               f"({type(e).__name__}: {e})") from None
            if part not in SPLITS:
                raise XltError(f"{path}: line {line_no} has partition {part!r}, "
                               f"expected one of {tuple(SPLITS)}")
            if i in rows:
                raise XltError(f"{path}: line {line_no} repeats id {i!r}")
            rows[i] = (part, utt, answer)
    return rows


def load(root: Path, target_lang: str, source_lang: str = "en", variant: str = "slots") -> GenTaskData:
    """Load MASSIVE from ``root`` (the data dir) for slot filling (``variant="slots"``) or intent
    detection (``"intent"``), each target example paired with the source example of the same id."""
    if variant not in VARIANTS:
        raise XltError(f"unknown massive variant {variant!r}; known: {', '.join(VARIANTS)}")
    t_path, s_path = _path(root, target_lang), _path(root, source_lang)
    target = _read(t_path, variant)
    source = target if s_path == t_path else _read(s_path, variant)
    missing = [i for i in target if i not in source]
    if missing:
        raise XltError(f"misaligned massive data: {len(missing)} ids of {t_path} are missing from "
                       f"{s_path} (first: {missing[0]!r})")
    splits: dict[str, list[GenExample]] = {name: [] for name in SPLITS.values()}
    for i, (part, utt, answer) in target.items():
        _, s_utt, s_answer = source[i]
        splits[SPLITS[part]].append(GenExample(utt, s_utt, answer, s_answer, i))
    return GenTaskData(VARIANTS[variant], canonical_code(source_lang), canonical_code(target_lang),
                       splits["train"], splits["valid"], splits["test"], template=variant, metric=variant)
