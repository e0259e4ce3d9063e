"""Fusion names, torch-free: the CLI and ``RunConfig`` check ``--fusion`` without importing torch.

A new position-wise fusion is its function in :mod:`xlt.flare.fusion` plus its name here.
"""

from __future__ import annotations

from xlt.errors import XltError

POSITIONWISE_FUSIONS = ("add", "mul", "add_relu", "mul_relu")  # each names a function in xlt.flare.fusion
FUSIONS = (*POSITIONWISE_FUSIONS, "cross_attention")


def check_fusion_name(name: str) -> str:
    """Unknown names are an error, never a silent fallback to plain LoRA."""
    if name not in FUSIONS:
        raise XltError(f"unknown fusion {name!r}; choose one of: {', '.join(FUSIONS)}")
    return name
