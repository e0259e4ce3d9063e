"""Answer projection for translate-train QA: markers around the answer survive translation, or the example is dropped.

Before translation the answer span of the English paragraph is wrapped in markers
(``[`` ... ``]`` by default); after translation exactly one opening marker followed by one
closing marker must remain, around a non-empty answer. The markers are removed and the answer's
character offset in the translated paragraph is where the opening marker was. Every example that
does not survive is dropped with a reason, so a run can report how many and why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable

OPEN, CLOSE = "[", "]"


@dataclass(frozen=True)
class Span:
    context: str
    answer_start: int
    answer: str


def mark(context: str, answer_start: int, answer: str, open_: str = OPEN, close: str = CLOSE) -> str | None:
    """The paragraph with the answer wrapped in markers; None if the paragraph already holds a marker
    (it would be ambiguous after translation) or the answer is not at ``answer_start``."""
    if open_ in context or close in context:
        return None
    if not answer or context[answer_start : answer_start + len(answer)] != answer:
        return None
    end = answer_start + len(answer)
    return f"{context[:answer_start]}{open_}{answer}{close}{context[end:]}"


def unmark(translated: str, open_: str = OPEN, close: str = CLOSE) -> Span | str:
    """The translated paragraph without markers and its answer span, or the reason it cannot be had."""
    opens, closes = translated.count(open_), translated.count(close)
    if opens == 0 and closes == 0:
        return "markers lost in translation"
    if opens != 1 or closes != 1:
        return "markers repeated or half lost"
    start, end = translated.index(open_), translated.index(close)
    if end < start:
        return "markers out of order"
    inner = translated[start + len(open_) : end]
    answer = inner.strip()
    if not answer:
        return "empty answer"
    context = translated[:start] + inner + translated[end + len(close) :]
    answer_start = start + (len(inner) - len(inner.lstrip()))
    return Span(context, answer_start, answer)


def project(examples: Iterable[tuple[str, int, str]], translate: Callable[[list[str]], list[str]],
            open_: str = OPEN, close: str = CLOSE) -> tuple[list[Span | None], Counter]:
    """Translate marked paragraphs and recover each answer span; ``None`` where the example is dropped.

    ``examples`` are (context, answer_start, answer); ``translate`` translates a list of texts. The
    counter holds the number of dropped examples per reason.
    """
    examples = list(examples)
    marked = [mark(c, s, a, open_, close) for c, s, a in examples]
    texts = [m for m in marked if m is not None]
    translations = iter(translate(texts)) if texts else iter(())
    spans: list[Span | None] = []
    dropped: Counter = Counter()
    for (context, start, answer), m in zip(examples, marked):
        if m is None:
            reason = "paragraph holds a marker" if (open_ in context or close in context) else "answer not at its offset"
            dropped[reason] += 1
            spans.append(None)
            continue
        result = unmark(next(translations), open_, close)
        if isinstance(result, str):
            dropped[result] += 1
            spans.append(None)
        else:
            spans.append(result)
    return spans, dropped
