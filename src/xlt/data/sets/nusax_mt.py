"""Task ``nusax-mt``: machine translation on NusaX's multiway-parallel sentences (decoders and mT5).

A run translates ``--source-lang`` S into ``--target-lang`` T. Cross-lingual transfer for MT is
transfer across the language translated into: stage 1 (the task model of the modular pipeline)
learns to translate S into P (:func:`stage1_language`: Indonesian, NusaX's high-resource language;
English when S is Indonesian), stage 2 adapts it to S -> T. Each example therefore carries two versions of one row:
S -> T (``prompt_target``/``answer``) and S -> P (``prompt_source``/``answer_source``).

The prompt names both languages (``Acehnese: <sentence>`` on one line, ``Indonesian:`` on the
last), so the same instruction template serves every direction and the zero-shot model is asked
for T in words. NusaX ``mt/`` splits: train 500, valid 100, test 400 rows, the same in every language.
"""

from __future__ import annotations

from pathlib import Path

from xlt.data.examples import GenExample, GenTaskData
from xlt.data.prompts import TRANSLATION_TEMPLATE, translation_prompt
from xlt.errors import XltError
from xlt.languages import canonical_code


def stage1_language(source: str) -> str:
    """The language stage 1 translates ``source`` into."""
    return "en" if canonical_code(source) == "id" else "id"


def load(root: Path, target_lang: str, source_lang: str = "en") -> GenTaskData:
    source, target = canonical_code(source_lang), canonical_code(target_lang)
    stage1 = stage1_language(source)
    if source == target:
        raise XltError(f"nusax-mt translates --source-lang into another --target-lang, got {source} -> {target}")
    from xlt.data.parallel import load_parallel  # here: xlt.data.parallel imports the task registry

    splits = {}
    for split in ("train", "valid", "test"):
        rows = load_parallel("nusax-mt", [source, target, stage1], root, split=split)
        splits[split] = [GenExample(translation_prompt(s, source, target), translation_prompt(s, source, stage1), t, p, f"{split}-{i}")
                         for i, (s, t, p) in enumerate(zip(rows[source], rows[target], rows[stage1]))]
    # source_lang of the data is the stage-1 output language: what source_side() turns the examples into
    return GenTaskData("nusax-mt", stage1, target, splits["train"], splits["valid"], splits["test"],
                       TRANSLATION_TEMPLATE, TRANSLATION_TEMPLATE)
