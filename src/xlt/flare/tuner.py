"""FLARE as a PEFT method: the tuner that builds FLARE layers and feeds them the frozen source pass.

The source text enters through the model call, like any other input::

    model(input_ids=..., attention_mask=...,                       # the target-language text
          source_input_ids=..., source_attention_mask=...)         # the same example in English
    model(input_ids=..., attention_mask=..., zero_source=True)     # diagnostic: fuse zeros instead

Every ``source_*`` keyword is one input of the source batch (``source_token_type_ids``,
``source_decoder_input_ids``, ...). A forward pre-hook on the task model takes them out of the
call, runs (or reuses) the frozen source pass and sets the states on the FLARE layers before the
task model runs, so training loops, ``predict`` and ``generate()`` need to know nothing about
FLARE. Within one ``generate()`` the same source tensors come with every step and their states
are reused; with :meth:`FlareTuner.enable_source_cache` they are computed once per example
for the whole run.

FLARE-MT (``FlareConfig.mt_encoder``): the ``source_*`` inputs are the *target* text tokenized for an
MT model; its frozen encoder replaces the frozen pass (cached alike), and a trained projection
(``lora_mt_projection``, a tuner-level module PEFT saves with the adapter, as VeRA's shared
matrices) maps its states to the model's width for every fused layer.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from peft.tuners.lora import LoraModel
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

# the config module may be half-built here (xlt.flare.registration): its names are read at call time; the
# layer and source-pass modules (which import PEFT themselves) are imported where they are used
from xlt.flare import config as flare_config
from xlt.flare.fusion_names import needs_alignment
from xlt.flare.source_cache import SourceStateCache, precision_tag, row_keys
from xlt.flare.token_alignment import alignment_layer, alignments
from xlt.models.architectures import architecture_for, backbone_model_type

if TYPE_CHECKING:
    from xlt.flare.source_pass import SourceWiring

SOURCE_PREFIX = "source_"
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "decoder_input_ids", "decoder_attention_mask")
ZERO_SOURCE = "zero_source"


class FlareTuner(LoraModel):
    """PEFT's LoRA tuner with FLARE layers (registered for ``peft_type`` "FLARE")."""

    prefix = "lora_"

    def __init__(self, model: nn.Module, config, adapter_name: str = "default", **kwargs: Any) -> None:
        self.wiring: SourceWiring | None = None
        self.source_cache: SourceStateCache | None = None
        self.source_rows_computed = 0  # examples that went through the frozen pass (cache misses)
        self.training_rows_computed = 0  # the same, in training-mode calls only
        self.training_sources: set[str] = set()  # content digests of the source rows training-mode calls read
        # the last call's source tensors (held), their versions and precision, and their frozen states
        self._reused: tuple[tuple, tuple, object] | None = None
        object.__setattr__(self, "_mt_encoder", None)  # FLARE-MT: held aside, never a submodule (see mt_encoder)
        super().__init__(model, config, adapter_name, **kwargs)
        self.model.register_forward_pre_hook(self._take_source_inputs, with_kwargs=True)
        self.model.register_forward_hook(self._end_call, with_kwargs=True, always_call=True)

    # --- building ---------------------------------------------------------------------------

    def _check_new_adapter_config(self, config) -> None:
        if not isinstance(config, flare_config.FlareConfig):
            raise ValueError(f"a FLARE model takes FlareConfig adapters, not {type(config).__name__}")
        super()._check_new_adapter_config(config)
        for setting in ("source_layer_offset", "mt_encoder"):
            values = {getattr(c, setting) for c in self.peft_config.values()}
            if len(values) > 1:
                raise ValueError(f"all FLARE adapters of one model must share {setting}, got {sorted(map(str, values))}")

    @staticmethod
    def _create_new_module(lora_config, adapter_name, target, **kwargs):
        from xlt.flare.layer import FlareLinear

        base = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
        if not isinstance(base, nn.Linear):
            raise ValueError(f"FLARE adapts nn.Linear projections, not {type(base).__name__}")
        return FlareLinear(target, adapter_name, config=lora_config, **kwargs)

    def inject_adapter(self, model: nn.Module, adapter_name: str, *args: Any, **kwargs: Any) -> None:
        super().inject_adapter(model, adapter_name, *args, **kwargs)
        config = self.peft_config[adapter_name]
        from xlt.flare.source_pass import SourceWiring

        architecture = architecture_for(backbone_model_type(model.config))  # xlt's pooled classifier: its backbone's
        self.wiring = SourceWiring(model, architecture, config.source_layer_offset)
        if config.mt_encoder is not None:
            self._add_mt_projection(adapter_name, config)

    def _add_mt_projection(self, adapter_name: str, config) -> None:
        widths = {layer.in_features for layer in self.wiring.layers}
        if len(widths) != 1:
            raise ValueError(f"FLARE-MT projects the MT states to one width, but the fused layers read {sorted(widths)}")
        if "lora_mt_projection" not in self._modules:
            self.lora_mt_projection = nn.ModuleDict()
        device = next(iter(self.wiring.layers)).lora_A[adapter_name].weight.device
        self.lora_mt_projection[adapter_name] = nn.Linear(config.mt_hidden_size, widths.pop(), device=device)

    @property
    def mt_encoder(self) -> str | None:
        """FLARE-MT's MT model (None: FLARE, whose source is the frozen pass of the task model)."""
        return self.peft_config[self.active_adapters[0]].mt_encoder

    def attach_mt_encoder(self, encoder: nn.Module) -> None:
        """Give FLARE-MT its frozen MT encoder (without one, the first call loads ``mt_encoder`` itself)."""
        encoder.requires_grad_(False)
        object.__setattr__(self, "_mt_encoder", encoder.eval())

    @contextmanager
    def _enable_peft_forward_hooks(self, *args: Any, **kwargs: Any):
        if kwargs.get("adapter_names") is not None or kwargs.get("alora_offsets") is not None:
            raise ValueError("FLARE does not support mixed adapter batches (adapter_names) or aLoRA offsets: "
                             "its source states belong to the whole batch")
        yield

    def forward(self, *args: Any, **kwargs: Any):
        return self.model(*args, **kwargs)  # through __call__, so the source hook runs (BaseTuner calls .forward)

    # --- the source pass --------------------------------------------------------------------

    def enable_source_cache(self, max_bytes: int, spill_dir: str | Path | None = None) -> SourceStateCache:
        """Keep each training example's source states for the rest of the run (memory up to ``max_bytes``,
        then disk).

        Rows are stored only by calls in training mode (``model.train()``, as the training loop runs):
        those are the training set's, read again every epoch. Evaluation and decoding (eval mode) read
        rows already there but store none, so the test set never fills the budget meant for the
        training set (and mT5's decoding, whose source changes with every generated token, never
        floods it). Keys hold the precision of the pass (:func:`precision_tag`).
        """
        self.source_cache = SourceStateCache(max_bytes, spill_dir)
        return self.source_cache

    def source_passes_per_source(self) -> float:
        """Source rows computed in training-mode calls (frozen passes; FLARE-MT: MT encoder passes) per
        distinct source row those calls read (by token content): 1.0 when each distinct English text ran
        once (the cache), the number of epochs without the cache (each copy of a text repeated within a
        batch runs, and counts, apart). Reported as ``source_passes_per_example`` in ``metrics.json``."""
        return round(self.training_rows_computed / max(1, len(self.training_sources)), 3)

    def _fusing(self) -> bool:
        return any(not layer.disable_adapters for layer in self.wiring.layers)

    def _in_own_source_pass(self) -> bool:
        """The frozen pass of this thread's call (mT5's backbone is the task model, so it calls the hooks too)."""
        return self.wiring.in_source_pass and self.wiring.window.owner == threading.get_ident()

    def _take_source_inputs(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if self._in_own_source_pass():
            return args, kwargs
        self.wiring.window.open()  # closed by _end_call, also when this hook or the forward raises
        source = {k[len(SOURCE_PREFIX):]: kwargs.pop(k) for k in list(kwargs) if k.startswith(SOURCE_PREFIX)}
        zero = bool(kwargs.pop(ZERO_SOURCE, False))
        if not self._fusing():
            return args, kwargs
        target = dict(kwargs)
        if args:
            target.setdefault("input_ids", args[0])
        rows, lengths = self._target_shape(target)
        if zero and source:
            raise ValueError(f"zero_source=True fuses zeros instead of the source text: drop it or the source inputs "
                             f"({', '.join(SOURCE_PREFIX + k for k in source)})")
        alignments = None  # zero_source: the aligned pairing falls back to the summary of zeros
        if zero:
            device = next(iter(self.wiring.layers)).lora_A[self.active_adapters[0]].weight.device
            states = self.wiring.zero_states(rows, device)
        elif source:
            self._check_source(source, rows)
            states = self._source_states(source)
            if any(needs_alignment(self.peft_config[name].fusion) for name in self.active_adapters):
                alignments = self._alignments(target, source, lengths)
        else:
            raise ValueError("a FLARE model needs the source text of the batch: pass source_input_ids and "
                             "source_attention_mask (or zero_source=True for the diagnostic without a source)")
        self.wiring.set(states, self.wiring.target_positions(target, lengths), alignments)
        return args, kwargs

    def _end_call(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if not self._in_own_source_pass():
            self.wiring.window.close()

    def _target_shape(self, target: dict) -> tuple[int, dict[int, int]]:
        """Rows of the call and, per stack, how many positions it reads (fewer than the mask with a KV cache).
        The encoder's length comes from its input or, where the call hands over ``encoder_outputs`` (mT5
        decoding), from their states; a call with decoder inputs alone has rows from those."""
        encoder = _first(target, "input_ids", "inputs_embeds")
        if encoder is None and target.get("encoder_outputs") is not None:
            encoder = target["encoder_outputs"][0]  # last_hidden_state, (B, T, d)
        decoder = _first(target, "decoder_input_ids", "decoder_inputs_embeds")
        if encoder is None and decoder is None:
            raise ValueError("a FLARE model call needs its target text: input_ids, inputs_embeds or encoder_outputs")
        lengths = {} if encoder is None else {0: encoder.shape[1]}
        if decoder is not None:
            lengths[1] = decoder.shape[1]
        return (encoder if encoder is not None else decoder).shape[0], lengths

    def _check_source(self, source: dict[str, torch.Tensor], rows: int) -> None:
        """Every source input with its padding mask, one source row per target row (one line each)."""
        if "input_ids" not in source:
            given = ", ".join(SOURCE_PREFIX + k for k in source)
            raise ValueError(f"FLARE's source inputs need source_input_ids, got {given}")
        for name in source:
            mask = self._mask_name(name)
            if mask not in source:
                raise ValueError(f"{SOURCE_PREFIX}{name} needs {SOURCE_PREFIX}{mask} (its padding mask) "
                                 "in the same call")
        if len(source["input_ids"]) != rows:
            raise ValueError(f"the source batch has {len(source['input_ids'])} rows but the target batch has {rows}: "
                             "FLARE fuses each example's own source, one source row per target row")

    def _source_states(self, source: dict[str, torch.Tensor]) -> dict:
        tensors = tuple(source.values())  # held in _reused, so a freed tensor's id can never match a new one
        device = source["input_ids"].device
        signature = (tuple(t._version for t in tensors), precision_tag(device, self._weights_dtype()))
        reused = self._reused
        if reused is not None and reused[1] == signature and len(reused[0]) == len(tensors) and all(
                a is b for a, b in zip(reused[0], tensors)):
            frozen = reused[2]  # the next decoding step of the same batch (no tensor edited in place since)
        else:
            keys = self._row_keys(source) if self.model.training or self.source_cache is not None else None
            if self.mt_encoder is not None:
                frozen = self._mt_states(source, keys)
            else:
                frozen = self._frozen_pass_states(self.wiring.complete(source), keys)
        self._reused = (tensors, signature, frozen)
        return self._project(*frozen) if self.mt_encoder is not None else frozen

    def _alignments(self, target: dict, source: dict[str, torch.Tensor], lengths: dict[int, int]
                    ) -> dict[int, torch.Tensor]:
        """Per stack, each target token's aligned English token (``aligned_*`` fusions): from one frozen pass of
        each text, cached per (target, English) pair in training mode like the source states."""
        target = self.wiring.complete({k: target[k] for k in TEXT_INPUTS if target.get(k) is not None})
        stacks = self.wiring.architecture.stacks
        used = [s for s in sorted(lengths) if stacks[s].mask_key in target]
        for s in used:
            if target[stacks[s].mask_key].shape[1] != lengths[s]:
                raise ValueError("aligned fusions need each call's whole target sequence, but this call reads "
                                 f"{lengths[s]} of {target[stacks[s].mask_key].shape[1]} positions (a decoding "
                                 "step with a KV cache): use a position or summary fusion for generation")
        configured = self.peft_config[self.active_adapters[0]].alignment_layer
        layers = {s: alignment_layer(len(self.wiring.backbone.get_submodule(stacks[s].layers)), configured)
                  for s in used}
        if self.source_cache is None:
            return self._align(target, self.wiring.complete(source), layers)
        keys = [f"align:{t}:{s}" for t, s in zip(self._row_keys(target, count=False), self._row_keys(source))]
        both = {**{"t:" + k: v for k, v in target.items()}, **{"s:" + k: v for k, v in source.items()}}

        def compute(subset: dict) -> list:
            part = {k[2:]: v for k, v in subset.items() if k.startswith("t:")}
            aligned = self._align(part, self.wiring.complete({k[2:]: v for k, v in subset.items()
                                                              if k.startswith("s:")}), layers)
            masks = self.wiring.stack_masks(part) if used else []
            return [tuple(aligned[s][b][masks[s][b].bool()] if s in aligned else None for s in range(len(stacks)))
                    for b in range(len(next(iter(part.values()))))]

        rows = self._cached_rows(both, keys, compute, counted=False)
        masks = self.wiring.stack_masks(target)
        joined = {}
        for s in used:
            joined[s] = torch.full(masks[s].shape, -1, dtype=torch.long, device=masks[s].device)
            for b, row in enumerate(rows):
                joined[s][b][masks[s][b].bool()] = row[s].to(joined[s].device)
        return joined

    def _align(self, target: dict, source: dict, layers: dict[int, int]) -> dict[int, torch.Tensor]:
        causal = [stack.causal for stack in self.wiring.architecture.stacks]
        return alignments(self.wiring.run_layers(target, layers), self.wiring.stack_masks(target),
                          self.wiring.run_layers(source, layers), self.wiring.stack_masks(source), causal)

    def _weights_dtype(self) -> torch.dtype:
        return next(self.wiring.backbone.parameters()).dtype

    def _row_keys(self, source: dict[str, torch.Tensor], count: bool = True) -> list[str]:
        """Each row's content digest; in training mode the distinct ones are counted (source_passes_per_source)
        unless ``count`` is False (the target text's digests, for the token alignment)."""
        if self.mt_encoder is not None:
            masks = {name: source["attention_mask"] for name in source}
        else:
            masks = {name: source[self._mask_name(name)] for name in source}
        keys = row_keys(source, masks)
        if self.model.training and count:
            self.training_sources.update(keys)
        return keys

    def _count_computed(self, rows: int) -> None:
        self.source_rows_computed += rows
        if self.model.training:
            self.training_rows_computed += rows

    def _frozen_pass_states(self, source: dict[str, torch.Tensor], keys: list[str] | None) -> dict:
        if self.source_cache is None:
            self._count_computed(len(source["input_ids"]))
            return self.wiring.states(self.wiring.run(source), source)
        rows = self._cached_rows(source, keys, lambda subset: self.wiring.split_rows(self.wiring.run(subset), subset))
        return self.wiring.join_rows(rows, source)

    def _cached_rows(self, source: dict[str, torch.Tensor], keys: list[str], compute, counted: bool = True) -> list:
        """Each example's row on the batch's device: cached, or from ``compute(subset)`` for the missing ones
        (each distinct text once), stored only in training mode (see :meth:`enable_source_cache`). ``counted``:
        the rows are source passes (source_passes_per_source), not token alignments."""
        device = next(iter(source.values())).device
        tag = precision_tag(device, self._weights_dtype())
        cache_keys = [f"{tag}:{key}" for key in keys]
        rows = [self.source_cache.get(key, device) for key in cache_keys]
        first_missing = {cache_keys[b]: b for b in reversed(range(len(keys))) if rows[b] is None}  # repeats run once
        if first_missing:
            index = torch.tensor(sorted(first_missing.values()), device=device)
            subset = {name: value.index_select(0, index) for name, value in source.items()}
            computed = dict(zip(index.tolist(), compute(subset)))
            if counted:
                self._count_computed(len(first_missing))
            for key, b in first_missing.items():
                if self.model.training:
                    self.source_cache.put(key, computed[b])
            rows = [computed[first_missing[key]] if row is None else row for key, row in zip(cache_keys, rows)]
        return rows

    # --- FLARE-MT ---------------------------------------------------------------------------

    def _mt_states(self, source: dict[str, torch.Tensor], keys: list[str] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The MT encoder's states of the batch, (B, Ts, d_mt), and their mask: frozen, so cached like FLARE's."""
        mask = source["attention_mask"]
        if self.source_cache is None:
            self._count_computed(len(mask))
            return self._run_mt_encoder(source), mask
        rows = self._cached_rows(source, keys, lambda subset: [
            (states[m.bool()].unsqueeze(0),) for states, m in zip(self._run_mt_encoder(subset),
                                                                  subset["attention_mask"])])
        real = mask.bool()
        padded = torch.zeros(*mask.shape, rows[0][0].shape[-1], dtype=rows[0][0].dtype, device=mask.device)
        for b, row in enumerate(rows):
            padded[b][real[b]] = row[0][0].to(padded)
        return padded, mask

    @torch.no_grad()
    def _run_mt_encoder(self, source: dict[str, torch.Tensor]) -> torch.Tensor:
        if self._mt_encoder is None:
            from xlt.flare.mt_encoder import load_mt_encoder

            self.attach_mt_encoder(load_mt_encoder(self.mt_encoder))
        device = source["input_ids"].device
        if next(self._mt_encoder.parameters()).device != device:
            self._mt_encoder.to(device)
        out = self._mt_encoder(input_ids=source["input_ids"], attention_mask=source["attention_mask"])
        return out.last_hidden_state.detach()

    def _project(self, encoded: torch.Tensor, mask: torch.Tensor) -> dict:
        """The trained projection of the MT states, the same source for every fused layer (gradients reach it)."""
        if len(self.active_adapters) != 1:
            raise ValueError("FLARE-MT runs one active adapter at a time: its projection belongs to one adapter")
        projection = self.lora_mt_projection[self.active_adapters[0]]
        from xlt.flare.layer import SourceStates

        states = SourceStates(projection(encoded.to(projection.weight.dtype)), mask)
        return {layer: states for layer in self.wiring.layers}

    def _mask_name(self, input_name: str) -> str:
        decoder = input_name.startswith("decoder_")
        stacks = self.wiring.architecture.stacks
        return stacks[1].mask_key if decoder and len(stacks) > 1 else "attention_mask"


def _first(inputs: dict, *names: str) -> torch.Tensor | None:
    """The first of ``names`` the call has a tensor for (a keyword passed as None counts as absent)."""
    return next((inputs[n] for n in names if inputs.get(n) is not None), None)
