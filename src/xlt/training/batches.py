"""Examples → tensors. A *view* picks which text of an example the model reads.

- ``target``: the target-language text (zero-shot, lora, flare);
- ``source``: the English text of the same example (translate-test);
- ``concat``: English + target text as one input at double length (input-level fusion).
FLARE batches also carry the English text for the frozen source pass, as ``source_*`` model
inputs (``source="text"``), or ask the model to fuse zeros (``source="zero"``, a diagnostic);
FLARE-MT batches carry the target text tokenized for the MT encoder (``source`` is then the
:class:`xlt.flare.mt_encoder.MTEncoderInput` that tokenizes it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xlt.data.examples import Example, GenExample
from xlt.errors import XltError

VIEWS = ("target", "source", "concat")
SOURCES = (None, "text", "zero")  # what a FLARE model fuses: nothing (other methods), the English text, zeros


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]  # the keyword arguments of the model call (``source_*`` included)
    labels: torch.Tensor

    def to(self, device: torch.device) -> "Batch":
        inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.inputs.items()}
        return Batch(inputs, self.labels.to(device))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def targets(self) -> dict[str, torch.Tensor]:
        """The keyword arguments that give the model its training targets (QA: start and end positions)."""
        return {"labels": self.labels}

    def logits_of(self, output) -> torch.Tensor:
        """What prediction reads from the model's output (QA: start and end logits, stacked)."""
        return output.logits

    def passes(self, max_rows: int | None) -> list[tuple["Batch", float]]:
        """The batch as model calls of at most ``max_rows`` rows, each with its share of the batch's loss.
        One call here: these losses are means over tokens, not rows, and a batch has as many rows as
        examples. QA batches, a row per paragraph window, split (:class:`xlt.kinds.extractive_qa.QABatch`)."""
        return [(self, 1.0)]


def pad_rows(rows: list[list[int]], value: int, left: bool) -> torch.Tensor:
    """Token-id rows padded with ``value`` to the longest, on the left (decoders) or the right."""
    width = max(map(len, rows))
    return torch.tensor([([value] * (width - len(r)) + r) if left else (r + [value] * (width - len(r))) for r in rows])


def view_segments(ex: Example | GenExample, view: str, sep: str = " ") -> tuple[str, ...]:
    """The text a model reads for ``view``, as segments (two segments are tokenized as a pair).

    ``target``: the example's target-language text; ``source``: its English text; ``concat``:
    (English, target), each side's own segments joined by ``sep``. Classification, generation
    prompts and the verbalizer all read their text through this function.
    """
    if isinstance(ex, GenExample):
        target = (ex.prompt_target,)
        source = None if ex.prompt_source is None else (ex.prompt_source,)
    else:
        target, source = ex.target, ex.source
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    if view == "target":
        return target
    if source is None:
        raise XltError(f"example {ex.id or '?'} has no source-language text, which this method needs")
    return source if view == "source" else (sep.join(source), sep.join(target))


def encode(tokenizer, segments: list[tuple[str, ...]], max_length: int) -> dict[str, torch.Tensor]:
    """Tokenize 1-segment texts or (first, second) pairs with padding to the longest in the batch."""
    if all(len(s) == 2 for s in segments):
        first, second = [s[0] for s in segments], [s[1] for s in segments]
        enc = tokenizer(first, second, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    else:
        texts = [" ".join(s) for s in segments]
        enc = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def source_inputs(source, encode_source, target_texts=None) -> dict:
    """The model inputs that give a FLARE model its source: ``source_*`` tensors, ``zero_source``, or none.
    ``target_texts()``: the batch's target texts, for an MT encoder (``source`` with an ``encode`` method)."""
    if source is not None and not isinstance(source, str):  # an MT encoder input (FLARE-MT)
        if target_texts is None:
            raise XltError("these batches cannot feed an MT encoder (flare-mt runs sentence classification)")
        return {f"source_{k}": v for k, v in source.encode(target_texts()).items()}
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if source == "zero":
        return {"zero_source": True}
    if source == "text":
        return {f"source_{k}": v for k, v in encode_source().items()}
    return {}


def make_batch(tokenizer, examples: list[Example], view: str, max_length: int, source=None) -> Batch:
    labels = torch.tensor([ex.label for ex in examples], dtype=torch.long)
    sep = f" {tokenizer.sep_token or tokenizer.eos_token} " if (tokenizer.sep_token or tokenizer.eos_token) else " "
    length = 2 * max_length if view == "concat" else max_length
    inputs = encode(tokenizer, [view_segments(ex, view, sep) for ex in examples], length)
    inputs |= source_inputs(source, lambda: encode(tokenizer, [view_segments(ex, "source") for ex in examples],
                                                   max_length),
                            lambda: [" ".join(view_segments(ex, "target")) for ex in examples])
    return Batch(inputs, labels)
