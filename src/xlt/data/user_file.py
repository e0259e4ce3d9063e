"""Task ``custom``: the user's own parallel classification data, plus the table readers loaders share.

Files are CSV (header row; quoted newlines allowed) or JSON Lines, chosen by suffix
(``.csv`` / ``.jsonl``), with columns ``source_text``, ``target_text``, ``label`` and optionally
``id``. The label set is the distinct train labels, sorted (numerically when all are integers);
a test label outside it is an error. Every train row is trained on (nothing selects a model on a
validation split, so holding rows out would only weaken both models); ``valid`` is empty. Row
numbers in messages count records from 1, header excluded.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from xlt.data.examples import Example, TaskData
from xlt.errors import XltError
from xlt.languages import canonical_code

COLUMNS = ("source_text", "target_text", "label")


def read_table(path: str | Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Records of a .csv or .jsonl file as str -> str dicts; names the file/column/row on errors."""
    path = Path(path)
    if not path.is_file():
        raise XltError(f"file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                columns = ", ".join(header) or "none"
                raise XltError(f"{path}: missing column {missing[0]!r} (columns: {columns})")
            return [{k: v or "" for k, v in row.items() if k is not None} for row in reader]
    if suffix == ".jsonl":
        records = []
        with path.open(encoding="utf-8-sig") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise XltError(f"{path}: line {line_no} is not valid JSON ({e.msg})") from None
                if not isinstance(obj, dict):
                    raise XltError(f"{path}: line {line_no} is not a JSON object")
                missing = [c for c in required if c not in obj]
                if missing:
                    raise XltError(f"{path}: line {line_no} has no column {missing[0]!r}")
                records.append({k: "" if v is None else str(v) for k, v in obj.items()})
        return records
    raise XltError(f"{path}: unsupported file type {suffix or '(none)'!r}; use .csv or .jsonl")


def _lang(lang: str) -> str:
    """Canonical code when known; user data may be in any language, so else the lower-cased code."""
    try:
        return canonical_code(lang)
    except XltError:
        code = lang.strip().lower()
        if not code or not code.replace("_", "").replace("-", "").isalnum():
            raise XltError(f"invalid language code {lang!r}") from None
        return code


def _records(path: str | Path) -> list[dict[str, str]]:
    records = read_table(path, COLUMNS)
    if not records:
        raise XltError(f"{path}: no rows")
    for row_no, r in enumerate(records, 1):
        for col in COLUMNS:
            if not r[col].strip():
                raise XltError(f"{path}: row {row_no} has an empty {col}")
    return records


def _label_order(labels: set[str]) -> tuple[str, ...]:
    if all(lab.lstrip("-").isdigit() for lab in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))


def load(train_file, test_file, target_lang: str, source_lang: str = "en") -> TaskData:
    """Load the user's train/test files as a :class:`TaskData`."""
    if train_file is None or test_file is None:
        raise XltError("task custom needs both a train file and a test file (--train-file, --test-file)")
    train_rows, test_rows = _records(train_file), _records(test_file)
    labels = _label_order({r["label"] for r in train_rows})
    if len(labels) < 2:
        raise XltError(f"{train_file}: needs at least 2 distinct labels, found {labels}")
    index = {lab: i for i, lab in enumerate(labels)}

    def to_examples(rows, path):
        out = []
        for row_no, r in enumerate(rows, 1):
            if r["label"] not in index:
                raise XltError(
                    f"{path}: row {row_no} has label {r['label']!r}, not among the labels of "
                    f"{train_file} ({', '.join(labels)})"
                )
            out.append(Example((r["target_text"],), (r["source_text"],), index[r["label"]],
                               r.get("id") or f"{Path(path).stem}-{row_no}"))
        return out

    return TaskData(
        task="custom", labels=labels, source_lang=_lang(source_lang), target_lang=_lang(target_lang),
        train=to_examples(train_rows, train_file), valid=[], test=to_examples(test_rows, test_file),
    )
