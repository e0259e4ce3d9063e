"""Fusion functions: how the source bottleneck S = A·x_src meets the target bottleneck T = A·x_tgt.

A position-wise fusion is one function of two equal-shaped tensors plus one line in
``POSITIONWISE`` and its name in :mod:`xlt.flare.fusion_names` (torch-free, for the CLI).
Cross-attention is the one fusion with parameters. Every fusion is an ``nn.Module`` taking
``(target, source, source_mask, target_positions)`` so the FLARE layer treats them alike;
``target_positions`` is each target token's index among the real tokens of its row
(``relative_positions`` of the target mask; ``None``: no padding before the tokens).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from xlt.flare.fusion_names import FUSIONS  # noqa: F401 (re-exported)


def add(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return t + s


def mul(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return t * s


def add_relu(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.relu(t + s)


def mul_relu(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.relu(t * s)


POSITIONWISE: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "add": add,
    "mul": mul,
    "add_relu": add_relu,
    "mul_relu": mul_relu,
}


def check_rows(target: torch.Tensor, source: torch.Tensor) -> None:
    """One source row per target row: a 1-row source would otherwise broadcast over every target row."""
    if target.shape[0] != source.shape[0]:
        raise ValueError(f"FLARE fusion: {target.shape[0]} target rows but {source.shape[0]} source rows")


def relative_positions(mask: torch.Tensor) -> torch.Tensor:
    """Index of each real token among the real tokens of its row (-1 at padding), for any padding side."""
    mask = mask.long()
    return torch.where(mask.bool(), mask.cumsum(-1) - 1, torch.full_like(mask, -1))


def default_positions(target: torch.Tensor) -> torch.Tensor:
    batch, length = target.shape[:2]
    return torch.arange(length, device=target.device).expand(batch, length)


def align_to_target(source: torch.Tensor, source_mask: torch.Tensor, target_positions: torch.Tensor) -> torch.Tensor:
    """The source state at the same *relative* position as each target token; zeros where there is none.

    Position-wise fusion pairs the k-th real target token with the k-th real source token, so left
    and right padding align alike; a padded source position, a target position past the source's
    end and a padded target position (position -1) all get zeros, never a pad token's state.
    """
    index, valid = _alignment(source_mask, target_positions)
    gathered = torch.gather(source, 1, index.unsqueeze(-1).expand(-1, -1, source.shape[-1]))
    return gathered * valid.unsqueeze(-1).to(source.dtype)


_last_alignment: tuple | None = None  # (mask, positions, their versions, index, valid) of the last alignment


def _alignment(source_mask: torch.Tensor, target_positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which source position each target token reads, and whether it has one. Every fused layer of a stack
    gets the same mask and positions tensors in one call, so the last alignment is kept and reused while
    the same (unedited) tensors come back: once per stack and call instead of once per layer."""
    global _last_alignment
    kept = _last_alignment  # one read: another thread replacing it costs a recomputation, never a wrong index
    versions = (source_mask._version, target_positions._version)
    if kept is not None and kept[0] is source_mask and kept[1] is target_positions and kept[2] == versions:
        return kept[3], kept[4]
    start = source_mask.long().argmax(-1, keepdim=True)  # first real source token
    count = source_mask.long().sum(-1, keepdim=True)
    valid = (target_positions >= 0) & (target_positions < count)
    index = (start + target_positions.clamp(min=0)).clamp(max=source_mask.shape[1] - 1)
    _last_alignment = (source_mask, target_positions, versions, index, valid)
    return index, valid


class PositionwiseFusion(nn.Module):
    """A parameter-free fusion applied position by position after alignment."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.fn = POSITIONWISE[name]

    def forward(self, target: torch.Tensor, source: torch.Tensor, source_mask: torch.Tensor,
                target_positions: torch.Tensor | None = None) -> torch.Tensor:
        check_rows(target, source)
        positions = default_positions(target) if target_positions is None else target_positions
        return self.fn(target, align_to_target(source, source_mask, positions).to(target.dtype))

    def extra_repr(self) -> str:
        return self.name


class CrossAttentionFusion(nn.Module):
    """Single-head attention in the rank-r bottleneck: target queries, source keys and values.

    Output is ``T + softmax(QK^T/sqrt(r) + masks)·V`` (``scaled_dot_product_attention``).
    Source padding is masked; with ``causal=True`` (layers of a decoder stack) the target token at relative position i sees
    source tokens at relative positions <= i only, whatever the padding side: in mT5's decoder
    the source state at position j was computed from the target's decoder tokens up to j.
    A target row with no visible source position gets a zero attention output.
    """

    def __init__(self, rank: int, causal: bool = False):
        super().__init__()
        self.q = nn.Linear(rank, rank, bias=False)
        self.k = nn.Linear(rank, rank, bias=False)
        self.v = nn.Linear(rank, rank, bias=False)
        self.causal = causal

    def forward(self, target: torch.Tensor, source: torch.Tensor, source_mask: torch.Tensor,
                target_positions: torch.Tensor | None = None) -> torch.Tensor:
        check_rows(target, source)
        source = source.to(target.dtype)
        visible = source_mask.bool().unsqueeze(1).expand(-1, target.shape[1], -1)
        if self.causal:
            positions = default_positions(target) if target_positions is None else target_positions
            visible = visible & (relative_positions(source_mask).unsqueeze(1) <= positions.unsqueeze(-1))
        seen = visible.any(-1, keepdim=True)  # a row that sees nothing attends to all and is zeroed after
        attended = nn.functional.scaled_dot_product_attention(
            self.q(target), self.k(source), self.v(source), attn_mask=visible | ~seen)
        return target + attended * seen.to(attended.dtype)

    def extra_repr(self) -> str:
        return f"rank={self.q.in_features}, causal={self.causal}"


def build_fusion(name: str, rank: int, causal: bool = False) -> nn.Module:
    """The fusion module of one adapter (the name was checked by :class:`xlt.flare.config.FlareConfig`)."""
    if name == "cross_attention":
        return CrossAttentionFusion(rank, causal=causal)
    return PositionwiseFusion(name)
