"""Prompts around a long passage (QA's paragraph) that fit a length limit by cutting the passage alone.

The generation path truncates a prompt at its end, which for QA would cut the question and the
``Answer:`` cue; here the instruction, the question and the cue are never cut, only the paragraph is.

Room. The prompt is tokenized with empty passages (special tokens included); what the limit leaves is the
passages' room, in tokens of each passage tokenized alone, shared evenly between them (input-fusion reads
the English and the target paragraph), a passage shorter than its share giving the rest to the other.

Window. A passage that fits its room stays whole; a longer one is cut to ``room`` consecutive tokens, read
back as its characters through the fast tokenizer's offsets: at test time (the answer unknown) its
beginning; in training (teacher forcing) one that holds the first gold answer: the beginning when the
answer lies within it, else the window centred on the answer (clamped to the passage's end). Tokens may
merge differently at a window's edges inside the whole prompt, so a prompt still over the limit is made
again with the room shrunk by the excess. A prompt is longer than the limit only when the instruction and
the question alone are (its passages are then empty): a question is never cut.
"""

from __future__ import annotations

from xlt.data.examples import GenQAExample
from xlt.data.prompts import Template
from xlt.training.batches import view_segments

Span = tuple[int, int]  # characters [start, end) of an answer in its passage


def passages(ex: GenQAExample, view: str, train: bool) -> list[tuple[str, Span | None]]:
    """The paragraphs ``view`` reads, in the order of its questions (xlt.training.batches.view_segments:
    English first for input-fusion), each with its first answer's span when training (None at test time)."""
    target = (ex.passage_target, _span(ex.answer_start, ex.answer))
    source = (ex.passage_source, _span(ex.answer_start_source, ex.answer_source))
    sides = {"target": [target], "source": [source], "concat": [source, target]}[view]
    return [(text, span if train else None) for text, span in sides]


def _span(start: int | None, answer: str | None) -> Span | None:
    return None if start is None or answer is None else (start, start + len(answer))


def shares(lengths: list[int], room: int) -> list[int]:
    """Even shares of ``room`` tokens for passages of ``lengths`` tokens; what a short one leaves goes to the
    longer ones (the shortest is served first)."""
    given = [0] * len(lengths)
    left = max(room, 0)
    for served, i in enumerate(sorted(range(len(lengths)), key=lengths.__getitem__)):
        given[i] = min(lengths[i], left // (len(lengths) - served))
        left -= given[i]
    return given


def window(text: str, offsets: list[Span], room: int, answer: Span | None) -> str:
    """The characters of ``room`` consecutive tokens of ``text`` (module docstring: which ones)."""
    if len(offsets) <= room:
        return text
    if room <= 0:
        return ""
    first = 0
    inside = [] if answer is None else [i for i, (a, b) in enumerate(offsets) if a < answer[1] and b > answer[0]]
    if inside and inside[-1] >= room:  # the answer ends beyond the first window
        first = min(max((inside[0] + inside[-1]) // 2 - room // 2, 0), len(offsets) - room)
    return text[offsets[first][0] : offsets[first + room - 1][1]]


def fit_prompt(tokenizer, template: Template, ex: GenQAExample, view: str, sep: str, limit: int,
               train: bool) -> list[int]:
    """Token ids (special tokens included) of ``ex``'s prompt for ``view`` in at most ``limit`` tokens,
    the paragraphs cut to windows (module docstring)."""
    question = sep.join(view_segments(ex, view, sep))
    sides = passages(ex, view, train)
    offsets = [tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
               for text, _ in sides]
    room = limit - len(tokenizer(template.prompt(question, sep.join("" for _ in sides)))["input_ids"])
    while True:
        rooms = shares([len(o) for o in offsets], room)
        cut = [window(text, o, r, span) for (text, span), o, r in zip(sides, offsets, rooms)]
        ids = tokenizer(template.prompt(question, sep.join(cut)))["input_ids"]
        excess = len(ids) - limit
        if excess <= 0 or sum(rooms) == 0:
            return ids
        room = sum(rooms) - excess
