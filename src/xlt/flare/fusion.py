"""Fusion functions: how the source bottleneck S = A·x_src meets the target bottleneck T = A·x_tgt.

A position-wise fusion is a *pairing*, which gives every target token its English partner (a row of
S, or a mean of rows), and a *function* of two equal-shaped tensors, target and partner. A new
function is one function plus one line in ``FUNCTIONS``; a new pairing one function plus one line in
``PAIRINGS``; each also its name in :mod:`xlt.flare.fusion_names` (torch-free, for the CLI).
Cross-attention is the one fusion with parameters. Every fusion is an ``nn.Module`` taking
``(target, source, source_mask, target_positions, alignment)`` so the FLARE layer treats them alike;
``target_positions`` is each target token's index among the real tokens of its row
(``relative_positions`` of the target mask; ``None``: no padding before the tokens); ``alignment``
is each target token's aligned English token, as an index among the real source tokens (-1: none;
``None``: no alignment was computed), see :mod:`xlt.flare.token_alignment`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from xlt.flare.fusion_names import FUSIONS, split_fusion  # noqa: F401 (FUSIONS re-exported)


def add(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return t + s


def mul(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return t * s


def add_relu(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.relu(t + s)


def mul_relu(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.relu(t * s)


FUNCTIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
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


def source_summary(source: torch.Tensor, source_mask: torch.Tensor, target_positions: torch.Tensor,
                   causal: bool) -> torch.Tensor:
    """The mean of the real source states each target token may see: all of them, or in a causal stack
    those at relative positions <= its own (a decoder's last token sees the whole English prefix, never
    nothing). Zeros at padded target positions and for a source without real tokens."""
    dtype, source = source.dtype, source.float()  # a bf16 running sum over a long source loses digits
    real = source_mask.to(source.dtype).unsqueeze(-1)
    if not causal:
        mean = (source * real).sum(1, keepdim=True) / real.sum(1, keepdim=True).clamp(min=1)
        summary = mean.expand(-1, target_positions.shape[1], -1)
    else:
        running = torch.cumsum(source * real, 1)  # sums up to each padded position
        start = source_mask.long().argmax(-1, keepdim=True)
        count = source_mask.long().sum(-1, keepdim=True)
        seen = torch.minimum(target_positions.clamp(min=0), (count - 1).clamp(min=0))  # last visible rel. index
        ends = (start + seen).clamp(max=source.shape[1] - 1)
        total = torch.gather(running, 1, ends.unsqueeze(-1).expand(-1, -1, source.shape[-1]))
        summary = total / (seen + 1).unsqueeze(-1).to(source.dtype)
    has_source = source_mask.long().sum(-1, keepdim=True) > 0
    return (summary * ((target_positions >= 0) & has_source).unsqueeze(-1).to(source.dtype)).to(dtype)


def position_partner(source, source_mask, target_positions, alignment, causal):
    """The paper's pairing: the source token at the target token's own relative position (zeros past its end)."""
    return align_to_target(source, source_mask, target_positions)


def aligned_partner(source, source_mask, target_positions, alignment, causal):
    """The source token the target token aligns to; the source summary where it aligns to none. In a causal
    stack an alignment to a later position is ignored (the tuner never computes one)."""
    summary = source_summary(source, source_mask, target_positions, causal)
    if alignment is None:
        return summary
    valid = (alignment >= 0) & (target_positions >= 0)
    if causal:
        valid = valid & (alignment <= target_positions)
    start = source_mask.long().argmax(-1, keepdim=True)
    index = (start + alignment.clamp(min=0)).clamp(max=source.shape[1] - 1)
    aligned = torch.gather(source, 1, index.unsqueeze(-1).expand(-1, -1, source.shape[-1]))
    return torch.where(valid.unsqueeze(-1), aligned, summary)


def summary_partner(source, source_mask, target_positions, alignment, causal):
    """Every target token meets the mean of the English tokens it may see."""
    return source_summary(source, source_mask, target_positions, causal)


PAIRINGS = {
    "position": position_partner,
    "aligned": aligned_partner,
    "summary": summary_partner,
}


class PositionwiseFusion(nn.Module):
    """A parameter-free fusion: each target token's partner (its pairing), then the function of the two."""

    def __init__(self, name: str, causal: bool = False):
        super().__init__()
        self.name = name
        pairing, function = split_fusion(name)
        self.pairing, self.fn = PAIRINGS[pairing], FUNCTIONS[function]
        self.causal = causal

    def forward(self, target: torch.Tensor, source: torch.Tensor, source_mask: torch.Tensor,
                target_positions: torch.Tensor | None = None, alignment: torch.Tensor | None = None) -> torch.Tensor:
        check_rows(target, source)
        positions = default_positions(target) if target_positions is None else target_positions
        partner = self.pairing(source, source_mask, positions, alignment, self.causal)
        return self.fn(target, partner.to(target.dtype))

    def extra_repr(self) -> str:
        return f"{self.name}, causal={self.causal}"


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
                target_positions: torch.Tensor | None = None, alignment: torch.Tensor | None = None) -> torch.Tensor:
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
    return PositionwiseFusion(name, causal=causal)
