"""How much training xlt agrees to plan: a bound checked before anything runs (torch-free).

A training run's plan holds one entry per optimizer step, built before the first step; a mistyped
``--epochs 1000000000`` would make it grow until memory runs out. No xlt setting comes near the
bound: the demo's longest run is a few thousand steps, and a million steps of even a tiny model is
days of compute.
"""

from __future__ import annotations

import math

from xlt.errors import XltError

MAX_OPTIMIZER_STEPS = 1_000_000  # per training run (stage 1 or stage 2); each epoch is at least one step


def check_steps(examples: int, batch_size: int, epochs: int, what: str = "training",
                flag: str = "the epochs") -> int:
    """The optimizer steps of ``epochs`` passes over ``examples`` in batches of ``batch_size``;
    more than ``MAX_OPTIMIZER_STEPS`` is a one-line error naming the flag to lower."""
    steps = epochs * math.ceil(examples / batch_size)
    if steps > MAX_OPTIMIZER_STEPS:
        raise XltError(f"{what} would take {steps:,} optimizer steps ({epochs:,} epochs of {examples:,} examples in "
                       f"batches of {batch_size}); xlt plans at most {MAX_OPTIMIZER_STEPS:,}: lower {flag}")
    return steps


def check_plan_length(steps: int, what: str = "training") -> None:
    """A plan about to grow past ``MAX_OPTIMIZER_STEPS`` entries (alignment steps interleaved by a ratio)."""
    if steps > MAX_OPTIMIZER_STEPS:
        raise XltError(f"{what} would take more than {MAX_OPTIMIZER_STEPS:,} optimizer steps; xlt plans at most "
                       "that many: lower --epochs or the alignment steps of --align-ratio")
