"""The processes of one run: one, or several under ``accelerate launch`` / ``torchrun`` (DDP).

accelerate joins CPU-only processes over gloo only when told they are CPU processes; every part
of xlt that asks "which process am I" goes through :func:`processes`, so the first ask (a stage-1
build, the training loop) sets the group up the same way.
"""

from __future__ import annotations

import os


def cpu_processes() -> bool:
    """Several processes on a machine without CUDA: they train on the CPU and talk over gloo."""
    import torch

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def processes():
    """accelerate's ``PartialState`` for this run (``is_main_process``, ``wait_for_everyone``, ...)."""
    from accelerate import PartialState

    return PartialState(cpu=cpu_processes())
