"""Named-entity scoring: entity spans from BIO tags (conlleval/seqeval semantics) and from JSON, micro P/R/F1.

Tags are IOB2 (``B-PER I-PER O``) or IOB1: an entity starts at ``B-X``, or at ``I-X`` that does not
continue an entity of type X; it ends at ``O``, at a ``B-``, or where the type changes. An entity
counts as correct only with the same type and the same span. JSON NER (what a decoder writes) is a
list of ``{"type": ..., "text": ...}`` objects scored as a multiset of (type, text) pairs per
sentence; output that is not such a list counts as no entities and is counted as invalid.
"""

from __future__ import annotations

import json
from collections import Counter


def entity_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """``(type, start, end)`` (end exclusive) of every entity in one sentence's tags."""
    spans, start, kind = [], None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and kind == label and start is not None
        if start is not None and not continues:
            spans.append((kind, start, i))
            start, kind = None, None
        if prefix in ("B", "I") and not continues:
            start, kind = i, label
    return spans


def prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def tagging_metrics(predicted: list[list[str]], gold: list[list[str]]) -> dict[str, float]:
    """Entity-level micro precision/recall/F1 over sentences of BIO tags."""
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predicted sentences for {len(gold)} gold ones")
    correct = n_pred = n_gold = 0
    for p, g in zip(predicted, gold):
        if len(p) != len(g):
            raise ValueError(f"a sentence has {len(p)} predicted tags for {len(g)} words")
        ps, gs = set(entity_spans(p)), set(entity_spans(g))
        correct, n_pred, n_gold = correct + len(ps & gs), n_pred + len(ps), n_gold + len(gs)
    return prf(correct, n_pred, n_gold)


def parse_json_entities(output: str) -> list[tuple[str, str]] | None:
    """(type, text) pairs of a JSON list of ``{"type", "text"}`` objects; None if the output is not one."""
    try:
        value = json.loads(output)
    except (ValueError, TypeError):
        return None
    if not isinstance(value, list):
        return None
    pairs = []
    for item in value:
        if not (isinstance(item, dict) and isinstance(item.get("type"), str) and isinstance(item.get("text"), str)):
            return None
        pairs.append((item["type"].strip(), " ".join(item["text"].split())))
    return pairs


def json_entity_metrics(outputs: list[str], gold: list[list[tuple[str, str]]]) -> dict[str, float]:
    """Micro P/R/F1 over (type, text) multisets per sentence, plus the number of invalid outputs."""
    if len(outputs) != len(gold):
        raise ValueError(f"{len(outputs)} outputs for {len(gold)} sentences")
    correct = n_pred = n_gold = invalid = 0
    for output, g in zip(outputs, gold):
        pairs = parse_json_entities(output)
        if pairs is None:
            invalid, pairs = invalid + 1, []
        p, gc = Counter(pairs), Counter(g)
        correct, n_pred, n_gold = correct + sum((p & gc).values()), n_pred + len(pairs), n_gold + len(g)
    return {**prf(correct, n_pred, n_gold), "invalid_outputs": invalid}
