"""The frozen source pass: which state each fused layer receives, and the pass that computes them.

For every fused projection p in layer i, the source state is what projection p of layer
i+offset receives when the *same model, adapters bypassed, in eval mode, without grad* reads
the source-language text; with offset 1 the last layer fuses the stack's final output (after
the final norm in pre-norm models). Because the captured tensor is the projection's own input,
pre-norm models fuse normalized states, never raw residual streams.

The pass captures each distinct state once (q and v of one layer read the same tensor). For the
cache (:mod:`xlt.flare.source_cache`) they are split into per-example *rows* (real positions only)
and padded back into a batch by :meth:`SourceWiring.join_rows`.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Iterator, Mapping

import torch
from torch import nn

from xlt.flare.fusion import relative_positions
from xlt.flare.layer import CallWindow, FlareLinear, SourceStates
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


class SourceWiring:
    """The fused layers of one task model and the module whose input (or output) each one fuses.

    ``task_model`` is the model PEFT wraps (its ``base_model`` is the backbone where the
    architecture table's paths start).
    """

    def __init__(self, task_model: nn.Module, architecture: Architecture, offset: int):
        self.task_model = task_model
        self.architecture = architecture
        self.backbone = task_model.base_model
        self.layers: dict[FlareLinear, SourceKey] = {}  # fused layers → the key of the state they fuse
        self.all_layers: list[FlareLinear] = []
        self.window = CallWindow()  # the model call the layers' states belong to
        self._by_key: dict[SourceKey, nn.Module] = {}
        for s, stack in enumerate(architecture.stacks):
            stack_layers = self.backbone.get_submodule(stack.layers)
            for i, layer in enumerate(stack_layers):
                for rel, module in layer.named_modules():
                    if not isinstance(module, FlareLinear):
                        continue
                    module.flare_name = f"{stack.layers}.{i}.{rel}"
                    module.window = self.window
                    module.fuse = not any(part in rel for part in architecture.unfused)
                    self.all_layers.append(module)
                    self._by_key[(s, i, rel)] = module
                    if module.fuse:
                        _check_causality(module, stack, architecture)
                        source_i = i + offset
                        self.layers[module] = (s, source_i, rel if source_i < len(stack_layers) else FINAL)
        if not self.layers:
            raise ValueError("no FLARE layers found in the model's layer stacks: check target_modules")
        self.keys = sorted(set(self.layers.values()), key=str)  # the distinct states, in a fixed order
        self.same_as: dict[SourceKey, SourceKey] | None = None  # key → the key capturing the same tensor
        self._takes_use_cache = "use_cache" in inspect.signature(self.backbone.forward).parameters

    @property
    def in_source_pass(self) -> bool:
        return self.all_layers[0].in_source_pass

    def stack_masks(self, inputs: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        return [inputs[stack.mask_key] for stack in self.architecture.stacks]

    def complete(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Encoder-decoder classifiers feed the decoder the shifted input (as MT5ForSequenceClassification
        does); the source pass must call the backbone with the same decoder inputs."""
        inputs = dict(inputs)
        if self.architecture.family == "encoder-decoder" and "decoder_input_ids" not in inputs:
            inputs["decoder_input_ids"] = self.task_model._shift_right(inputs["input_ids"])
            # decoder position j reads input token j-1 and is pooled at input j's EOS: it is real iff input j is
            inputs["decoder_attention_mask"] = inputs["attention_mask"]
        return inputs

    def _capture_module(self, key: SourceKey) -> nn.Module:
        s, i, rel = key
        stack: Stack = self.architecture.stacks[s]
        if rel != FINAL:
            return self._by_key[key]
        if stack.final is not None:
            return self.backbone.get_submodule(stack.final)
        return self.backbone.get_submodule(stack.layers)[-1]

    @torch.no_grad()
    def run(self, inputs: Mapping[str, torch.Tensor]) -> dict[SourceKey, torch.Tensor]:
        """The frozen pass over a completed source batch: each distinct state, (B, Ts, d)."""
        captured: dict[SourceKey, torch.Tensor] = {}
        hooks = []
        for key in self.keys:
            module = self._capture_module(key)
            if key[2] == FINAL:
                hook = module.register_forward_hook(lambda m, a, out, key=key: captured.__setitem__(key, _output_tensor(out)))
            else:
                hook = module.register_forward_pre_hook(lambda m, args, key=key: captured.__setitem__(key, args[0]))
            hooks.append(hook)
        self._frozen_call(inputs, hooks)
        if self.same_as is None:  # q and v of one layer read one tensor: keep (and cache) it once
            firsts: dict[int, SourceKey] = {}
            self.same_as = {key: firsts.setdefault(id(captured[key]), key) for key in self.keys}
        return {key: captured[key].detach() for key in set(self.same_as.values())}

    @torch.no_grad()
    def run_layers(self, inputs: Mapping[str, torch.Tensor], layers: Mapping[int, int]) -> dict[int, torch.Tensor]:
        """The frozen pass over a completed batch (either language): per stack s, the output of its layer
        ``layers[s]``, (B, T, d) (the token alignment of the ``aligned_*`` fusions reads these)."""
        captured: dict[int, torch.Tensor] = {}
        hooks = []
        for s, index in layers.items():
            module = self.backbone.get_submodule(self.architecture.stacks[s].layers)[index]
            hooks.append(module.register_forward_hook(
                lambda m, a, out, s=s: captured.__setitem__(s, _output_tensor(out))))
        self._frozen_call(inputs, hooks)
        return {s: state.detach() for s, state in captured.items()}

    def _frozen_call(self, inputs: Mapping[str, torch.Tensor], hooks: list) -> None:
        """Call the backbone with every adapter bypassed, in eval mode, then remove ``hooks``. Without a KV
        cache where the backbone builds one (decoders, mT5): nothing would read it."""
        for layer in self.all_layers:
            layer.in_source_pass = True
        try:
            with eval_mode(self.task_model):
                self.backbone(**inputs, **({"use_cache": False} if self._takes_use_cache else {}))
        finally:
            for hook in hooks:
                hook.remove()
            for layer in self.all_layers:
                layer.in_source_pass = False

    @property
    def stack_keys(self) -> list[list[SourceKey]]:
        """The distinct captured states of each stack (known after the first pass)."""
        distinct = sorted(set(self.same_as.values()), key=str)
        return [[k for k in distinct if k[0] == s] for s in range(len(self.architecture.stacks))]

    def states(self, captured: Mapping[SourceKey, torch.Tensor], inputs: Mapping[str, torch.Tensor]
               ) -> dict[FlareLinear, SourceStates]:
        masks = self.stack_masks(inputs)
        return {layer: SourceStates(captured[self.same_as[key]], masks[key[0]]) for layer, key in self.layers.items()}

    def split_rows(self, captured: Mapping[SourceKey, torch.Tensor], inputs: Mapping[str, torch.Tensor]
                   ) -> list[tuple[torch.Tensor, ...]]:
        """Per example, per stack: its states at its real positions, (keys of the stack, length, d)."""
        masks = [m.bool() for m in self.stack_masks(inputs)]
        stacked = [torch.stack([captured[k] for k in keys], 1) if keys else None for keys in self.stack_keys]
        return [tuple(None if x is None else x[b][:, masks[s][b]] for s, x in enumerate(stacked))  # (K, L, d)
                for b in range(len(masks[0]))]

    def join_rows(self, rows: list[tuple[torch.Tensor, ...]], inputs: Mapping[str, torch.Tensor]
                  ) -> dict[FlareLinear, SourceStates]:
        """Rows back into padded (B, Ts, d) states laid out like ``inputs``' masks, on the masks' device
        (the batch's) whatever device a row comes from."""
        masks = self.stack_masks(inputs)
        captured = {}
        for s, keys in enumerate(self.stack_keys):
            if not keys:
                continue
            mask = masks[s].bool()
            first = rows[0][s]
            padded = torch.zeros(mask.shape[0], first.shape[0], mask.shape[1], first.shape[-1], dtype=first.dtype,
                                 device=mask.device)
            for b, row in enumerate(rows):
                padded[b][:, mask[b]] = row[s].to(padded)
            captured.update({key: padded[:, k] for k, key in enumerate(keys)})
        return self.states(captured, inputs)

    def zero_states(self, rows: int, device: torch.device) -> dict[FlareLinear, SourceStates]:
        """Source states of zeros: the diagnostic that shows what FLARE does without the source."""
        states = {}
        for layer in self.layers:
            zeros = torch.zeros(rows, 1, layer.in_features, device=device)
            states[layer] = SourceStates(zeros, torch.ones(rows, 1, dtype=torch.long, device=device))
        return states

    def target_positions(self, inputs: Mapping[str, torch.Tensor], lengths: Mapping[int, int]) -> dict[int, torch.Tensor]:
        """Each stack's relative positions of the tokens this call reads: the last ``lengths[s]`` columns of
        the stack's mask (all of them without a KV cache; the new tokens with one)."""
        return {s: relative_positions(inputs[stack.mask_key])[:, -lengths[s]:]
                for s, stack in enumerate(self.architecture.stacks) if inputs.get(stack.mask_key) is not None
                and s in lengths}

    def set(self, states: Mapping[FlareLinear, SourceStates], positions: Mapping[int, torch.Tensor],
            alignments: Mapping[int, torch.Tensor] | None = None) -> None:
        """Give every fused layer the call's source states, its stack's target positions and token alignment."""
        for layer, (stack, _, _) in self.layers.items():
            if layer.source is not states[layer]:
                layer.drop_kept()
            layer.source = states[layer]
            layer.target_positions = positions.get(stack)
            layer.source_alignment = (alignments or {}).get(stack)


def _check_causality(layer: FlareLinear, stack: Stack, architecture: Architecture) -> None:
    """A fused layer's fusion was built from the config; it must agree with the stack it sits in,
    or a decoder position could attend to source states of later positions (computed from later tokens)."""
    if layer.causal != stack.causal:
        raise ValueError(
            f"FLARE layer {layer.flare_name} is {'' if layer.causal else 'not '}causal but its stack "
            f"{stack.layers} is{'' if stack.causal else ' not'}: build the FlareConfig with "
            f"causal_stacks={architecture.causal_stacks}"
        )
