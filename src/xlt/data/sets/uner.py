"""Task ``uner``: Universal NER on the PUD treebanks, 6 languages parallel by position.

Reads ``<data_dir>/uner/<Name>-PUD/<xx>_pud-ud-test.iob2`` (xlt.data.formats.iob): the same 1,000 sentences in
the same order in every language (Chinese has its own sent_ids, so rows pair by position, and the two
files must have as many sentences). PUD has only this one file per language, so:

- stage 2: the 1,000 sentences are split 50/50 by :func:`heldout_split` with ``SPLIT_SEED`` into
  ``train`` (500) and ``test`` (500), the same rows for every language; no ``valid``. Each example
  carries the same sentence in the source language (English PUD by default) with its own tags.
- stage 1 (``TagTaskData.english``): ``train`` = English-EWT dev (2,001 sentences, a different
  English treebank, so the English model never reads a PUD sentence in training), ``test`` = the
  English side of the stage-2 test rows. It is the same for every target language, so all of them
  share one English model.
"""

from __future__ import annotations

from pathlib import Path

from xlt.data.examples import TagExample, TagTaskData, heldout_split
from xlt.data.formats.iob import NER_TAGS, Sentence, read_sentences
from xlt.errors import XltError
from xlt.languages import canonical_code, dataset_name

TEST_FRACTION = 0.5
SPLIT_SEED = 2024
ENGLISH_TRAIN = Path("English-EWT") / "en_ewt-ud-dev.iob2"


def pud_path(root: Path, lang: str) -> Path:
    return root / "uner" / f"{dataset_name('uner', lang)}-PUD" / f"{canonical_code(lang)}_pud-ud-test.iob2"


def _pud(root: Path, lang: str) -> list[Sentence]:
    return read_sentences(pud_path(root, lang), "uner")


def _paired(target: list[Sentence], source: list[Sentence], rows: list[int]) -> list[TagExample]:
    return [TagExample(target[i].tokens, target[i].tags, source[i].tokens, source[i].tags, target[i].id) for i in rows]


def load(root: Path, target_lang: str, source_lang: str = "en") -> TagTaskData:
    """UNER PUD for ``target_lang``, each sentence with its ``source_lang`` version, and the English data."""
    for lang in (target_lang, source_lang):
        dataset_name("uner", lang)  # unknown language -> XltError listing UNER's PUD languages
    target, source = canonical_code(target_lang), canonical_code(source_lang)
    sentences = {lang: _pud(root, lang) for lang in {target, source, "en"}}
    for lang in (target, source):
        if len(sentences[lang]) != len(sentences["en"]):
            raise XltError(f"misaligned uner files: {pud_path(root, lang)} has {len(sentences[lang])} sentences but "
                           f"{pud_path(root, 'en')} has {len(sentences['en'])}")
    train_rows, test_rows = heldout_split(len(sentences["en"]), TEST_FRACTION, SPLIT_SEED)
    english_pud = sentences["en"]
    english_train = [TagExample(s.tokens, s.tags, s.tokens, s.tags, s.id)
                     for s in read_sentences(root / "uner" / ENGLISH_TRAIN, "uner")]
    english = TagTaskData("uner", NER_TAGS, "en", "en", english_train, [],
                          _paired(english_pud, english_pud, test_rows))
    return TagTaskData("uner", NER_TAGS, source, target, _paired(sentences[target], sentences[source], train_rows), [],
                       _paired(sentences[target], sentences[source], test_rows), english=english)
