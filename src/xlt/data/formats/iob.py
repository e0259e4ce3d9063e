"""IOB2 files: the two layouts the NER loaders read, checked line by line.

- PAN-X: ``token<TAB>tag`` per line, a blank line between sentences;
- UNER (CoNLL-U-like): ``index<TAB>token<TAB>tag<TAB>...`` per line, ``#`` comment lines (``# sent_id``
  names the sentence), a blank line between sentences.

Both use the tag set :data:`NER_TAGS` (PER, ORG, LOC); a tag outside it is an error naming the file and
line, so a file of another scheme never trains with silently dropped entities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xlt.errors import XltError

NER_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")


@dataclass(frozen=True)
class Sentence:
    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    id: str  # ``# sent_id`` in UNER files, else "<file stem>-<sentence number>"


def _lines(path: Path):
    if not path.is_file():
        raise XltError(f"file not found: {path}")
    try:
        with path.open(encoding="utf-8") as f:
            yield from enumerate((line.rstrip("\r\n") for line in f), 1)
    except UnicodeDecodeError:
        raise XltError(f"{path} is not UTF-8 text") from None


def _check(path: Path, line_no: int, tag: str) -> str:
    if tag not in NER_TAGS:
        raise XltError(f"{path}: line {line_no} has tag {tag!r}, expected one of {', '.join(NER_TAGS)}")
    return tag


def read_sentences(path: str | Path, layout: str) -> list[Sentence]:
    """The sentences of one file in ``layout`` ``"panx"`` or ``"uner"`` (see the module docstring)."""
    path = Path(path)
    token_col, tag_col, columns = {"panx": (0, 1, 2), "uner": (1, 2, 3)}[layout]
    sentences, tokens, tags, sent_id = [], [], [], None

    def close() -> None:
        nonlocal tokens, tags, sent_id
        if tokens:
            sentences.append(Sentence(tuple(tokens), tuple(tags), sent_id or f"{path.stem}-{len(sentences)}"))
        tokens, tags, sent_id = [], [], None

    for line_no, line in _lines(path):
        if not line.strip():
            close()
        elif layout == "uner" and line.startswith("#"):
            key, _, value = line[1:].partition("=")
            if key.strip() == "sent_id":
                sent_id = value.strip()
        else:
            fields = line.split("\t")
            if len(fields) < columns or (layout == "panx" and len(fields) != columns):
                raise XltError(f"{path}: line {line_no} has {len(fields)} tab-separated field(s), expected "
                               f"{'token<TAB>tag' if layout == 'panx' else 'index<TAB>token<TAB>tag...'}")
            tokens.append(fields[token_col])
            tags.append(_check(path, line_no, fields[tag_col]))
    close()
    return sentences
