"""Alignment steps for the training loop: batches of English-target pairs and their contrastive loss.

The pairs are re-sampled to about uniform over languages once per run (seeded). :meth:`Aligner.plan`
interleaves alignment steps with the task steps by the schedule; the loop runs whatever plan it gets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import torch

from xlt.alignment.contrastive import AlternatingSchedule, pooled_alignment_loss, uniform_language_sampler
from xlt.training.batches import encode
from xlt.training.limits import check_plan_length


def interleave(task_plan: list, align_step, schedule: AlternatingSchedule, align_only_steps: int) -> list:
    """With task steps, the schedule puts alignment steps between them (the task's epochs end the run);
    without (alignment-only training), ``align_only_steps`` alignment steps."""
    if not task_plan:
        check_plan_length(align_only_steps, "alignment training")
        return [align_step] * align_only_steps
    plan, task = [], iter(task_plan)
    for kind in schedule:
        if kind == "align":
            plan.append(align_step)
            check_plan_length(len(plan), "training with alignment steps")
            continue
        step = next(task, None)
        if step is None:
            return plan
        plan.append(step)


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

    def plan(self, task_plan: list, epochs: int) -> list:
        """The optimizer steps of the run: ``task_plan`` with alignment steps interleaved."""
        return interleave(task_plan, self.step, self.schedule, self.steps_per_epoch() * epochs)

    def step(self, model: torch.nn.Module, accelerator) -> list:
        """One alignment step of the training loop: one pass (every process computes the same batch)."""
        return [partial(self.loss, model, accelerator.device)]

    def loss(self, model: torch.nn.Module, device: torch.device) -> torch.Tensor:
        batch = self.next_batch()
        src = {k: v.to(device) for k, v in encode(self.tokenizer, [(en,) for _, en, _ in batch], self.max_length).items()}
        tgt = {k: v.to(device) for k, v in encode(self.tokenizer, [(t,) for _, _, t in batch], self.max_length).items()}
        return pooled_alignment_loss(model, src, tgt, self.layers, self.temperature)
