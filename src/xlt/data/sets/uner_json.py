"""Task ``uner-json``: UNER PUD named entities written as JSON by a generating model (the alignment paper).

The same sentences, splits and English data as ``uner`` (:mod:`xlt.data.sets.uner`); each sentence
becomes a generation example: the prompt is its words joined by spaces (PUD is tokenized, so
Chinese too reads space-separated), the answer a JSON list of ``{"type": ..., "text": ...}``
objects, one per entity in sentence order (``[]`` for none), the entity text being its words
joined by spaces. Scored by :func:`xlt.scoring.generation.json_ner_metrics`.
"""

from __future__ import annotations

import json
from pathlib import Path

from xlt.data.examples import GenExample, GenTaskData, TagExample, TagTaskData
from xlt.data.prompts import JSON_NER_TYPES, Template, json_ner_template
from xlt.data.sets import uner
from xlt.scoring.entities import entity_spans

TEMPLATE = "json_ner"  # xlt.scoring.generation: the prompt and the metric of this task


def entities_json(tokens: tuple[str, ...] | list[str], tags: tuple[str, ...] | list[str]) -> str:
    """The gold answer: the sentence's entities (IOB2 spans) as a compact JSON list, in order."""
    spans = sorted(entity_spans(list(tags)), key=lambda span: span[1])
    return json.dumps([{"type": kind, "text": " ".join(tokens[start:end])} for kind, start, end in spans],
                      ensure_ascii=False)


def _example(ex: TagExample) -> GenExample:
    source = ex.source_tokens is not None and ex.source_tags is not None
    return GenExample(" ".join(ex.tokens), " ".join(ex.source_tokens) if source else None,
                      entities_json(ex.tokens, ex.tags),
                      entities_json(ex.source_tokens, ex.source_tags) if source else None, ex.id)


def prompt_template(labels: tuple[str, ...]) -> str | Template:
    """The prompt of a set with these tags: uner-json's own where the types are PER, LOC and ORG, else one
    naming the set's types (a custom-ner file's), so the instruction never asks for types never trained."""
    types = tuple(sorted({label[2:] for label in labels if label != "O"}))
    return TEMPLATE if set(types) == set(JSON_NER_TYPES) else json_ner_template(types)


def as_generation(data: TagTaskData, task: str = "uner-json") -> GenTaskData:
    """A tagging set (with its English splits) as JSON-writing generation data."""
    english = None if data.english is None else as_generation(data.english, task)
    return GenTaskData(task, data.source_lang, data.target_lang, [_example(ex) for ex in data.train],
                       [_example(ex) for ex in data.valid], [_example(ex) for ex in data.test],
                       prompt_template(data.labels), TEMPLATE, english=english)


def load(root: Path, target_lang: str, source_lang: str = "en") -> GenTaskData:
    return as_generation(uner.load(root, target_lang, source_lang))
