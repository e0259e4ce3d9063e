"""Wires a PEFT model's FLARE layers to the frozen source pass and runs fused forwards.

For every fused projection p in layer i, the source state is what projection p of layer
i+offset receives when the *same model, adapters disabled, in eval mode, without grad* reads
the source-language text; with offset 1 the last layer fuses the stack's final output (after
the final norm in pre-norm models). Because the captured tensor is the projection's own input,
pre-norm models fuse normalized states, never raw residual streams.

``FlareModel.source_states`` is the one place that produces the states; a cache of them (they
never change in stage 2) replaces it without touching the layers.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

import torch
from torch import nn

from xlt.flare.fusion import relative_positions
from xlt.flare.layer import FlareLinear, SourceStates
from xlt.models.architectures import Architecture, Stack

SourceKey = tuple[int, int, str]  # (stack index, layer index, projection path inside the layer)
FINAL = "<final>"


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode and restore each one's own flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def _output_tensor(output) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _check_causality(layer: FlareLinear, stack: Stack, architecture: Architecture) -> None:
    """A fused layer's fusion was built from the config; it must agree with the stack it sits in,
    or a decoder position could attend to source states of later positions (computed from later tokens)."""
    if layer.causal != stack.causal:
        raise ValueError(
            f"FLARE layer {layer.flare_name} is {'' if layer.causal else 'not '}causal but its stack "
            f"{stack.layers} is{'' if stack.causal else ' not'}: build the FlareConfig with "
            f"causal_stacks={architecture.causal_stacks}"
        )


class FlareModel:
    """A PEFT model with FLARE layers plus the source wiring.

    ``peft_model`` is what ``get_peft_model(task_model, FlareConfig(...))`` returned.
    """

    def __init__(self, peft_model: nn.Module, architecture: Architecture, source_layer_offset: int = 1):
        self.model = peft_model
        self.architecture = architecture
        self.offset = source_layer_offset
        self.backbone = peft_model.get_base_model().base_model
        self.wiring: dict[FlareLinear, SourceKey] = {}
        self._modules_by_key: dict[SourceKey, nn.Module] = {}
        for s, stack in enumerate(architecture.stacks):
            layers = self.backbone.get_submodule(stack.layers)
            for i, layer in enumerate(layers):
                for rel, module in layer.named_modules():
                    if not isinstance(module, FlareLinear):
                        continue
                    module.flare_name = f"{stack.layers}.{i}.{rel}"
                    module.fuse = not any(part in rel for part in architecture.unfused)
                    self._modules_by_key[(s, i, rel)] = module
                    if module.fuse:
                        _check_causality(module, stack, architecture)
                        source_i = i + self.offset
                        self.wiring[module] = (s, source_i, rel if source_i < len(layers) else FINAL)
        if not self.wiring:
            raise ValueError("no FLARE layers found: was the model built with a FlareConfig?")

    @property
    def layers(self) -> list[FlareLinear]:
        return list(self.wiring)

    def _capture_module(self, key: SourceKey) -> nn.Module:
        s, i, rel = key
        stack: Stack = self.architecture.stacks[s]
        if rel != FINAL:
            return self._modules_by_key[key]
        if stack.final is not None:
            return self.backbone.get_submodule(stack.final)
        return self.backbone.get_submodule(stack.layers)[-1]

    def _complete(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Encoder-decoder classifiers feed the decoder the shifted input (as MT5ForSequenceClassification
        does); the source pass must call the backbone with the same decoder inputs."""
        inputs = dict(inputs)
        if self.architecture.family == "encoder-decoder" and "decoder_input_ids" not in inputs:
            task_model = self.model.get_base_model()
            inputs["decoder_input_ids"] = task_model._shift_right(inputs["input_ids"])
            # decoder position j reads input token j-1 and is pooled at input j's EOS: it is real iff input j is
            inputs["decoder_attention_mask"] = inputs["attention_mask"]
        return inputs

    @torch.no_grad()
    def source_states(self, source_inputs: Mapping[str, torch.Tensor]) -> dict[FlareLinear, SourceStates]:
        """The frozen source pass: adapters off, eval mode, no grad; returns each fused layer's source."""
        source_inputs = self._complete(source_inputs)
        needed = set(self.wiring.values())
        captured: dict[SourceKey, torch.Tensor] = {}
        hooks = []
        for key in needed:
            module = self._capture_module(key)
            if key[2] == FINAL:
                hook = module.register_forward_hook(lambda m, a, out, key=key: captured.__setitem__(key, _output_tensor(out)))
            else:
                hook = module.register_forward_pre_hook(lambda m, args, key=key: captured.__setitem__(key, args[0]))
            hooks.append(hook)
        try:
            with self.model.disable_adapter(), eval_mode(self.model):
                self.backbone(**source_inputs)
        finally:
            for hook in hooks:
                hook.remove()
        masks = [source_inputs[stack.mask_key] for stack in self.architecture.stacks]
        return {layer: SourceStates(captured[key].detach(), masks[key[0]]) for layer, key in self.wiring.items()}

    def zero_source_states(self, batch_size: int, device: torch.device | None = None) -> dict[FlareLinear, SourceStates]:
        """Source states of zeros: the diagnostic that shows what FLARE does without the English input."""
        states = {}
        for layer in self.wiring:
            ref = layer.lora_A[layer.active_adapters[0]].weight
            zeros = torch.zeros(batch_size, 1, layer.in_features, dtype=ref.dtype, device=device or ref.device)
            states[layer] = SourceStates(zeros, torch.ones(batch_size, 1, dtype=torch.long, device=zeros.device))
        return states

    def target_positions(self, target_inputs: Mapping[str, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Each stack's relative target positions, from the mask of the inputs the task model reads."""
        return {s: relative_positions(target_inputs[stack.mask_key])
                for s, stack in enumerate(self.architecture.stacks) if stack.mask_key in target_inputs}

    @contextmanager
    def fusing(self, states: Mapping[FlareLinear, SourceStates],
               target_positions: Mapping[int, torch.Tensor] | None = None) -> Iterator[None]:
        """Set the source states for every fused layer for one forward (and its backward)."""
        missing = [layer.flare_name for layer in self.wiring if layer not in states]
        if missing:
            raise ValueError(f"no source states for FLARE layers: {', '.join(missing[:3])}")
        positions = target_positions or {}
        for layer, (stack, _, _) in self.wiring.items():
            layer.source = states[layer]
            layer.target_positions = positions.get(stack)
        try:
            yield
        finally:
            for layer in self.wiring:
                layer.source = None
                layer.target_positions = None
