"""Extractive QA on encoders: question + paragraph windows, span labels, and the best span read back as text.

Windows. A paragraph longer than a window is read in overlapping chunks: the fast tokenizer's
``return_overflowing_tokens`` with ``truncation="only_second"``, so every window holds the whole question
and one chunk of the paragraph, ``max_length`` tokens in all (``--qa-max-length``). Consecutive chunks
share ``stride`` tokens (``--doc-stride``, transformers' meaning of ``stride``). Questions are clipped to
:data:`MAX_QUESTION_TOKENS` (or half a window), and the stride to half the paragraph room that leaves, so a
chunk always advances and the windows depend only on the settings, never on the batch.

Labels. The first gold answer's start and end *token* in each window that holds it whole (found through
the offsets mapping); a window that does not (the answer lies beyond it, or across its edge) points both at
the CLS token, as in SQuAD v1.1 training, so an answer across a window boundary is learned from the window
that contains it whole.

Prediction. Per window, the span (start s, end e) of paragraph tokens with e >= s and e - s < the span cap
(``--max-answer-length`` tokens) and the highest start + end logit; per question, the best of its windows
(the first window on a tie). Its characters ``context[offset(s).start : offset(e).end]``, stripped, are the
answer, scored with SQuAD v1.1 EM/F1 against the original paragraph's gold answers (xlt.scoring.squad).

Views (xlt.training.batches):

- ``target``: the target question over the target paragraph, scored against the target answers;
- ``source`` (translate-test): the English question over the English paragraph, scored against the English
  answers: the gold-English upper bound of translate-test, as for classification;
- ``concat`` (input-fusion): at twice the window length (at most the model's positions: 512 for e5-small),
  the first sequence is the English question and the start of the English paragraph (clipped together to
  half that length less :data:`MAX_QUESTION_TOKENS` + 4 tokens; the rest of the English paragraph is
  dropped), a separator and the target question; the second is the target paragraph chunk, which so gets
  about half the length (the room it has in the target view when twice the window fits). Labels and
  predictions are on the target paragraph only.
- FLARE (``source="text"``): every window of a question is paired with the English example's *first*
  window (English question + the start of the English paragraph, ``max_length`` tokens), the simplest
  pairing that needs no alignment between the two paragraphs; the source-state cache computes it once per
  question whatever the number of target windows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from xlt.data.examples import QAExample
from xlt.errors import XltError
from xlt.training.batches import VIEWS, Batch, source_inputs

MAX_QUESTION_TOKENS = 64  # as transformers' run_qa max_query_length
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class QABatch(Batch):
    """The windows of a batch of questions; ``labels`` holds (start, end) token per window."""

    samples: list[int]  # per window: the index of its question in the batch
    context_mask: torch.Tensor  # (windows, tokens) bool: the paragraph tokens a span may use
    offsets: list[list[tuple[int, int]]]  # per window, per token: its characters in the paragraph
    contexts: list[str]  # per question: the paragraph the view labels (answers are read from it)

    def to(self, device: torch.device) -> "QABatch":
        moved = super().to(device)
        return QABatch(moved.inputs, moved.labels, self.samples, self.context_mask, self.offsets, self.contexts)

    def targets(self) -> dict[str, torch.Tensor]:
        return {"start_positions": self.labels[:, 0], "end_positions": self.labels[:, 1]}

    def logits_of(self, output) -> torch.Tensor:
        return torch.stack([output.start_logits, output.end_logits], -1)  # (windows, tokens, 2)

    @property
    def questions(self) -> int:
        return len(self.contexts)

    def passes(self, max_rows: int | None) -> list[tuple["QABatch", float]]:
        """Consecutive runs of at most ``max_rows`` windows (``--qa-windows-per-pass``), each weighted by its
        share of the windows: the span loss is a mean over windows, so the weighted sum of the passes' losses
        is the whole batch's. Bounds memory whatever the paragraphs' length (32 questions can be 100 windows)."""
        total = len(self.samples)
        if max_rows is None or total <= max_rows:
            return [(self, 1.0)]
        return [(self._rows(slice(start, start + max_rows)), min(max_rows, total - start) / total)
                for start in range(0, total, max_rows)]

    def _rows(self, cut: slice) -> "QABatch":
        """Windows ``cut`` of the batch (tensors with a row per window are cut; flags like ``zero_source``
        are kept)."""
        rows = len(self.samples)
        inputs = {k: v[cut] if isinstance(v, torch.Tensor) and v.shape[:1] == (rows,) else v
                  for k, v in self.inputs.items()}
        return replace(self, inputs=inputs, labels=self.labels[cut], samples=self.samples[cut],
                       context_mask=self.context_mask[cut], offsets=self.offsets[cut])


def _english(ex: QAExample) -> tuple[str, str]:
    if not ex.has_source:
        raise XltError(f"example {ex.id or '?'} has no source-language text, which this method needs")
    return ex.source_question, ex.source_context


def labelled(ex: QAExample, view: str) -> tuple[str, str, tuple[str, ...], tuple[int, ...]]:
    """(question, paragraph, answers, answer starts) of the side ``view`` labels: English for ``source``."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    side = ex.english() if view == "source" else ex
    return side.question, side.context, side.answers, side.answer_starts


def clip(tokenizer, text: str, max_tokens: int) -> str:
    """``text`` cut after its ``max_tokens``-th token (whole when shorter). Only the first ``32 * max_tokens``
    characters are tokenized (a token is rarely longer), so a long paragraph costs nothing."""
    text = text[: 32 * max(max_tokens, 1)]
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return text if len(offsets) <= max_tokens else text[: offsets[max(max_tokens, 1) - 1][1]]


def model_positions(tokenizer) -> int | None:
    """The longest input the model takes (the tokenizer's ``model_max_length``), None when unknown."""
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and limit < 1_000_000 else None


def question_cap(tokenizer, max_length: int) -> int:
    return max(1, min(MAX_QUESTION_TOKENS, (max_length - tokenizer.num_special_tokens_to_add(pair=True)) // 2))


def window_stride(tokenizer, max_length: int, stride: int) -> int:
    """``stride`` capped at half the paragraph room a window keeps after the longest (clipped) question."""
    room = max_length - tokenizer.num_special_tokens_to_add(pair=True) - question_cap(tokenizer, max_length)
    return max(0, min(stride, room // 2 - 1))


def encode_windows(tokenizer, firsts: list[str], contexts: list[str], max_length: int, stride: int):
    """The windows of (first sequence, paragraph) pairs; the first sequences must fit well inside a window."""
    if not getattr(tokenizer, "is_fast", False):
        raise XltError("extractive QA needs a fast tokenizer (offsets mapping, overflowing windows)")
    return tokenizer(firsts, contexts, truncation="only_second", max_length=max_length, stride=stride,
                     return_overflowing_tokens=True, return_offsets_mapping=True, padding=True,
                     return_tensors="pt")


def answer_tokens(offsets: list[tuple[int, int]], context_tokens: list[int], start_char: int,
                  end_char: int) -> tuple[int, int] | None:
    """The first and last paragraph token of characters [start_char, end_char) in a window, or None when
    the window does not hold them whole."""
    first, last = context_tokens[0], context_tokens[-1]
    if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
        return None
    start = first
    while start <= last and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= end_char:
        end -= 1
    return start - 1, end + 1


def qa_batch(tokenizer, examples: list[QAExample], view: str, max_length: int, stride: int,
             source: str | None = None) -> QABatch:
    """All windows of ``examples`` for ``view``, with span labels and what reading the answers back needs."""
    positions = model_positions(tokenizer)
    if positions is not None and max_length > positions:
        raise XltError(f"qa_max_length {max_length} is more than the model's {positions} positions")
    sides = [labelled(ex, view) for ex in examples]
    cap = question_cap(tokenizer, max_length)
    questions = [clip(tokenizer, q.lstrip(), cap) for q, _, _, _ in sides]
    length = max_length
    if view == "concat":  # (English question + paragraph start, separator, target question) | target paragraph
        length = min(2 * max_length, positions or 2 * max_length)
        sep = tokenizer.sep_token or tokenizer.eos_token
        english = [clip(tokenizer, f"{q} {sep} {c}", length // 2 - cap - 4) for q, c in map(_english, examples)]
        questions = [f"{e} {sep} {q}" for e, q in zip(english, questions)]
    contexts = [c for _, c, _, _ in sides]
    enc = encode_windows(tokenizer, questions, contexts, length, window_stride(tokenizer, max_length, stride))
    samples = enc["overflow_to_sample_mapping"].tolist()
    offsets = enc["offset_mapping"].tolist()
    context_mask = torch.zeros(enc["input_ids"].shape, dtype=torch.bool)
    labels = torch.zeros(len(samples), 2, dtype=torch.long)
    ids = enc["input_ids"].tolist()
    for w, i in enumerate(samples):
        context_tokens = [t for t, seq in enumerate(enc.sequence_ids(w)) if seq == 1]
        context_mask[w, context_tokens] = True
        cls = ids[w].index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids[w] else 0
        _, _, answers, starts = sides[i]
        span = answer_tokens(offsets[w], context_tokens, starts[0], starts[0] + len(answers[0])) \
            if context_tokens else None
        labels[w] = torch.tensor(span if span is not None else (cls, cls))
    inputs = {k: v for k, v in enc.items() if k in MODEL_INPUTS}
    inputs |= source_inputs(source, lambda: _source_windows(tokenizer, examples, max_length, samples))
    return QABatch(inputs, labels, samples, context_mask, [[tuple(o) for o in row] for row in offsets], contexts)


def _source_windows(tokenizer, examples: list[QAExample], max_length: int, samples: list[int]) -> dict:
    """FLARE's source: each question's first English window, repeated for each of its target windows."""
    english = [_english(ex) for ex in examples]
    cap = question_cap(tokenizer, max_length)
    enc = tokenizer([clip(tokenizer, q.lstrip(), cap) for q, _ in english], [c for _, c in english],
                    truncation="only_second", max_length=max_length, padding=True, return_tensors="pt")
    index = torch.tensor(samples)
    return {k: v.index_select(0, index) for k, v in enc.items() if k in MODEL_INPUTS}


def best_spans(start: torch.Tensor, end: torch.Tensor, mask: torch.Tensor, max_tokens: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per window: the highest start + end logit over spans of paragraph tokens (``mask``) with
    0 <= end - start < ``max_tokens``, as (score, start, end); -inf where the window has no paragraph token.
    On a tie the earlier start of the shorter span wins."""
    windows, tokens = start.shape
    best = torch.full((windows,), float("-inf"))
    best_start = torch.zeros(windows, dtype=torch.long)
    best_end = torch.zeros(windows, dtype=torch.long)
    for length in range(min(max_tokens, tokens)):
        score = start[:, : tokens - length] + end[:, length:]
        score = score.masked_fill(~(mask[:, : tokens - length] & mask[:, length:]), float("-inf"))
        value, index = score.max(1)
        better = value > best
        best = torch.where(better, value, best)
        best_start = torch.where(better, index, best_start)
        best_end = torch.where(better, index + length, best_end)
    return best, best_start, best_end


def read_answers(max_answer_tokens: int):
    """How :func:`xlt.training.loop.predict` turns one batch's (start, end) logits into one answer per question."""

    def read(batch: QABatch, logits: torch.Tensor) -> list[str]:
        logits = logits.float().cpu()
        scores, starts, ends = best_spans(logits[..., 0], logits[..., 1], batch.context_mask, max_answer_tokens)
        answers = [""] * batch.questions
        best = [float("-inf")] * batch.questions
        for w, i in enumerate(batch.samples):
            if scores[w] > best[i]:
                best[i] = float(scores[w])
                first, last = batch.offsets[w][starts[w]], batch.offsets[w][ends[w]]
                answers[i] = batch.contexts[i][first[0] : last[1]].strip()
        return answers

    return read


def load_span_model(path: str):
    """An encoder with transformers' span head (``AutoModelForQuestionAnswering``: backbone + ``qa_outputs``,
    a linear layer to start and end logits, cross-entropy on start/end positions): the trained head when
    ``path`` is a saved QA model, a new one on a base encoder. ``model.base_model`` is the backbone, where the
    architecture table's (and FLARE's) paths start; ``qa_outputs`` is the architecture's ``qa_head``."""
    from transformers import AutoModelForQuestionAnswering

    try:
        return AutoModelForQuestionAnswering.from_pretrained(path, trust_remote_code=False)
    except OSError as err:
        raise XltError(f"cannot load model {path!r}: {str(err).splitlines()[0]}") from None
