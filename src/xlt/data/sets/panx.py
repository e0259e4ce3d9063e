"""Task ``panx``: PAN-X (WikiANN) named entities, 9 languages, not parallel.

Reads ``<data_dir>/panx/{train,dev}-<xx>.tsv`` (``token<TAB>tag``, xlt.data.formats.iob). The ``test-*.tsv``
files carry words without tags (XTREME withholds the test labels), so xlt tests on the dev files:

- stage 2: ``train`` = ``train-<xx>.tsv``, ``test`` = ``dev-<xx>.tsv``, no ``valid``;
- stage 1 (``TagTaskData.english``): ``train-en.tsv`` (20,000 sentences; cap with
  ``--stage1-max-train-examples``) and ``dev-en.tsv``.

The sentences of one language are not translations of another's, so no example has a source side:
methods that read or fuse the English version of each example are refused (xlt.data.registry).
"""

from __future__ import annotations

from pathlib import Path

from xlt.data.examples import TagExample, TagTaskData
from xlt.data.formats.iob import NER_TAGS, read_sentences
from xlt.errors import XltError
from xlt.languages import canonical_code, dataset_name

SPLIT_FILES = {"train": "train", "test": "dev"}  # xlt split -> file prefix (test-*.tsv has no tags)


def _read(root: Path, lang: str, split: str) -> list[TagExample]:
    path = root / "panx" / f"{SPLIT_FILES[split]}-{dataset_name('panx', lang)}.tsv"
    return [TagExample(s.tokens, s.tags, id=f"{split}-{i}") for i, s in enumerate(read_sentences(path, "panx"))]


def load(root: Path, target_lang: str, source_lang: str = "en") -> TagTaskData:
    """PAN-X for ``target_lang``; the English task model's data comes from the English files."""
    for lang in (target_lang, source_lang):
        dataset_name("panx", lang)  # unknown language -> XltError listing PAN-X's
    target, source = canonical_code(target_lang), canonical_code(source_lang)
    if source != "en":
        raise XltError(f"task panx trains its English model on PAN-X's English files; the source language "
                       f"must be en, not {source}")
    english = TagTaskData("panx", NER_TAGS, "en", "en", _read(root, "en", "train"), [], _read(root, "en", "test"))
    return TagTaskData("panx", NER_TAGS, source, target, _read(root, target, "train"), [],
                       _read(root, target, "test"), english=english)
