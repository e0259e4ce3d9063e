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
"""

from __future__ import annotations

import sys


def register_flare() -> None:
    """Teach PEFT the "FLARE" peft_type: its config class, tuner and state-dict prefix.

    PEFT's ``register_peft_method`` accepts only names of its own ``PeftType`` enum, so the same
    three table entries it would write are written here under the plain string (``PeftType`` is a
    ``str`` enum: lookups by a saved config's ``"FLARE"`` find them alike).

    ``import xlt`` calls this as soon as PEFT is imported. When that import comes from inside this
    module or :mod:`xlt.flare.config` (``import xlt.flare.config`` before anything imported PEFT),
    that module is half-built: this does nothing then, and the module calls it again once it is
    done (defined before the imports below so that ``import xlt`` finds it in a half-built tuner).
    """
    config_class = getattr(sys.modules.get("xlt.flare.config"), "FlareConfig", None)
    tuner_class = getattr(sys.modules.get(__name__), "FlareTuner", None)
    if config_class is None or tuner_class is None:
        return
    from peft import mapping

    peft_type = sys.modules["xlt.flare.config"].PEFT_TYPE
    if mapping.PEFT_TYPE_TO_CONFIG_MAPPING.get(peft_type) is config_class:
        return
    mapping.PEFT_TYPE_TO_CONFIG_MAPPING[peft_type] = config_class
    mapping.PEFT_TYPE_TO_TUNER_MAPPING[peft_type] = tuner_class
    mapping.PEFT_TYPE_TO_PREFIX_MAPPING[peft_type] = tuner_class.prefix


from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

import torch  # noqa: E402
from peft.tuners.lora import LoraModel  # noqa: E402
from peft.tuners.tuners_utils import BaseTunerLayer  # noqa: E402
from torch import nn  # noqa: E402

# the config module may be half-built here (see register_flare): its names are read at call time; the
# layer and source-pass modules (which import PEFT themselves) are imported where they are used
from xlt.flare import config as flare_config  # noqa: E402
from xlt.flare.source_cache import SourceStateCache, row_keys  # noqa: E402
from xlt.models.architectures import architecture_for  # noqa: E402

if TYPE_CHECKING:
    from xlt.flare.source_pass import SourceWiring

SOURCE_PREFIX = "source_"
ZERO_SOURCE = "zero_source"


class FlareTuner(LoraModel):
    """PEFT's LoRA tuner with FLARE layers (registered for ``peft_type`` "FLARE")."""

    prefix = "lora_"

    def __init__(self, model: nn.Module, config, adapter_name: str = "default", **kwargs: Any) -> None:
        self.wiring: SourceWiring | None = None
        self.source_cache: SourceStateCache | None = None
        self.source_rows_computed = 0  # examples that went through the frozen pass (cache misses)
        self._reused: tuple[tuple, dict] | None = None  # the last call's source tensors (held) and states
        super().__init__(model, config, adapter_name, **kwargs)
        self.model.register_forward_pre_hook(self._take_source_inputs, with_kwargs=True)

    # --- building ---------------------------------------------------------------------------

    def _check_new_adapter_config(self, config) -> None:
        if not isinstance(config, flare_config.FlareConfig):
            raise ValueError(f"a FLARE model takes FlareConfig adapters, not {type(config).__name__}")
        super()._check_new_adapter_config(config)
        offsets = {c.source_layer_offset for c in self.peft_config.values()}
        if len(offsets) > 1:
            raise ValueError(f"all FLARE adapters of one model must share source_layer_offset, got {sorted(offsets)}")

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

        architecture = architecture_for(model.config.model_type)
        self.wiring = SourceWiring(model, architecture, config.source_layer_offset)

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
        """Keep each example's source states for the rest of the run (memory up to ``max_bytes``, then disk)."""
        self.source_cache = SourceStateCache(max_bytes, spill_dir)
        return self.source_cache

    def _fusing(self) -> bool:
        return any(not layer.disable_adapters for layer in self.wiring.layers)

    def _take_source_inputs(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if self.wiring.all_layers[0].in_source_pass:
            return args, kwargs  # the frozen pass itself: mT5's backbone is the task model, so it calls this hook too
        source = {k[len(SOURCE_PREFIX):]: kwargs.pop(k) for k in list(kwargs) if k.startswith(SOURCE_PREFIX)}
        zero = bool(kwargs.pop(ZERO_SOURCE, False))
        if not self._fusing():
            return args, kwargs
        target = dict(kwargs)
        if args:
            target.setdefault("input_ids", args[0])
        rows, lengths = self._target_shape(target)
        if zero:
            device = next(iter(self.wiring.layers)).lora_A[self.active_adapters[0]].weight.device
            states = self.wiring.zero_states(rows, device)
        elif source:
            states = self._source_states(source)
        else:
            raise ValueError("a FLARE model needs the source text of the batch: pass source_input_ids and "
                             "source_attention_mask (or zero_source=True for the diagnostic without a source)")
        self.wiring.set(states, self.wiring.target_positions(target, lengths))
        return args, kwargs

    def _target_shape(self, target: dict) -> tuple[int, dict[int, int]]:
        """Rows of the call and, per stack, how many positions it reads (fewer than the mask with a KV cache)."""
        first = target.get("input_ids", target.get("inputs_embeds"))
        lengths = {0: first.shape[1]}
        decoder = target.get("decoder_input_ids", target.get("decoder_inputs_embeds"))
        if decoder is not None:
            lengths[1] = decoder.shape[1]
        return first.shape[0], lengths

    def _source_states(self, source: dict[str, torch.Tensor]) -> dict:
        tensors = tuple(source.values())  # held in _reused, so a freed tensor's id can never match a new one
        if self._reused is not None and len(self._reused[0]) == len(tensors) and all(
                a is b for a, b in zip(self._reused[0], tensors)):
            return self._reused[1]  # the next decoding step of the same batch
        source = self.wiring.complete(source)
        if self.source_cache is None:
            self.source_rows_computed += len(source["input_ids"])
            states = self.wiring.states(self.wiring.run(source), source)
        else:
            states = self._cached_states(source)
        self._reused = (tensors, states)
        return states

    def _cached_states(self, source: dict[str, torch.Tensor]) -> dict:
        masks = {name: source[self._mask_name(name)] for name in source}
        keys = row_keys(source, masks)
        rows = [self.source_cache.get(key) for key in keys]
        first_missing = {keys[b]: b for b in reversed(range(len(keys))) if rows[b] is None}  # repeats run once
        if first_missing:
            index = torch.tensor(sorted(first_missing.values()), device=source["input_ids"].device)
            subset = {name: value.index_select(0, index) for name, value in source.items()}
            for b, row in zip(index.tolist(), self.wiring.split_rows(self.wiring.run(subset), subset)):
                self.source_cache.put(keys[b], row)
            self.source_rows_computed += len(first_missing)
            rows = [self.source_cache.get(key) if row is None else row for key, row in zip(keys, rows)]
        return self.wiring.join_rows(rows, source)

    def _mask_name(self, input_name: str) -> str:
        decoder = input_name.startswith("decoder_")
        stacks = self.wiring.architecture.stacks
        return stacks[1].mask_key if decoder and len(stacks) > 1 else "attention_mask"


register_flare()
