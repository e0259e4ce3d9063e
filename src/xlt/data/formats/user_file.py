"""Task ``custom``: the user's own parallel classification data, plus the table readers loaders share.

Files are CSV (header row; quoted newlines allowed) or JSON Lines, chosen by suffix
(``.csv`` / ``.jsonl``), with columns ``source_text``, ``target_text``, ``label`` and optionally
``id``. The label set is the distinct train labels, sorted (numerically when all are integers);
a test label outside it is an error. Every train row is trained on (nothing selects a model on a
validation split, so holding rows out would only weaken both models); ``valid`` is empty. Row
numbers in messages count records from 1, header excluded. Files must be UTF-8; a CSV field may hold up to ``MAX_FIELD_CHARS``
characters; columns the task does not read and whitespace around labels are warned about.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

from xlt.data.examples import Example, TaskData
from xlt.errors import XltError, warn
from xlt.languages import canonical_code

COLUMNS = ("source_text", "target_text", "label")
MAX_FIELD_CHARS = 2**24  # longest CSV field read (16,777,216 characters; Python's csv default stops at 131,072)


def check_is_file(path: str | Path) -> Path:
    """``path``, if it is a file; a folder or nothing there is one line saying which."""
    path = Path(path)
    if path.is_dir():
        raise XltError(f"{path} is a directory, not a data file")
    if not path.is_file():
        raise XltError(f"file not found: {path}")
    return path


def read_table(path: str | Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Records of a .csv or .jsonl file as str -> str dicts; names the file/column/row on errors."""
    path = check_is_file(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv_records(path, read_text(path), required)
    if suffix == ".jsonl":
        return _jsonl_records(path, read_text(path), required)
    raise XltError(f"{path}: unsupported file type {suffix or '(none)'!r}; use .csv or .jsonl")


def read_text(path: Path) -> str:
    """The whole file as text; a byte that is not UTF-8 is an error naming its line, never a traceback."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise XltError(f"cannot read {path}: {err.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = err.object.count(b"\n", 0, err.start) + 1
        raise XltError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} on line {line}); "
                       "save it as UTF-8") from None


def _csv_records(path: Path, text: str, required: tuple[str, ...]) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    records, long_rows = [], []
    previous_limit = csv.field_size_limit(MAX_FIELD_CHARS)  # restored below: the limit is process-wide
    try:
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            columns = ", ".join(header) or "none"
            raise XltError(f"{path}: missing column {missing[0]!r} (columns: {columns})")
        for row in reader:
            if None in row:  # DictReader's key for fields past the header's
                long_rows.append(len(records) + 1)
            records.append({k: v or "" for k, v in row.items() if k is not None})
        if long_rows:
            warn(f"{path}: {len(long_rows)} row(s) have more fields than the header (first: row {long_rows[0]}); "
                 "the extra fields are ignored")
        return records
    except csv.Error as err:
        where = f"row {len(records) + 1}" if reader.fieldnames else "the header"
        if "field limit" in str(err):
            raise XltError(f"{path}: {where} has a field longer than {MAX_FIELD_CHARS:,} characters") from None
        raise XltError(f"{path}: {where} is not valid CSV ({err})") from None
    finally:
        csv.field_size_limit(previous_limit)


def jsonl_objects(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each non-blank line of a JSON Lines text; a line that is not a JSON
    object is an error naming the file and line."""
    for line_no, line in enumerate(text.split("\n"), 1):  # not splitlines: JSON strings may hold U+2028
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise XltError(f"{path}: line {line_no} is not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise XltError(f"{path}: line {line_no} is not a JSON object")
        yield line_no, obj


def read_jsonl(path: str | Path, task: str, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each line of a JSON Lines file of task ``task`` (custom-qa, custom-ner: their
    values are lists and objects, which a CSV cell cannot hold); a missing file, another suffix or a line
    without one of the ``required`` columns is an error."""
    path = check_is_file(path)
    if path.suffix.lower() != ".jsonl":
        raise XltError(f"{path}: task {task} reads JSON Lines (.jsonl), not {path.suffix or '(no suffix)'!r}")
    for line_no, obj in jsonl_objects(path, read_text(path)):
        missing = [c for c in required if c not in obj]
        if missing:
            raise XltError(f"{path}: line {line_no} has no column {missing[0]!r} ({task} needs {', '.join(required)})")
        yield line_no, obj


def _jsonl_records(path: Path, text: str, required: tuple[str, ...]) -> list[dict[str, str]]:
    records = []
    for line_no, obj in jsonl_objects(path, text):
        missing = [c for c in required if c not in obj]
        if missing:
            raise XltError(f"{path}: line {line_no} has no column {missing[0]!r}")
        nested = [c for c in required if isinstance(obj[c], (dict, list))]
        if nested:
            raise XltError(f"{path}: line {line_no}: column {nested[0]!r} holds a JSON "
                           f"{type(obj[nested[0]]).__name__}, not text")
        records.append({k: "" if v is None else str(v) for k, v in obj.items()})
    return records


def canonical_lang(lang: str) -> str:
    """Canonical code when known; user data may be in any language, so else the lower-cased code."""
    try:
        return canonical_code(lang)
    except XltError:
        code = lang.strip().lower()
        if not code or not code.replace("_", "").replace("-", "").isalnum():
            raise XltError(f"invalid language code {lang!r}") from None
        return code


def read_rows(path: str | Path, columns: tuple[str, ...], task: str) -> list[dict[str, str]]:
    """The rows of one file of task ``task``, checked: every column present and non-empty; columns the task
    does not read get a warning."""
    records = read_table(path, columns)
    if not records:
        raise XltError(f"{path}: no rows")
    for row_no, r in enumerate(records, 1):
        for col in columns:
            if not r[col].strip():
                raise XltError(f"{path}: row {row_no} has an empty {col}")
    ignored = sorted({c for r in records for c in r} - set(columns) - {"id"})
    if ignored:
        warn(f"{path}: ignoring column(s) {', '.join(map(repr, ignored))} "
             f"(task {task} reads {', '.join(columns)} and id)")
    return records


def read_records(path: str | Path) -> list[dict[str, str]]:
    """The rows of one custom-task file (:func:`read_rows`), labels stripped: labels with surrounding
    whitespace get a warning (`` positive`` is read as ``positive``, not as a label of its own)."""
    records = read_rows(path, COLUMNS, "custom")
    padded = [r["label"] for r in records if r["label"] != r["label"].strip()]
    if padded:
        warn(f"{path}: {len(padded)} label(s) with surrounding whitespace read without it "
             f"(e.g. {padded[0]!r} as {padded[0].strip()!r})")
        for r in records:
            r["label"] = r["label"].strip()
    return records


def check_files(task: str, train_file, test_file) -> None:
    """A task of the user's files needs both of them."""
    if train_file is None or test_file is None:
        raise XltError(f"task {task} needs both a train file and a test file (--train-file, --test-file)")


def row_id(given, number: int, unit: str = "row") -> str:
    """An example's id: the row's own ``id``, else ``row-N`` (``line-N`` for readers that count lines). Never
    the file's name: ids are part of the examples the stage-1 cache key digests, and a renamed copy of a file
    must find the same English model."""
    return str(given or f"{unit}-{number}")


def _label_order(labels: set[str]) -> tuple[str, ...]:
    if all(lab.lstrip("-").isdigit() for lab in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))


def load(train_file, test_file, target_lang: str, source_lang: str = "en") -> TaskData:
    """Load the user's train/test files as a :class:`TaskData`."""
    check_files("custom", train_file, test_file)
    train_rows, test_rows = read_records(train_file), read_records(test_file)
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
                               row_id(r.get("id"), row_no)))
        return out

    return TaskData(
        task="custom", labels=labels, source_lang=canonical_lang(source_lang),
        target_lang=canonical_lang(target_lang),
        train=to_examples(train_rows, train_file), valid=[], test=to_examples(test_rows, test_file),
    )
