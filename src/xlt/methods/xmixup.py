"""X-Mixup (Yang et al., ICLR 2022, "Enhancing Cross-lingual Transfer by Manifold Mixup") as a PEFT baseline.

The task model reads each example twice, its source (English) version and its target-language version,
in one call::

    model(input_ids=..., attention_mask=...,                 # the target-language text
          source_input_ids=..., source_attention_mask=...,   # the same example in English (or pivot / MT)
          labels=...)                                        # training only: .loss is the X-Mixup objective

At each mixing layer L the target's hidden states take in the source's through a cross-attention,

    h_T' = λ · MHA(Q=h_T, K=h_S, V=h_S) + (1 − λ) · h_T        (source padding masked)

and the rest of the model continues from h_T'. A forward pre-hook on the task model takes the ``source_*``
keywords out of the call and runs the source pass (the same model, same adapter, with grad: both sides
train) while forward hooks on the mixing layers record h_S; the target pass then mixes; a forward hook
replaces the target's loss by the objective when ``labels`` came with the call. Training loops, ``predict``
and the batches know nothing of X-Mixup beyond the ``source_*`` inputs FLARE uses too.

What the paper does, what is done here, and why:

- **where**: the paper mixes inside the layers of a range, its cross-attention next to each layer's
  self-attention. Here the *output* of each layer of ``--mixup-layers`` (1-based; default the middle
  layer) is mixed, with a module of its own: the same place in every family, no layer internals rewritten.
- **the module**: one multi-head attention per mixing layer (the model's head count, no dropout), its
  query/key/value/output projections initialized to the identity: at the start MHA(h_T, h_S, h_S) is a
  similarity-weighted average of real source states and h_T' a convex mix of the two languages' states
  (manifold mixup proper, and no random perturbation of the English model); training learns the alignment.
- **λ**: ``--mixup-schedule entropy`` (default), the paper's adaptive ratio λ = λ0 · σ(w · H + b), with H
  the pairwise entropy of the cross-attention (target→source rows plus source→target columns of the same
  scores, each averaged over heads and real positions; a low entropy marks a sharp alignment), w = 1 and
  b = 0 at the start and trained (the official release initializes them so), one pair per mixing layer,
  λ0 = ``--mixup-lambda`` (default 0.5, the release's value). ``--mixup-schedule fixed``: λ = ``--mixup-lambda``.
- **losses** (training): α · CE(source) + (1 − α) · CE(mixed target) + KL(p_S ‖ p_T) + MSE(r_S, r_T), with
  α = 0.4 and unit consistency weights as in the official release; r is the pooled state the task head
  reads (the release: the first token, its head's input); KL and MSE reach both sides (no stop-gradient).
- **test time**: the target is mixed with the example's source as in training (the paper's mixup
  inference); the source is the gold English, or with ``--source-from`` the pivot or MT text.
- **not reproduced**: the paper's scheduled sampling between gold and translated source in training, which
  bridges its gold-source training and MT-source testing: here stage 2 trains and tests on the same kind of
  source text (``run.stage2_data`` translates both splits under ``--source-from mt:``/``lexicon``).
- **PEFT**: the English model stays frozen; LoRA on the attention query/value (as ``lora``) and the mixing
  module train, nothing else. The module is the task model's ``xmixup`` attribute, given to PEFT as
  ``modules_to_save``: it is saved in ``adapter_model.safetensors`` and :func:`xlt.methods.adapters.load_adapter`
  loads and checks it with the LoRA tensors.
- **families**: encoders, and decoders with a classification head (last-token pooling). In a causal stack
  each target position attends to every source position and to no other target position: the source is a
  separate, complete text the model is given as a whole (at test time too), so no future target token
  leaks; the target's own causal self-attention is unchanged (with a fixed λ, position t still depends on
  target tokens <= t only). The entropy λ is one number per example, read from the whole target: fine for a
  classification head, which reads the last token (it has seen the whole text anyway), and one more reason
  generation is refused. mT5, generation, tagging and the verbalizer
  classifier are refused (``xlt.config``, ``xlt.runs.recipe.resolve_defaults`` and :func:`add_mixup`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from xlt.errors import XltError
from xlt.models.architectures import Architecture

XMIXUP = "xmixup"  # the task model's attribute holding the mixing module (PEFT modules_to_save)
SOURCE_PREFIX = "source_"
SOURCE_WEIGHT = 0.4  # α: the source's share of the task loss (official release)
SCHEDULES = ("fixed", "entropy")


@dataclass(frozen=True)
class MixupSettings:
    layers: tuple[int, ...] | None = None  # 1-based layers whose output is mixed; None: the middle layer
    lam: float = 0.5  # λ (fixed) or λ0 (entropy)
    schedule: str = "entropy"


def _identity(linear: nn.Linear) -> nn.Linear:
    with torch.no_grad():
        linear.weight.copy_(torch.eye(linear.out_features, linear.in_features))
        linear.bias.zero_()
    return linear


def masked_entropy(scores: torch.Tensor, keep: torch.Tensor, dim: int) -> torch.Tensor:
    """Entropy of ``softmax(scores)`` along ``dim`` over the positions ``keep`` marks (masked ones weigh 0)."""
    p = scores.masked_fill(~keep, torch.finfo(scores.dtype).min).softmax(dim)
    return -(p * p.clamp_min(1e-30).log()).sum(dim)


def pair_entropy(scores: torch.Tensor, target_mask: torch.Tensor, source_mask: torch.Tensor) -> torch.Tensor:
    """(B, heads, T, S) scores → (B,): mean entropy of the target→source rows over real target positions
    plus that of the source→target columns over real source positions, both averaged over heads."""
    t_real, s_real = target_mask.bool(), source_mask.bool()
    rows = masked_entropy(scores, s_real[:, None, None, :], -1).mean(1)  # (B, T)
    cols = masked_entropy(scores, t_real[:, None, :, None], -2).mean(1)  # (B, S)
    t, s = t_real.to(rows.dtype), s_real.to(cols.dtype)
    return (rows * t).sum(1) / t.sum(1).clamp(min=1) + (cols * s).sum(1) / s.sum(1).clamp(min=1)


class MixupAttention(nn.Module):
    """Cross-attention of target states over source states, identity-initialized; with the λ gate (w, b)."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        if hidden % heads:
            raise XltError(f"x-mixup: hidden size {hidden} is not divisible into {heads} heads")
        self.heads = heads
        self.query, self.key, self.value, self.output = (_identity(nn.Linear(hidden, hidden)) for _ in range(4))
        self.gate = nn.Linear(1, 1)  # λ = λ0 · σ(w · H + b)
        with torch.no_grad():
            self.gate.weight.fill_(1.0)
            self.gate.bias.zero_()

    def forward(self, target: torch.Tensor, source: torch.Tensor,
                source_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MHA(Q=target, K=V=source) (B, T, H) and its float scores (B, heads, T, S), padded keys at -inf."""
        (b, t, hidden), s, h = target.shape, source.shape[1], self.heads
        q = self.query(target).view(b, t, h, hidden // h).transpose(1, 2)
        k = self.key(source).view(b, s, h, hidden // h).transpose(1, 2)
        v = self.value(source).view(b, s, h, hidden // h).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2)).float() / math.sqrt(hidden // h)
        weights = scores.masked_fill(~source_mask.bool()[:, None, None, :], torch.finfo(scores.dtype).min).softmax(-1)
        attended = (weights.to(v.dtype) @ v).transpose(1, 2).reshape(b, t, hidden)
        return self.output(attended), scores


class XMixup(nn.Module):
    """The trainable mixing module: one :class:`MixupAttention` per mixing layer and the λ rule."""

    def __init__(self, hidden: int, heads: int, layers: tuple[int, ...], lam: float, schedule: str):
        super().__init__()
        if schedule not in SCHEDULES:
            raise XltError(f"mixup schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        self.layers, self.lam, self.schedule = tuple(layers), float(lam), schedule
        self.attention = nn.ModuleDict({str(layer): MixupAttention(hidden, heads) for layer in self.layers})

    def ratio(self, layer: int, scores: torch.Tensor, target_mask: torch.Tensor,
              source_mask: torch.Tensor) -> torch.Tensor:
        """λ per example, (B, 1, 1)."""
        if self.schedule == "fixed":
            return torch.full((scores.shape[0], 1, 1), self.lam, device=scores.device)
        gate = self.attention[str(layer)].gate
        entropy = pair_entropy(scores, target_mask, source_mask)
        return (self.lam * torch.sigmoid(gate(entropy[:, None].to(gate.weight.dtype)))).float()[:, :, None]

    def forward(self, layer: int, target: torch.Tensor, target_mask: torch.Tensor, source: torch.Tensor,
                source_mask: torch.Tensor) -> torch.Tensor:
        """h_T' = λ · MHA(h_T, h_S, h_S) + (1 − λ) · h_T, in the target's dtype."""
        attended, scores = self.attention[str(layer)](target, source, source_mask)
        lam = self.ratio(layer, scores, target_mask, source_mask)
        return (lam * attended + (1 - lam) * target).to(target.dtype)


def loss_terms(source_logits: torch.Tensor, target_logits: torch.Tensor, source_rep: torch.Tensor,
               target_rep: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The objective's terms: CE of the source and of the mixed target, KL(p_S ‖ p_T) and MSE(r_S, r_T),
    each averaged over the batch (MSE also over hidden units)."""
    ce = nn.functional.cross_entropy
    log_s, log_t = source_logits.float().log_softmax(-1), target_logits.float().log_softmax(-1)
    return {"source_ce": ce(source_logits.float(), labels), "target_ce": ce(target_logits.float(), labels),
            "kl": (log_s.exp() * (log_s - log_t)).sum(-1).mean(),
            "mse": (source_rep.float() - target_rep.float()).pow(2).mean()}


def mixup_loss(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """α · CE(source) + (1 − α) · CE(mixed target) + KL + MSE."""
    return (SOURCE_WEIGHT * terms["source_ce"] + (1 - SOURCE_WEIGHT) * terms["target_ce"]
            + terms["kl"] + terms["mse"])


def _hidden(output) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


@dataclass
class _Source:
    mask: torch.Tensor
    logits: torch.Tensor
    rep: torch.Tensor


class MixupWiring:
    """The hooks that run the source pass and mix the target's states (no weights: those are in :class:`XMixup`).

    ``task_model`` is the pooled classifier PEFT wraps; its ``xmixup`` attribute (PEFT's wrapper around
    :class:`XMixup` once attached) is called by name, so the adapter's copy is the one that mixes.
    """

    def __init__(self, task_model: nn.Module, arch: Architecture, module: XMixup):
        self.task_model = task_model
        self.module = module  # as added; its settings (PEFT trains and saves its copy)
        self.pooling = task_model.pooling
        self.layers = layers = module.layers
        self.last_terms: dict[str, torch.Tensor] = {}  # the last labelled call's loss terms (detached; a diagnostic)
        self._mode: str | None = None  # "source" (recording) | "target" (mixing) | None (plain)
        self._states: dict[int, torch.Tensor] = {}
        self._source: _Source | None = None
        self._target_mask: torch.Tensor | None = None
        self._last_hidden: torch.Tensor | None = None
        stack = task_model.base_model.get_submodule(arch.stacks[0].layers)
        for layer in layers:
            stack[layer - 1].register_forward_hook(partial(self._at_layer, layer))
        task_model.base_model.register_forward_hook(self._at_backbone)
        task_model.register_forward_pre_hook(self._before, with_kwargs=True)
        task_model.register_forward_hook(self._after, with_kwargs=True)

    def _before(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        from xlt.models.pooling import pool

        source = {k[len(SOURCE_PREFIX):]: kwargs.pop(k) for k in list(kwargs) if k.startswith(SOURCE_PREFIX)}
        self._mode, self._states, self._source = None, {}, None
        if not source or "input_ids" not in source:
            raise ValueError("an X-Mixup model needs the source text of the batch: pass source_input_ids and "
                             "source_attention_mask")
        source_mask = source.get("attention_mask", torch.ones_like(source["input_ids"]))
        target_ids = args[0] if args else kwargs["input_ids"]
        target_mask = kwargs.get("attention_mask")
        self._target_mask = torch.ones_like(target_ids) if target_mask is None else target_mask
        self._mode = "source"
        out = module.forward(**source)  # forward, not __call__: these hooks stay out of the source pass
        self._source = _Source(source_mask, out.logits, pool(self._last_hidden, source_mask, self.pooling))
        self._mode = "target"
        return args, kwargs

    def _at_layer(self, layer: int, module: nn.Module, args: tuple, output):
        if self._mode == "source":
            self._states[layer] = _hidden(output)
        elif self._mode == "target":
            hidden = _hidden(output)
            mixed = getattr(self.task_model, XMIXUP)(layer, hidden, self._target_mask, self._states[layer],
                                                     self._source.mask)
            return (mixed, *output[1:]) if isinstance(output, (tuple, list)) else mixed
        return None

    def _at_backbone(self, module: nn.Module, args: tuple, output) -> None:
        self._last_hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else _hidden(output)

    def _after(self, module: nn.Module, args: tuple, kwargs: dict, output):
        from xlt.models.pooling import pool

        source, self._mode, self._states, self._source = self._source, None, {}, None
        labels = kwargs.get("labels")
        if labels is not None:
            target_rep = pool(self._last_hidden, self._target_mask, self.pooling)
            terms = loss_terms(source.logits, output.logits, source.rep, target_rep, labels)
            output.loss = mixup_loss(terms)
            self.last_terms = {name: value.detach() for name, value in terms.items()}
        self._last_hidden = None
        return output


def default_layer(num_layers: int) -> int:
    from xlt.models.architectures import middle_layer

    return middle_layer(num_layers)


def add_mixup(task_model: nn.Module, settings: MixupSettings) -> XMixup:
    """Put a fresh :class:`XMixup` on ``task_model`` (before PEFT wraps it); layers checked against the model."""
    from xlt.models.classifier import PooledClassifier

    if not isinstance(task_model, PooledClassifier):
        raise XltError("x-mixup needs a classification head over pooled states (encoders; decoders with "
                       "--decoder-classifier head), not mT5's or the verbalizer's")
    config = task_model.config
    count = config.num_hidden_layers
    layers = settings.layers or (default_layer(count),)
    bad = [layer for layer in layers if not 1 <= layer <= count]
    if bad or len(set(layers)) != len(layers):
        raise XltError(f"--mixup-layers must be distinct layers 1..{count} of this model, got "
                       f"{','.join(map(str, layers))}")
    module = XMixup(config.hidden_size, config.num_attention_heads, tuple(sorted(layers)), settings.lam,
                    settings.schedule)
    setattr(task_model, XMIXUP, module.to(next(task_model.parameters()).device))
    return module


def describe(wiring: MixupWiring) -> dict:
    """What xlt_adapter.json records of the mixing (a load under other values is refused)."""
    module = wiring.module
    return {"layers": list(module.layers), "lambda": module.lam, "schedule": module.schedule}
