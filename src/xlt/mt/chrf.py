"""Corpus-level chrF (sacreBLEU's ``CHRF``, default settings: character 6-grams, beta 2, no word n-grams).

Scores are only comparable with the same signature, so every score comes with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from xlt.errors import XltError


@dataclass(frozen=True)
class ChrfScore:
    score: float  # 0..100
    signature: str  # sacreBLEU's, e.g. "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"


def corpus_chrf(hypotheses: list[str], references: list[str], lowercase: bool = False) -> ChrfScore:
    """chrF of the hypotheses against one reference each (same order, same length); ``lowercase``
    ignores case (signature ``case:lc``)."""
    from sacrebleu.metrics import CHRF

    if len(hypotheses) != len(references):
        raise XltError(f"chrF needs one reference per hypothesis: got {len(hypotheses)} hypotheses "
                       f"and {len(references)} references")
    if not hypotheses:
        raise XltError("chrF of an empty corpus is undefined")
    metric = CHRF(lowercase=lowercase)
    score = metric.corpus_score(list(hypotheses), [list(references)])
    return ChrfScore(score=float(score.score), signature=str(metric.get_signature()))
