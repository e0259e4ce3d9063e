"""Task ``custom-mt``: the user's own sentence pairs as machine translation (decoders and mT5), run like ``nusax-mt``.

CSV or JSON Lines (``--train-file``, ``--test-file``; read by xlt.data.formats.user_file) with ``source_text`` (in
``--source-lang``), ``target_text`` (in ``--target-lang``) and optionally ``id``. A run translates the
source language into the target with nusax-mt's prompt (both languages named, xlt.data.prompts.translation_prompt) and
metric (sacreBLEU BLEU and chrF, their signatures in metrics.json).

Stage 1: nusax-mt's stage 1 translates into another language of its multiway set; a user's file has only
its two, so stage 1 learns the other direction of the same train pairs, target into source (the task model
of the source language, which is what ``source_lang`` names in every task), is tested on the test pairs in
that direction, and stage 2 adapts it to translate into the target. Transfer stays transfer across the
language translated into, and no model trains on a test row. Each example's source version is therefore
the reversed pair, whose input is the gold answer: methods that read it are refused (its row in
xlt.data.registry says translation=True).
"""

from __future__ import annotations

from pathlib import Path

from xlt.data.examples import GenExample, GenTaskData
from xlt.data.formats.user_file import canonical_lang, check_files, read_rows, row_id
from xlt.data.prompts import TRANSLATION_TEMPLATE as TEMPLATE
from xlt.data.prompts import translation_prompt as prompt
from xlt.errors import XltError

COLUMNS = ("source_text", "target_text")


def read_custom_mt(path: str | Path) -> list[dict[str, str]]:
    """The sentence pairs of one custom-mt file, checked (xlt.data.formats.user_file.read_rows)."""
    return read_rows(path, COLUMNS, "custom-mt")


def _examples(path, source: str, target: str) -> list[GenExample]:
    """source -> target (what stage 2 learns and is scored on) and target -> source (stage 1) of each pair."""
    return [GenExample(prompt(r["source_text"], source, target), prompt(r["target_text"], target, source),
                       r["target_text"], r["source_text"], row_id(r.get("id"), row_no))
            for row_no, r in enumerate(read_custom_mt(path), 1)]


def load(train_file, test_file, target_lang: str, source_lang: str = "en") -> GenTaskData:
    check_files("custom-mt", train_file, test_file)
    source, target = canonical_lang(source_lang), canonical_lang(target_lang)
    if source == target:
        raise XltError(f"custom-mt translates --source-lang into another --target-lang, got {source} -> {target}")
    # source_lang of the data is the stage-1 output language, as for nusax-mt: here the source language itself
    return GenTaskData("custom-mt", source, target, _examples(train_file, source, target), [],
                       _examples(test_file, source, target), TEMPLATE, TEMPLATE)
