"""Tagging batches: words → sub-tokens with one label per word, and predictions read back per word.

Words are tokenized with ``is_split_into_words=True``; ``word_ids()`` maps sub-tokens back to words.
A word's tag is the label of its **first** sub-token; later sub-tokens and special tokens get -100
(no loss), and so does every token of the English half of an input-fusion pair. Predictions are read
at the same first sub-tokens. A word without a sub-token (cut off by ``--max-length``, or one that
the tokenizer normalizes away) is predicted ``O`` and still counted by the metric, so truncation
costs recall instead of hiding entities.

Views as for classification (xlt.training.batches): ``target`` reads the target sentence, ``source``
the English sentence, scored against the English tags (translate-test), ``concat`` reads
(English, target) as a pair at twice the length with labels on the target words. FLARE batches carry
the English sentence as ``source_input_ids``/``source_attention_mask`` (``source_inputs``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xlt.data.examples import TagExample
from xlt.errors import XltError
from xlt.training.batches import VIEWS, Batch, source_inputs

IGNORE = -100  # label of tokens that carry no loss


@dataclass
class TagBatch(Batch):
    first_tokens: list[list[int]]  # per row, per word: the position of its first sub-token, -1 if none

    def to(self, device: torch.device) -> "TagBatch":
        moved = super().to(device)
        return TagBatch(moved.inputs, moved.labels, self.first_tokens)


def words(ex: TagExample, view: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(words, gold tags) of the sentence that ``view`` labels: the English one for ``source``."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    if view != "target":
        english = _english(ex)
        if view == "source":
            return english
    return ex.tokens, ex.tags


def _english(ex: TagExample) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if ex.source_tokens is None or ex.source_tags is None:
        raise XltError(f"example {ex.id or '?'} has no source-language text, which this method needs")
    return ex.source_tokens, ex.source_tags


def _encode_words(tokenizer, first: list, second: list | None, max_length: int):
    return tokenizer(first, second, is_split_into_words=True, truncation=True, max_length=max_length,
                     padding=True, return_tensors="pt")


def _model_inputs(enc) -> dict[str, torch.Tensor]:
    return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def tag_batch(tokenizer, examples: list[TagExample], labels: tuple[str, ...], view: str, max_length: int,
              source: str | None = None) -> TagBatch:
    """The model inputs of one batch, labels on first sub-tokens, and where each word's first sub-token is."""
    label_id = {tag: i for i, tag in enumerate(labels)}
    labelled = [words(ex, view) for ex in examples]
    if view == "concat":  # (English, target) pair; the target, second, is the labelled sequence
        enc = _encode_words(tokenizer, [list(_english(ex)[0]) for ex in examples],
                            [list(w) for w, _ in labelled], 2 * max_length)
        labelled_seq = 1
    else:
        enc = _encode_words(tokenizer, [list(w) for w, _ in labelled], None, max_length)
        labelled_seq = 0
    label_rows = torch.full(enc["input_ids"].shape, IGNORE, dtype=torch.long)
    first_tokens = []
    for row, (row_words, tags) in enumerate(labelled):
        first = [-1] * len(row_words)
        for pos, (word, seq) in enumerate(zip(enc.word_ids(row), enc.sequence_ids(row))):
            if word is not None and seq == labelled_seq and first[word] < 0:
                first[word] = pos
                label_rows[row, pos] = label_id[tags[word]]
        first_tokens.append(first)
    inputs = _model_inputs(enc)
    inputs |= source_inputs(source, lambda: _model_inputs(
        _encode_words(tokenizer, [list(_english(ex)[0]) for ex in examples], None, max_length)))
    return TagBatch(inputs, label_rows, first_tokens)


def read_tags(labels: tuple[str, ...]):
    """How :func:`xlt.training.loop.predict` turns one batch's logits into one tag list per row."""

    def read(batch: TagBatch, logits: torch.Tensor) -> list[list[str]]:
        best = logits.argmax(-1).tolist()
        return [[labels[best[row][pos]] if pos >= 0 else "O" for pos in first]
                for row, first in enumerate(batch.first_tokens)]

    return read
