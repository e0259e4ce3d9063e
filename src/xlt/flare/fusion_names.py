"""Fusion names, torch-free: the CLI and ``RunConfig`` check ``--fusion`` without importing torch.

A position-wise fusion is a *pairing* (which English state each target token meets) and a *function*
(how the two meet). ``add`` pairs by position (the paper's fusion: the k-th target token meets the k-th
English token), ``aligned_add`` pairs each target token with the English token it aligns to,
``summary_add`` with the mean of the English tokens. A new function is its function in
:mod:`xlt.flare.fusion` plus its name in ``FUNCTIONS``; a new pairing likewise in ``PAIRINGS``.
"""

from __future__ import annotations

from xlt.errors import XltError

FUNCTIONS = ("add", "mul", "add_relu", "mul_relu")  # each names a function in xlt.flare.fusion
PAIRINGS = ("position", "aligned", "summary")  # each names a pairing in xlt.flare.fusion; "position" has no prefix
POSITIONWISE_FUSIONS = tuple(fn if pairing == "position" else f"{pairing}_{fn}"
                             for pairing in PAIRINGS for fn in FUNCTIONS)
FUSIONS = (*POSITIONWISE_FUSIONS, "cross_attention")


def check_fusion_name(name: str) -> str:
    """Unknown names are an error, never a silent fallback to plain LoRA."""
    if name not in FUSIONS:
        raise XltError(f"unknown fusion {name!r}; choose one of: {', '.join(FUSIONS)}")
    return name


def split_fusion(name: str) -> tuple[str, str]:
    """(pairing, function) of a position-wise fusion name: ``aligned_add_relu`` → ("aligned", "add_relu")."""
    check_fusion_name(name)
    for pairing in PAIRINGS[1:]:
        if name.startswith(pairing + "_"):
            return pairing, name[len(pairing) + 1:]
    return "position", name


def needs_alignment(name: str) -> bool:
    """Whether the fusion reads a token alignment of the target and English texts (computed by the tuner)."""
    return name in POSITIONWISE_FUSIONS and split_fusion(name)[0] == "aligned"
