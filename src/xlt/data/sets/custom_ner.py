"""Task ``custom-ner``: the user's own named-entity sentences (JSON Lines), run like ``uner`` and ``uner-json``.

One sentence per line (``--train-file``, ``--test-file``): ``target_tokens`` (its words), ``target_tags``
(one IOB2 tag per word: ``O``, ``B-TYPE``, ``I-TYPE``, of any entity types), optionally ``source_tokens``
and ``source_tags`` (the same sentence in English with its own words and tags) and ``id``. As in
xlt.data.formats.iob, an ``I-`` that continues no entity is read, not refused (it starts one, xlt.scoring.entities).
The label set is ``O`` and the ``B-``/``I-`` tags of each entity type of the train file (both sides), so a
type seen only in one-word entities still tags longer ones; a test tag of another type is an error.
Encoders tag words (xlt.kinds.tagging); decoders and mT5 write the entities as JSON, as for ``uner-json``
(xlt.data.sets.uner_json.as_generation, converted in xlt.runs.recipe.load_data). Stage 1, the English task model,
trains on the source side of the train file and is tested on that of the test file, so ``xlt train``
needs it on every line (:func:`read_custom_ner` with ``english=True``, from xlt.runs.preflight). Every train
sentence is trained on; ``valid`` is empty. Errors name the file, the line (from 1) and the column.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from xlt.data.examples import TagExample, TagTaskData
from xlt.data.formats.user_file import canonical_lang, check_files, read_jsonl, row_id
from xlt.errors import XltError

REQUIRED = ("target_tokens", "target_tags")
SOURCE = ("source_tokens", "source_tags")
IOB2_TAG = re.compile(r"O|[BI]-\S+")


def _strings(value, where: str, column: str) -> tuple[str, ...]:
    """A non-empty JSON list of non-empty strings (a sentence's words or tags)."""
    if not isinstance(value, list):
        raise XltError(f"{where}: {column} must be a JSON list of strings, got {json.dumps(value)[:60]}")
    if not value:
        raise XltError(f"{where}: {column} is empty (a sentence needs at least one word)")
    for i, item in enumerate(value, 1):
        if not isinstance(item, str) or not item.strip():
            raise XltError(f"{where}: {column} item {i} is {json.dumps(item)[:60]}, not a non-empty string")
    return tuple(value)


def _side(obj: dict, where: str, tokens_column: str, tags_column: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(words, tags) of one side of a line, checked: as many tags as words, each tag IOB2."""
    tokens = _strings(obj[tokens_column], where, tokens_column)
    tags = _strings(obj[tags_column], where, tags_column)
    if len(tags) != len(tokens):
        raise XltError(f"{where}: {tags_column} has {len(tags)} tags for the {len(tokens)} words of {tokens_column}")
    for i, tag in enumerate(tags, 1):
        if not IOB2_TAG.fullmatch(tag):
            raise XltError(f"{where}: {tags_column} item {i} is {tag!r}, not an IOB2 tag (O, B-TYPE or I-TYPE)")
    return tokens, tags


def _lines(path: Path, english: bool) -> list[tuple[int, TagExample]]:
    """(line number, sentence) of each line of one file, checked."""
    rows = []
    for line_no, obj in read_jsonl(path, "custom-ner", REQUIRED):
        where = f"{path}: line {line_no}"
        given = [c for c in SOURCE if c in obj]
        if len(given) == 1:
            raise XltError(f"{where}: the source side needs {' and '.join(SOURCE)} together (found only {given[0]})")
        if english and not given:
            raise XltError(f"{where} has no column {SOURCE[0]!r} (stage 1, the English task model, trains and is "
                           "tested on every line's source side)")
        source = _side(obj, where, *SOURCE) if given else (None, None)
        example = TagExample(*_side(obj, where, *REQUIRED), *source, row_id(obj.get("id"), line_no, "line"))
        rows.append((line_no, example))
    if not rows:
        raise XltError(f"{path}: no rows")
    return rows


def read_custom_ner(path: str | Path, english: bool = False) -> list[TagExample]:
    """The sentences of one custom-ner file, checked line by line; ``english``: every line must carry its
    source side (what stage 1 reads)."""
    return [ex for _, ex in _lines(Path(path), english)]


def _entity_types(tags) -> set[str]:
    return {tag[2:] for tag in tags if tag != "O"}


def _sentence_tags(ex: TagExample) -> tuple[str, ...]:
    return (*ex.tags, *(ex.source_tags or ()))


def tag_set(examples: list[TagExample], path) -> tuple[str, ...]:
    """``O`` and ``B-``/``I-`` of every entity type of ``examples`` (both sides), types sorted."""
    types = sorted(_entity_types(tag for ex in examples for tag in _sentence_tags(ex)))
    if not types:
        raise XltError(f"{path}: no entity tags (every tag is O), nothing to learn")
    return ("O", *(f"{prefix}-{kind}" for kind in types for prefix in "BI"))


def _check_known(rows: list[tuple[int, TagExample]], path, labels: tuple[str, ...], train_file) -> None:
    """Every tag of the test file is a train label: a tagging head has no row for another type."""
    known = set(labels)
    for line_no, ex in rows:
        for column, tags in (("target_tags", ex.tags), ("source_tags", ex.source_tags or ())):
            unknown = next((tag for tag in tags if tag not in known), None)
            if unknown is not None:
                raise XltError(f"{path}: line {line_no}: {column} has tag {unknown!r}, whose type is not among the "
                               f"entity types of {train_file} ({', '.join(sorted(_entity_types(labels)))})")


def load(train_file, test_file, target_lang: str, source_lang: str = "en") -> TagTaskData:
    """The user's train/test files as a :class:`TagTaskData` (stage 1 reads each line's source side)."""
    check_files("custom-ner", train_file, test_file)
    train_rows, test_rows = _lines(Path(train_file), False), _lines(Path(test_file), False)
    train = [ex for _, ex in train_rows]
    labels = tag_set(train, train_file)
    _check_known(test_rows, test_file, labels, train_file)
    return TagTaskData("custom-ner", labels, canonical_lang(source_lang), canonical_lang(target_lang), train, [],
                       [ex for _, ex in test_rows])
