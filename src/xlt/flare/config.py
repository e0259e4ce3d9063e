"""FLARE configuration: a ``LoraConfig`` plus the fusion settings, registering the FLARE layer."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft import LoraConfig
from torch import nn

from xlt.flare.fusion import check_fusion_name


@dataclass
class FlareConfig(LoraConfig):
    """LoRA on the attention projections with source fusion in the bottleneck.

    ``source_layer_offset``: target layer i fuses the source state that the same projection of
    layer i+offset receives; 1 is the paper's equation (the last layer then fuses the model's
    final output), 0 is what the public code does (same layer).
    ``causal_stacks``: layer-stack paths (relative to the backbone, e.g. ``decoder.block``) whose
    fused projections must not look at later positions; every other stack fuses bidirectionally.
    Recorded per stack, not per model, because mT5's encoder is bidirectional and its decoder is not.
    """

    fusion: str = field(default="add_relu", metadata={"help": "add, mul, add_relu, mul_relu, cross_attention"})
    source_layer_offset: int = field(default=1)
    causal_stacks: list[str] = field(default_factory=list, metadata={"help": "layer stacks fused causally"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fusion_name(self.fusion)
        if self.source_layer_offset not in (0, 1):
            raise ValueError(f"source_layer_offset must be 0 or 1, got {self.source_layer_offset}")
        from xlt.flare.layer import FlareLinear

        self._register_custom_module({nn.Linear: FlareLinear})

    def is_causal(self, module_path: str) -> bool:
        """Whether the projection at ``module_path`` (PEFT's full module name) sits in a causal stack.

        A stack path matches whole dotted components anywhere in the name, so ``layers`` matches
        ``model.layers.0.self_attn.q_proj`` and ``decoder.block`` never matches ``encoder.block.0...``.
        """
        name = f".{module_path}."
        return any(f".{stack}." in name for stack in self.causal_stacks)

    def flare_settings(self) -> dict:
        return {"fusion": self.fusion, "source_layer_offset": self.source_layer_offset,
                "causal_stacks": list(self.causal_stacks)}
