"""Metrics of generation tasks, looked up by name: each takes decoded predictions and gold answers (strings; QA:
each question's tuple of gold answers, and the answers' language) and returns a dict of floats.

Normalization (:func:`normalize`): runs of whitespace become one space, ends are stripped, and text
is case-folded. Generated and gold words are compared only after it, so ``Five  AM`` = ``five am``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial

from xlt.errors import XltError

NO_SLOTS = "none"  # normalized form of an answer without slots ("None", "", "none;" ...)


def normalize(text: str | None) -> str:
    """Whitespace-collapsed, stripped, case-folded text ('' for None)."""
    return " ".join((text or "").split()).casefold()


def parse_slot_output(text: str | None) -> list[tuple[str, str]]:
    """``(slot, words)`` pairs of a generation, normalized; never raises.

    Pairs are split on ``;`` and newlines; empty chunks (trailing ``;``) and ``none`` in any case
    are skipped. A chunk without a colon is kept as ``("", chunk)``: it matches no gold pair, so
    malformed output costs precision instead of vanishing. The slot name ends at the first colon.
    """
    pairs = []
    for chunk in (text or "").replace("\n", ";").split(";"):
        chunk = normalize(chunk)
        if not chunk or chunk == NO_SLOTS:
            continue
        slot, colon, words = chunk.partition(":")
        pairs.append((slot.strip(), words.strip()) if colon else ("", chunk))
    return pairs


def _normalize_answer(text: str | None) -> str:
    """Full-string form for exact match: :func:`normalize`, trailing ``;`` dropped, and every
    empty answer ('', 'None', 'none;') written ``none``."""
    text = normalize(text).rstrip("; ")
    return text or NO_SLOTS


def _check(preds: list[str], golds: list[str]) -> None:
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions for {len(golds)} gold answers")
    if not golds:
        raise ValueError("no examples to score")


def slot_metrics(preds: list[str], golds: list[str]) -> dict:
    """Micro precision/recall/F1 over (slot, words) pairs, counted as multisets per example (a
    pair given twice in the gold must be predicted twice), plus full-string ``exact_match``.

    0/0 ratios (no predicted or no gold pairs at all) are 1.0 when both sides are empty, else 0.0.
    """
    _check(preds, golds)
    tp = n_pred = n_gold = 0
    for pred, gold in zip(preds, golds):
        p, g = Counter(parse_slot_output(pred)), Counter(parse_slot_output(gold))
        tp += sum((p & g).values())
        n_pred += sum(p.values())
        n_gold += sum(g.values())
    empty = float(n_pred == n_gold == 0)
    return {
        "slot_f1": 2 * tp / (n_pred + n_gold) if n_pred + n_gold else empty,
        "slot_precision": tp / n_pred if n_pred else empty,
        "slot_recall": tp / n_gold if n_gold else empty,
        "exact_match": sum(_normalize_answer(p) == _normalize_answer(g)
                           for p, g in zip(preds, golds)) / len(golds),
    }


def intent_metrics(preds: list[str], golds: list[str]) -> dict:
    """Accuracy of the normalized prediction against the gold intent label."""
    _check(preds, golds)
    return {"accuracy": sum(normalize(p) == normalize(g) for p, g in zip(preds, golds)) / len(golds)}


def json_ner_metrics(preds: list[str], golds: list[str]) -> dict:
    """Entity-level micro P/R/F1 over (type, text) pairs and the count of outputs that are not a JSON
    entity list (scored as no entities); the gold answers are JSON written by xlt.data.sets.uner_json."""
    from xlt.scoring.entities import json_entity_metrics, parse_json_entities

    _check(preds, golds)
    gold = [parse_json_entities(g) for g in golds]
    if any(g is None for g in gold):
        raise ValueError("a gold answer is not a JSON entity list")
    return json_entity_metrics([p.strip() for p in preds], gold)


# sacreBLEU's BLEU tokenizer for languages written without spaces, as WMT scores them (13a elsewhere); the
# MeCab ones need a package: the module it provides and what to install
BLEU_TOKENIZERS = {"zh": "zh", "ja": "ja-mecab", "ko": "ko-mecab"}
_TOKENIZER_NEEDS = {"ja-mecab": ("MeCab", "sacrebleu[ja]"), "ko-mecab": ("mecab_ko", "sacrebleu[ko]")}


def bleu_tokenizer(lang: str) -> str:
    """The BLEU tokenizer for references in ``lang`` (a code xlt does not know gets 13a)."""
    from xlt.languages import canonical_code

    try:
        return BLEU_TOKENIZERS.get(canonical_code(lang), "13a")
    except XltError:
        return "13a"


def check_bleu_tokenizer(lang: str) -> None:
    """Refuse, before anything loads, a BLEU whose tokenizer's package is missing (never fall back to 13a)."""
    import importlib.util

    tokenizer = bleu_tokenizer(lang)
    module, package = _TOKENIZER_NEEDS.get(tokenizer, (None, None))
    if module is not None and importlib.util.find_spec(module) is None:
        raise XltError(f"BLEU into {lang} uses sacreBLEU's {tokenizer} tokenizer, which needs {module}: "
                       f"pip install '{package}'")


def translation_metrics(preds: list[str], golds: list[str], lang: str = "en") -> dict:
    """Corpus BLEU and chrF of the stripped outputs against references in ``lang`` (sacreBLEU: 13a tokenization,
    or :data:`BLEU_TOKENIZERS`'s; chrF character 6-grams); their signatures are :func:`translation_signatures`."""
    from sacrebleu.metrics import BLEU, CHRF

    _check(preds, golds)
    hypotheses = [p.strip() for p in preds]
    return {"bleu": BLEU(tokenize=bleu_tokenizer(lang)).corpus_score(hypotheses, [list(golds)]).score,
            "chrf": CHRF().corpus_score(hypotheses, [list(golds)]).score}


def translation_statistics(score: str, lang: str = "en") -> tuple[Callable[[list[str], list[str]], list],
                                                                    Callable[[Sequence[float]], float]]:
    """sacreBLEU's sufficient statistics of corpus ``score`` (``bleu`` or ``chrf``, as :func:`translation_metrics`
    computes it): ``statistics(preds, golds)`` gives one row of counts per sentence, and ``corpus(summed rows)`` the
    corpus score of those sentences. A bootstrap sums the rows of the sentences it draws: the corpus score of the
    drawn hypotheses and references, without tokenizing them again (sacreBLEU's own bootstrap does the same)."""
    from sacrebleu.metrics import BLEU, CHRF

    if score not in ("bleu", "chrf"):
        raise XltError(f"translation statistics are of bleu or chrf, not {score!r}")
    metric = BLEU(tokenize=bleu_tokenizer(lang)) if score == "bleu" else CHRF()

    def statistics(preds: list[str], golds: list[str]) -> list:
        _check(preds, golds)
        return metric._extract_corpus_statistics([p.strip() for p in preds], [list(golds)])

    return statistics, lambda summed: metric._compute_score_from_stats(list(summed)).score


def translation_signatures(lang: str = "en") -> dict[str, str]:
    """sacreBLEU's signatures of :func:`translation_metrics` (scores compare only under equal signatures)."""
    from sacrebleu.metrics import BLEU, CHRF

    signatures = {}
    for name, metric in (("bleu", BLEU(tokenize=bleu_tokenizer(lang))), ("chrf", CHRF())):
        metric.corpus_score(["x"], [["x"]])  # a signature names the reference count, known after a score
        signatures[name] = str(metric.get_signature())
    return signatures


def qa_metrics(preds: list[str], golds: list[tuple[str, ...]], lang: str = "en") -> dict:
    """SQuAD v1.1 ``exact_match`` and ``f1`` of generated answers, each against the best of its question's
    gold answers, normalised for ``lang`` (xlt.scoring.squad: the encoders' span answers are scored by it too)."""
    from xlt.scoring.squad import squad_metrics

    _check(preds, golds)
    return squad_metrics(list(preds), [list(g) for g in golds], lang)


GEN_METRICS: dict[str, Callable[[list[str], list], dict]] = {
    "slots": slot_metrics,
    "intent": intent_metrics,
    "json_ner": json_ner_metrics,
    "mt": translation_metrics,
    "qa": qa_metrics,
}
# the scores each metric reports (a run's metrics.json keys say which metric scored it), and the one a report leads
# with: chrF for translation (steadier than BLEU on short sentences and low-resource languages)
SCORES: dict[str, tuple[str, ...]] = {
    "slots": ("slot_f1", "slot_precision", "slot_recall", "exact_match"),
    "intent": ("accuracy",),
    "json_ner": ("precision", "recall", "f1", "invalid_outputs"),
    "mt": ("bleu", "chrf"),
    "qa": ("exact_match", "f1"),
}
MAIN_SCORE = {"slots": "slot_f1", "intent": "accuracy", "json_ner": "f1", "mt": "chrf", "qa": "f1"}
BY_LANGUAGE = frozenset({"qa", "mt"})  # metrics that read the answers' language (they take ``lang``)


def get_metric(name: str, lang: str = "en") -> Callable[[list[str], list], dict]:
    """The metric ``name``, told the language of the gold answers when it normalises by language."""
    if name not in GEN_METRICS:
        raise XltError(f"unknown generation metric {name!r}; known: {', '.join(GEN_METRICS)}")
    return partial(GEN_METRICS[name], lang=lang) if name in BY_LANGUAGE else GEN_METRICS[name]


def metric_of_scores(names) -> str | None:
    """The generation metric whose scores ``names`` are (a run's metrics.json keys; None: no generation metric's)."""
    names = set(names)
    return next((metric for metric, scores in SCORES.items() if set(scores) == names), None)
