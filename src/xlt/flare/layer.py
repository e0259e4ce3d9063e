"""The FLARE LoRA layer: LoRA whose rank-r bottleneck fuses the source-language representation.

``h = W·x + B(fuse(A·drop(x), A·x_src)) · scaling``: one down-projection A shared by both
languages, the fusion in the bottleneck, the up-projection B after it, LoRA scaling once.

The source input ``x_src``, the target tokens' relative positions and (``aligned_*`` fusions) each target
token's aligned source token are set on the layer by
:class:`xlt.flare.tuner.FlareTuner` at the start of every model call and stay until the next
call, so a gradient-checkpointed re-forward during backward fuses exactly what the forward fused
(as with PEFT's aLoRA this needs one forward per backward: two forwards before one backward under
checkpointing would re-forward the first with the second's states).
A fused layer without source states raises instead of silently acting as plain LoRA, and so does
a fused layer run outside a call of its model (:class:`CallWindow`): the backbone or a layer called
directly, or from another thread while a call runs, would otherwise fuse the last call's English.
Its fusion is causal iff the layer sits in one of the config's ``causal_stacks`` (decoder stacks).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from torch import nn

from xlt.flare.fusion import build_fusion


@dataclass
class SourceStates:
    """The source-language input of one projection: ``states`` (B, Ts, in_features), ``mask`` (B, Ts)."""

    states: torch.Tensor
    mask: torch.Tensor


def in_backward() -> bool:
    """Whether this thread runs a backward pass (where a gradient-checkpointed layer re-forwards)."""
    graph_task = getattr(torch._C, "_current_graph_task_id", None)  # what torch.utils.checkpoint itself reads
    return graph_task is None or graph_task() != -1


class CallWindow:
    """Which model call the FLARE layers' source states belong to: one call of one model at a time.

    The tuner opens it before it sets the states of a call and closes it when the call returns. A
    fused layer runs only inside the open window, on the thread that opened it, or in a backward
    pass (a gradient-checkpointed re-forward of the call). A second call while one runs, from
    another thread or nested in the first, is refused: it would replace the states the first is using.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.owner: int | None = None  # the thread of the running call

    def open(self) -> None:
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("this FLARE model is already running a call (thread "
                               f"{self.owner}): it runs one call at a time; give each thread its own model")
        self.owner = threading.get_ident()

    def close(self) -> None:
        """End this thread's call (a no-op for a thread whose call was refused)."""
        if self.owner == threading.get_ident():
            self.owner = None
            self._lock.release()

    def admits(self) -> bool:
        return self.owner == threading.get_ident() or in_backward()


class FlareLinear(LoraLinear):
    """A PEFT LoRA ``Linear`` whose update fuses source states."""

    adapter_layer_names = LoraLinear.adapter_layer_names + ("lora_fusion",)

    def __init__(self, base_layer: nn.Module, adapter_name: str, config, **kwargs: Any) -> None:
        super().__init__(base_layer, adapter_name, config=config, **kwargs)
        self.fuse = True  # False: plain LoRA here (e.g. mT5 cross-attention, whose input is no token sequence)
        self.in_source_pass = False  # True while the frozen source pass runs: the base layer alone
        self.source: SourceStates | None = None
        self.target_positions: torch.Tensor | None = None  # (B, T) relative positions; None: no left padding
        self.source_alignment: torch.Tensor | None = None  # (B, T) aligned source token per target token (aligned_*)
        self.flare_name = ""  # module path, set by the tuner, for error messages
        self.window: CallWindow | None = None  # the model's call window, set by the tuner
        self._kept_bottleneck: dict[str, tuple] = {}  # adapter → (source states, signature, A·x_src), no-grad calls

    def update_layer(self, adapter_name: str, r: int, lora_alpha: int, config, **kwargs: Any) -> None:
        if "lora_fusion" not in self._modules:
            self.lora_fusion = nn.ModuleDict()  # before super(): it activates every adapter_layer_names dict
        # the causality of the stack this projection sits in (PEFT passes the module's full name)
        self.causal = config.is_causal(kwargs.get("target_name", ""))
        self.lora_fusion[adapter_name] = build_fusion(config.fusion, r, causal=self.causal)
        super().update_layer(adapter_name, r, lora_alpha=lora_alpha, config=config, **kwargs)
        self.lora_fusion[adapter_name].to(self.lora_A[adapter_name].weight.device)

    def merge(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a FLARE adapter cannot be merged into the weights: its update depends on the source input")

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.in_source_pass:
            return self.base_layer(x, *args, **kwargs)
        if self.disable_adapters or not self.fuse:
            return super().forward(x, *args, **kwargs)
        if self.source is None:
            raise RuntimeError(
                f"FLARE layer {self.flare_name or '?'} has no source states: call the model with source_input_ids "
                "and source_attention_mask (or zero_source=True for the diagnostic without a source)"
            )
        if self.window is not None and not self.window.admits():
            raise RuntimeError(
                f"FLARE layer {self.flare_name or '?'} ran outside a call of its FLARE model, where it would fuse "
                "the last call's source states: call the PEFT model with the source_* inputs, not its backbone"
            )
        result = self.base_layer(x, *args, **kwargs)
        out_dtype = result.dtype
        for name in self.active_adapters:
            if name not in self.lora_A:
                continue
            lora_A, lora_B = self.lora_A[name], self.lora_B[name]
            x_in = self._cast_input_dtype(x, lora_A.weight.dtype)
            target = lora_A(self.lora_dropout[name](x_in))
            source = self._source_bottleneck(name, lora_A, x_in.dtype)
            fused = self.lora_fusion[name](target, source, self.source.mask, self.target_positions,
                                           self.source_alignment)
            result = result + lora_B(fused) * self.scaling[name]
        return result.to(out_dtype)

    def _source_bottleneck(self, name: str, lora_A: nn.Module, dtype: torch.dtype) -> torch.Tensor:
        """A·x_src. Without grad (evaluation, decoding) it is kept while the same states object comes back with
        A, the states and the precision unchanged: decoding steps reuse the English prompt's states, so their
        projection runs once per generation instead of once per generated token. With grad it is computed
        every call (A trains, and each forward needs its own graph)."""
        states = self.source.states
        if torch.is_grad_enabled():
            return lora_A(states.to(dtype))
        kind = states.device.type
        signature = (dtype, states._version, lora_A.weight._version, lora_A.weight.data_ptr(),
                     torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None)
        kept = self._kept_bottleneck.get(name)
        if kept is not None and kept[0] is self.source and kept[1] == signature:
            return kept[2]
        bottleneck = lora_A(states.to(dtype))
        self._kept_bottleneck[name] = (self.source, signature, bottleneck)
        return bottleneck

    def drop_kept(self) -> None:
        """Forget the kept A·x_src (a new source was set)."""
        self._kept_bottleneck.clear()

    def __repr__(self) -> str:
        return "flare." + super().__repr__()
