"""Alignment steps for the training loop: batches of English-target pairs and their contrastive loss.

The pairs are re-sampled to about uniform over languages once per run (seeded); the loop asks the
schedule whether step k is a task or an alignment step and calls :meth:`Aligner.loss` for the latter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from xlt.alignment.contrastive import AlternatingSchedule, pooled_alignment_loss, uniform_language_sampler
from xlt.training.batches import encode


@dataclass
class Aligner:
    pairs_by_lang: dict[str, list[tuple[str, str]]]
    tokenizer: object
    layers: list[int]
    temperature: float = 0.1
    batch_size: int = 32
    max_length: int = 64
    schedule: AlternatingSchedule = field(default_factory=AlternatingSchedule)
    seed: int = 0

    def __post_init__(self) -> None:
        total = sum(map(len, self.pairs_by_lang.values()))
        self.samples = uniform_language_sampler(self.pairs_by_lang, total, self.seed)
        self._next = 0

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.samples) / self.batch_size)

    def next_batch(self) -> list[tuple[str, str, str]]:
        """The next batch of (lang, English, target) triples, cycling through the resampled pairs."""
        batch = [self.samples[(self._next + i) % len(self.samples)] for i in range(self.batch_size)]
        self._next = (self._next + self.batch_size) % len(self.samples)
        return batch

    def loss(self, model: torch.nn.Module, device: torch.device) -> torch.Tensor:
        batch = self.next_batch()
        src = {k: v.to(device) for k, v in encode(self.tokenizer, [(en,) for _, en, _ in batch], self.max_length).items()}
        tgt = {k: v.to(device) for k, v in encode(self.tokenizer, [(t,) for _, _, t in batch], self.max_length).items()}
        return pooled_alignment_loss(model, src, tgt, self.layers, self.temperature)
