"""Which English token each target token aligns to, from the frozen model's own states (``aligned_*`` fusions).

SimAlign's argmax method (Jalili Sabet et al., 2020): read both texts' hidden states at a middle layer of
the frozen model (adapters bypassed, eval mode), take cosine similarities, and align a target token with
an English token when each is the other's most similar token (mutual argmax). Parameter-free, so FLARE
keeps its parameter count; a target token without a mutual partner gets -1 and the fusion falls back to the
English summary. In a causal stack only English tokens at relative positions <= the target token's are
candidates, and an English token's preference is taken over target tokens up to the current one: no decoder
position's partner depends on later English or later target tokens.
"""

from __future__ import annotations

from typing import Mapping

import torch

from xlt.flare.fusion import relative_positions

NO_PARTNER = -1


def alignment_layer(num_layers: int, configured: int | None) -> int:
    """The 0-based index of the layer whose output is compared: ``configured`` (1-based, as in
    ``hidden_states[k]``), else two thirds of the way up (SimAlign's best layer for mBERT is 8 of 12)."""
    layer = configured if configured is not None else max(1, round(2 * num_layers / 3))
    if not 1 <= layer <= num_layers:
        raise ValueError(f"alignment_layer must be between 1 and {num_layers} (the stack's layers), got {layer}")
    return layer - 1


def mutual_argmax(target: torch.Tensor, target_mask: torch.Tensor, source: torch.Tensor, source_mask: torch.Tensor,
                  causal: bool) -> torch.Tensor:
    """(B, T) relative index of each target token's English partner among the real English tokens, -1 for none.

    ``target`` (B, T, d) and ``source`` (B, S, d) are hidden states, the masks mark real tokens (any padding side).
    """
    similarity = torch.nn.functional.normalize(target.float(), dim=-1) @ \
        torch.nn.functional.normalize(source.float(), dim=-1).transpose(1, 2)  # (B, T, S)
    target_rel, source_rel = relative_positions(target_mask), relative_positions(source_mask)
    allowed = target_mask.bool().unsqueeze(-1) & source_mask.bool().unsqueeze(1)
    if causal:
        allowed = allowed & (source_rel.unsqueeze(1) <= target_rel.unsqueeze(-1))
    similarity = similarity.masked_fill(~allowed, float("-inf"))
    best_source = similarity.argmax(-1)  # (B, T)
    chosen = torch.gather(similarity, 2, best_source.unsqueeze(-1)).squeeze(-1)  # its similarity, (B, T)
    if causal:  # the English token prefers this target token over every *earlier* one (later ones unseen)
        rivals = torch.cummax(similarity, 1).values
    else:  # the English token prefers this target token over every other one
        rivals = similarity.max(1, keepdim=True).values.expand_as(similarity)
    best_rival = torch.gather(rivals, 2, best_source.unsqueeze(-1)).squeeze(-1)
    mutual = (chosen >= best_rival) & allowed.any(-1)
    partner = torch.gather(source_rel, 1, best_source)
    return torch.where(mutual, partner, torch.full_like(partner, NO_PARTNER))


def alignments(target_states: Mapping[int, torch.Tensor], target_masks: list[torch.Tensor],
               source_states: Mapping[int, torch.Tensor], source_masks: list[torch.Tensor],
               causal: list[bool]) -> dict[int, torch.Tensor]:
    """Per stack, the mutual-argmax alignment of the target and English states of that stack's middle layer."""
    return {s: mutual_argmax(target_states[s], target_masks[s], source_states[s], source_masks[s], causal[s])
            for s in target_states}


def positional_agreement(alignment: torch.Tensor, target_mask: torch.Tensor) -> tuple[int, int, int]:
    """(target tokens, tokens with an aligned partner, tokens whose partner is the English token at their own
    relative position): how often the paper's position-wise pairing meets the token's translation."""
    real = target_mask.bool()
    aligned = real & (alignment >= 0)
    same = aligned & (alignment == relative_positions(target_mask))
    return int(real.sum()), int(aligned.sum()), int(same.sum())
