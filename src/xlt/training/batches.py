"""Examples → tensors. A *view* picks which text of an example the model reads.

- ``target``: the target-language text (zero-shot, lora, flare);
- ``source``: the English text of the same example (translate-test);
- ``concat``: English + target text as one input at double length (input-level fusion).
FLARE batches also carry the English text as ``source`` inputs for the frozen source pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xlt.data.examples import Example
from xlt.errors import XltError

VIEWS = ("target", "source", "concat")


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]  # what the task model reads
    labels: torch.Tensor
    source: dict[str, torch.Tensor] | None = None  # English inputs for the FLARE source pass

    def to(self, device: torch.device) -> "Batch":
        move = lambda d: None if d is None else {k: v.to(device) for k, v in d.items()}  # noqa: E731
        return Batch(move(self.inputs), self.labels.to(device), move(self.source))

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def pad_rows(rows: list[list[int]], value: int, left: bool) -> torch.Tensor:
    """Token-id rows padded with ``value`` to the longest, on the left (decoders) or the right."""
    width = max(map(len, rows))
    return torch.tensor([([value] * (width - len(r)) + r) if left else (r + [value] * (width - len(r))) for r in rows])


def _segments(ex: Example, side: str) -> tuple[str, ...]:
    if side == "target":
        return ex.target
    if ex.source is None:
        raise XltError(f"example {ex.id or '?'} has no source-language text, which this method needs")
    return ex.source


def encode(tokenizer, segments: list[tuple[str, ...]], max_length: int) -> dict[str, torch.Tensor]:
    """Tokenize 1-segment texts or (first, second) pairs with padding to the longest in the batch."""
    if all(len(s) == 2 for s in segments):
        first, second = [s[0] for s in segments], [s[1] for s in segments]
        enc = tokenizer(first, second, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    else:
        texts = [" ".join(s) for s in segments]
        enc = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def make_batch(tokenizer, examples: list[Example], view: str, max_length: int, with_source: bool = False) -> Batch:
    labels = torch.tensor([ex.label for ex in examples], dtype=torch.long)
    if view == "concat":
        sep = f" {tokenizer.sep_token or tokenizer.eos_token} " if (tokenizer.sep_token or tokenizer.eos_token) else " "
        pairs = [(sep.join(_segments(ex, "source")), sep.join(ex.target)) for ex in examples]
        inputs = encode(tokenizer, pairs, 2 * max_length)
    else:
        inputs = encode(tokenizer, [_segments(ex, view) for ex in examples], max_length)
    source = encode(tokenizer, [_segments(ex, "source") for ex in examples], max_length) if with_source else None
    return Batch(inputs, labels, source)
