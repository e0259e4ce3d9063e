"""Extractive-QA scoring: SQuAD v1.1 exact match and token F1, with MLQA's multilingual normalisation.

An answer is normalised (lower case; punctuation — every Unicode P* character — removed; the
language's articles removed; whitespace collapsed), split into tokens (whitespace; Chinese by
character, as MLQA's mixed segmentation does for CJK text), and scored against every gold answer,
keeping the best. Scores are fractions in [0, 1] (the official scripts print percentages).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter

# MLQA's article lists per language (English is SQuAD's); languages without articles have none
ARTICLES = {
    "en": r"\b(a|an|the)\b",
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    "ar": r"\sال^|ال",
}
_ASCII_PUNCTUATION = set(string.punctuation)  # SQuAD's set (it also holds symbols such as $ and +)
_CJK = re.compile(r"([\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff])")


def normalize_answer(text: str, lang: str = "en") -> str:
    text = "".join(ch for ch in text.lower()
                   if ch not in _ASCII_PUNCTUATION and not unicodedata.category(ch).startswith("P"))
    if lang in ARTICLES:
        text = re.sub(ARTICLES[lang], " ", text)
    return " ".join(text.split())


def answer_tokens(text: str, lang: str = "en") -> list[str]:
    normalized = normalize_answer(text, lang)
    if lang == "zh":  # mixed segmentation: every CJK character is a token, other runs split on spaces
        normalized = _CJK.sub(r" \1 ", normalized)
    return normalized.split()


def exact_match(prediction: str, gold: str, lang: str = "en") -> float:
    return float(answer_tokens(prediction, lang) == answer_tokens(gold, lang))


def token_f1(prediction: str, gold: str, lang: str = "en") -> float:
    pred, ref = answer_tokens(prediction, lang), answer_tokens(gold, lang)
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref:
        return float(pred == ref)  # both empty: 1; one empty: 0
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: list[str], golds: list[list[str]], lang: str = "en") -> dict[str, float]:
    """Mean over questions of the best EM and F1 against any of the question's gold answers."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} questions")
    if not golds:
        return {"exact_match": 0.0, "f1": 0.0}
    em = sum(max(exact_match(p, g, lang) for g in gs) for p, gs in zip(predictions, golds))
    f1 = sum(max(token_f1(p, g, lang) for g in gs) for p, gs in zip(predictions, golds))
    return {"exact_match": em / len(golds), "f1": f1 / len(golds)}
