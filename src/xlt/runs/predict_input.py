"""``xlt predict``'s input, torch-free so the command line checks it before any model loads: the user's rows (a
``.txt`` of one text per line, a ``.csv`` or a ``.jsonl``) read as plain dicts, the columns each task kind reads
(named as in the task's user files: ``target_text``/``source_text``; extractive QA ``target_question``/
``target_context`` and their ``source_*``; tagging ``target_tokens`` or white-space split ``target_text``), whether
every row carries the English side the run's method reads, and the output path.

Rows become examples of the run's kind in :mod:`xlt.runs.predict`, once the task's data says which.
"""

from __future__ import annotations

from pathlib import Path

from xlt.data.formats.user_file import check_is_file, jsonl_objects, read_table, read_text
from xlt.errors import XltError, echo

INPUT_SUFFIXES = (".txt", ".csv", ".jsonl")
OUTPUT_SUFFIXES = (".jsonl", ".csv")
# per task kind (xlt.data.registry's TaskSpec.kind): the target columns a row must have, and the English side
# the methods that read it take from the row: (target column, its English column), every pair needed
TARGET_COLUMNS = {"classification": ("target_text",), "generation": ("target_text",),
                  "tagging": ("target_text",), "extractive-qa": ("target_question", "target_context")}
ALIASES = {"question": "target_question", "context": "target_context", "text": "target_text"}
PAIR_COLUMN = "target_text_pair"  # sentence-pair classification (xnli): the second segment


def source_column(column: str) -> str:
    """The English column of a target column (``target_text`` -> ``source_text``)."""
    return "source_" + column.removeprefix("target_")


def check_input_path(path: str | Path) -> Path:
    path = check_is_file(path)
    if path.suffix.lower() not in INPUT_SUFFIXES:
        raise XltError(f"{path}: unsupported input type {path.suffix or '(none)'!r}; use .txt (one text per line), "
                       ".csv or .jsonl")
    return path


def check_output_path(path: str | Path, overwrite: bool, kind: str | None = None) -> Path:
    """The output file: .jsonl (or .csv for classification), not an existing file unless ``overwrite``, never a
    folder."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES or (suffix == ".csv" and kind not in (None, "classification")):
        allowed = ".jsonl or .csv" if kind in (None, "classification") else ".jsonl"
        raise XltError(f"{path}: predictions are written as {allowed}, not {suffix or '(no suffix)'!r}")
    if path.is_dir():
        raise XltError(f"{path} is a directory, not an output file")
    if path.exists() and not overwrite:
        raise XltError(f"{path} exists; choose another --output or pass --overwrite")
    return path


def read_input(path: str | Path, kind: str) -> list[dict]:
    """The rows of ``path`` with the columns ``kind`` reads checked (aliases ``text``, ``question``, ``context``
    renamed); a .txt line (blank lines skipped) is one ``target_text``. An empty file is refused."""
    path = check_input_path(path)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        if kind == "extractive-qa":
            raise XltError(f"{path}: a question needs its paragraph; give extractive QA rows as .csv or .jsonl with "
                           "target_question and target_context")
        rows = [{"target_text": line.strip()} for line in read_text(path).splitlines() if line.strip()]
    elif suffix == ".csv":
        rows = read_table(path, ())
    else:
        rows = [obj for _, obj in jsonl_objects(path, read_text(path))]
    if not rows:
        raise XltError(f"{path}: no rows to predict")
    check_rows(rows, kind, str(path))
    return rows


def check_rows(rows: list[dict], kind: str, where: str) -> None:
    """Each row holds the target columns ``kind`` reads (aliases ``text``, ``question``, ``context`` renamed in
    place); ``where`` names the input in messages."""
    for number, row in enumerate(rows, 1):
        for alias, column in ALIASES.items():
            if alias in row and column not in row:
                row[column] = row.pop(alias)
        _check_row(where, number, row, kind)


def _check_row(where: str, number: int, row: dict, kind: str) -> None:
    needed = TARGET_COLUMNS[kind]
    if kind == "tagging" and isinstance(row.get("target_tokens"), list):
        needed = ("target_tokens",)
    for column in needed:
        value = row.get(column)
        if column == "target_tokens":
            if not value or not all(isinstance(word, str) for word in value):
                raise XltError(f"{where}: row {number}: target_tokens must be a non-empty list of words")
        elif not isinstance(value, str) or not value.strip():
            raise XltError(f"{where}: row {number} has no {column} ({_columns_line(kind)})")


def _columns_line(kind: str) -> str:
    return f"{kind} reads " + ", ".join(TARGET_COLUMNS[kind]) + (" or target_tokens" if kind == "tagging" else "")


def source_columns(row: dict, kind: str) -> tuple[str, ...]:
    """The English columns ``row`` needs for a method that reads the English side."""
    if kind == "tagging" and isinstance(row.get("target_tokens"), list):
        return ("source_tokens",)
    columns = TARGET_COLUMNS[kind] + ((PAIR_COLUMN,) if row.get(PAIR_COLUMN) else ())
    return tuple(source_column(c) for c in columns)


def has_source(row: dict, kind: str) -> bool:
    return all(row.get(c) for c in source_columns(row, kind))


def check_source(rows: list[dict], kind: str, method: str, translator: str | None) -> None:
    """Methods that read the English side (flare, input-fusion, translate-test, x-mixup) get it from the rows or
    from ``--translator``: a row without it and no translator is refused, naming the columns."""
    if translator is not None:
        return
    lacking = next((n for n, row in enumerate(rows, 1) if not has_source(row, kind)), None)
    if lacking is not None:
        columns = " and ".join(source_columns(rows[lacking - 1], kind))
        raise XltError(f"method {method} reads the English version of each input: row {lacking} has no {columns}; "
                       "add the column or translate with --translator MODEL")


def row_text(row: dict, column: str = "target_text") -> str:
    """A text column's value (a JSON number or other scalar as text); echoed values are cut."""
    value = row.get(column)
    if isinstance(value, (dict, list)):
        raise XltError(f"column {column!r} holds a JSON {type(value).__name__}, not text: {echo(str(value))}")
    return "" if value is None else str(value)
