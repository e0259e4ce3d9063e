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
    ``causal``: cross-attention fusion must not look at future positions (decoder models).
    """

    fusion: str = field(default="add_relu", metadata={"help": "add, mul, add_relu, mul_relu, cross_attention"})
    source_layer_offset: int = field(default=1)
    causal: bool = field(default=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fusion_name(self.fusion)
        if self.source_layer_offset not in (0, 1):
            raise ValueError(f"source_layer_offset must be 0 or 1, got {self.source_layer_offset}")
        from xlt.flare.layer import FlareLinear

        self._register_custom_module({nn.Linear: FlareLinear})

    def flare_settings(self) -> dict:
        return {"fusion": self.fusion, "source_layer_offset": self.source_layer_offset, "causal": self.causal}
