"""Task ``wmt23``: English into a high-resource language on the WMT23 general test set (decoders and mT5).

WMT23's English source (``wmt23/sources/generaltest2023.en-<xx>.src.en``, 2,074 segments) is one file
for en-cs, en-he, en-ja, en-ru, en-uk and en-zh, so those references (``refA``) are 7-way parallel:
:func:`read_multiway`. A run translates English into ``--target-lang`` T, one of those six, and is run like
``nusax-mt`` (xlt.data.sets.nusax_mt: its prompt naming both languages and its BLEU/chrF metric): stage 1 learns
English into :func:`stage1_language` (Czech; Russian when T is Czech), stage 2 adapts it to English into T.

WMT23 has no training split, so the segments are split once by :func:`xlt.data.examples.heldout_split`
(``TEST_FRACTION`` held out with ``SPLIT_SEED``; the same rows for every language): 1,037 segments train
stage 1 and stage 2, the other 1,037 are the test set of both. Segments of one document can fall on both sides,
as WMT23 gives no document ids: the split keeps every test *translation* unseen, not every test topic.
en-de (a separate, document-level source) and the into-English pairs are not parallel with the others and
are not read.
"""

from __future__ import annotations

from pathlib import Path

from xlt.data.examples import GenExample, GenTaskData, heldout_split
from xlt.data.formats.lines import read_lines
from xlt.data.prompts import TRANSLATION_TEMPLATE as TEMPLATE
from xlt.data.prompts import translation_prompt as prompt
from xlt.errors import XltError
from xlt.languages import canonical_code, dataset_name

TARGETS = ("cs", "he", "ja", "ru", "uk", "zh")
TEST_FRACTION = 0.5
SPLIT_SEED = 2023


def read_multiway(root: Path, langs: list[str]) -> dict[str, list[str]]:
    """Canonical code -> segments for ``langs`` (codes of ``en`` and TARGETS), row k the same segment."""
    folder = root / "wmt23"
    out: dict[str, list[str]] = {}
    for lang in langs:
        code = canonical_code(lang)
        if code == "en":  # the English source of every en-xx pair: the same file, read from the first pair
            out[code] = read_lines(folder / "sources" / f"generaltest2023.en-{TARGETS[0]}.src.en")
        else:
            out[code] = read_lines(folder / "references" / f"generaltest2023.en-{code}.ref.refA.{code}")
    lengths = {code: len(rows) for code, rows in out.items()}
    if len(set(lengths.values())) > 1:
        raise XltError(f"misaligned wmt23 files: segments per language {lengths}")
    return out


def split_rows(n: int) -> dict[str, list[int]]:
    """The row indices of the train and test halves (the same for every language and every run)."""
    train, test = heldout_split(n, TEST_FRACTION, SPLIT_SEED)
    return {"train": train, "test": test}


def stage1_language(target: str) -> str:
    """The language stage 1 translates English into: a fixed high-resource pair, as Indonesian is for nusax-mt."""
    return "ru" if canonical_code(target) == "cs" else "cs"


def load(root: Path, target_lang: str, source_lang: str = "en") -> GenTaskData:
    target = canonical_code(dataset_name("wmt23", target_lang))
    if canonical_code(source_lang) != "en":
        raise XltError(f"wmt23 translates English into {', '.join(TARGETS)} (its 7-way parallel pairs); "
                       f"--source-lang must be en, got {source_lang}")
    if target == "en":
        raise XltError(f"wmt23 translates English into another language: --target-lang one of {', '.join(TARGETS)}")
    stage1 = stage1_language(target)
    rows = read_multiway(root, ["en", target, stage1])
    halves = split_rows(len(rows["en"]))

    def examples(indices: list[int], split: str) -> list[GenExample]:
        return [GenExample(prompt(rows["en"][i], "en", target), prompt(rows["en"][i], "en", stage1),
                           rows[target][i], rows[stage1][i], f"{split}-{i}") for i in indices]

    # source_lang of the data is the stage-1 output language, as for nusax-mt
    return GenTaskData("wmt23", stage1, target, examples(halves["train"], "train"), [], examples(halves["test"], "test"),
                       TEMPLATE, TEMPLATE)
