"""Fusion functions: how the source bottleneck S = A·x_src meets the target bottleneck T = A·x_tgt.

A position-wise fusion is one function of two equal-shaped tensors plus one line in
``POSITIONWISE``. Cross-attention is the one fusion with parameters. Every fusion is an
``nn.Module`` taking ``(target, source, source_mask)`` so the FLARE layer treats them alike.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from xlt.errors import XltError


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
FUSIONS = (*POSITIONWISE, "cross_attention")


def align_to_target(source: torch.Tensor, source_mask: torch.Tensor, target_len: int) -> torch.Tensor:
    """Zero the padded source positions, then pad or truncate the source to the target length.

    Position-wise fusion pairs source position j with target position j; a padded source
    position must contribute nothing, never the hidden state of a pad token.
    """
    source = source * source_mask.unsqueeze(-1).to(source.dtype)
    length = source.shape[1]
    if length >= target_len:
        return source[:, :target_len]
    return nn.functional.pad(source, (0, 0, 0, target_len - length))


class PositionwiseFusion(nn.Module):
    """A parameter-free fusion applied position by position after length alignment."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.fn = POSITIONWISE[name]

    def forward(self, target: torch.Tensor, source: torch.Tensor, source_mask: torch.Tensor) -> torch.Tensor:
        return self.fn(target, align_to_target(source, source_mask, target.shape[1]).to(target.dtype))

    def extra_repr(self) -> str:
        return self.name


class CrossAttentionFusion(nn.Module):
    """Single-head attention in the rank-r bottleneck: target queries, source keys and values.

    Output is ``T + softmax(QK^T/sqrt(r) + masks)·V``. Source padding is masked; with
    ``causal=True`` target position i sees source positions <= i only (decoder models must not
    see the future). A target row with no visible source position gets a zero attention output.
    """

    def __init__(self, rank: int, causal: bool = False):
        super().__init__()
        self.q = nn.Linear(rank, rank, bias=False)
        self.k = nn.Linear(rank, rank, bias=False)
        self.v = nn.Linear(rank, rank, bias=False)
        self.causal = causal
        self.scale = 1.0 / math.sqrt(rank)

    def forward(self, target: torch.Tensor, source: torch.Tensor, source_mask: torch.Tensor) -> torch.Tensor:
        source = source.to(target.dtype)
        scores = torch.matmul(self.q(target), self.k(source).transpose(1, 2)) * self.scale
        visible = source_mask.bool().unsqueeze(1).expand(-1, target.shape[1], -1)
        if self.causal:
            t_idx = torch.arange(target.shape[1], device=target.device).unsqueeze(1)
            s_idx = torch.arange(source.shape[1], device=target.device).unsqueeze(0)
            visible = visible & (s_idx <= t_idx).unsqueeze(0)
        scores = scores.masked_fill(~visible, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1) * visible.any(-1, keepdim=True).to(scores.dtype)
        return target + torch.matmul(weights, self.v(source))

    def extra_repr(self) -> str:
        return f"rank={self.q.in_features}, causal={self.causal}"


def check_fusion_name(name: str) -> str:
    """Unknown names are an error, never a silent fallback to plain LoRA."""
    if name not in FUSIONS:
        raise XltError(f"unknown fusion {name!r}; choose one of: {', '.join(FUSIONS)}")
    return name


def build_fusion(name: str, rank: int, causal: bool = False) -> nn.Module:
    check_fusion_name(name)
    if name == "cross_attention":
        return CrossAttentionFusion(rank, causal=causal)
    return PositionwiseFusion(name)
