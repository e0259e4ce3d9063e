"""FLARE's PEFT config: a ``LoraConfig`` plus the fusion settings, under its own ``peft_type``.

Every FLARE setting is validated here, once: the fusion name, the source-layer offset, and the
``LoraConfig`` options FLARE cannot honour (each refused with one line instead of being ignored).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peft import LoraConfig

from xlt.flare.fusion_names import FUSIONS, check_fusion_name, needs_alignment

PEFT_TYPE = "FLARE"  # the adapter_config.json ``peft_type``; registered with PEFT by xlt.flare.registration

# LoraConfig options whose non-default value FLARE cannot honour, and why
UNSUPPORTED = {
    "use_dora": "DoRA rescales the whole weight, which has no fused counterpart",
    "lora_bias": "a LoRA bias on B would be added without the source",
    "alora_invocation_tokens": "activated LoRA masks positions that FLARE fuses",
    "use_qalora": "QALoRA pools the input before A, which the source states do not match",
    "layer_replication": "replicated layers share the source states of one layer",
    "trainable_token_indices": "trainable tokens change the frozen source pass",
    "target_parameters": "FLARE adapts Linear projections, not raw parameters",
    "megatron_config": "Megatron-parallel layers are not FLARE layers",
    "use_bdlora": "BD-LoRA's block-diagonal factors are not FLARE layers",
    "arrow_config": "Arrow routing mixes adapters per token",
    "kasa_config": "KaSA changes the base weight",
    "velora_config": "VeLoRA compresses the input FLARE fuses",
    "monteclora_config": "MonteCLoRA samples the adapter",
    "eva_config": "EVA initialisation is not wired to FLARE",
    "corda_config": "CorDA rewrites the base weight the frozen source pass reads",
    "lora_ga_config": "LoRA-GA rewrites the base weight the frozen source pass reads",
    "astra_config": "Astra rewrites the base weight the frozen source pass reads",  # peft 0.22
}
# LoraConfig options FLARE honours as LoRA does (each one reaches the LoRA part of FlareLinear), or that
# only matter together with a refused one (loftq_config, qalora_group_size, megatron_core, runtime_config)
HONOURED = ("r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules", "layers_to_transform",
            "layers_pattern", "rank_pattern", "alpha_pattern", "use_rslora", "bias", "modules_to_save",
            "fan_in_fan_out", "init_lora_weights", "ensure_weight_tying", "loftq_config", "qalora_group_size",
            "megatron_core", "runtime_config")
# initialisations that keep the base weight as it is (PiSSA/OLoRA/LoftQ rewrite it, which would change the
# frozen source pass into a pass of another model)
SUPPORTED_INITS = (True, False, "gaussian")


def _is_default(value) -> bool:
    return value in (None, False, {}, []) or (hasattr(value, "to_dict") and not value.to_dict())


@dataclass
class FlareConfig(LoraConfig):
    """LoRA on the attention projections with source fusion in the bottleneck.

    ``source_layer_offset``: target layer i fuses the source state that the same projection of
    layer i+offset receives; 1 is the paper's equation (the last layer then fuses the model's
    final output), 0 is what the public code does (same layer).
    ``causal_stacks``: layer-stack paths (relative to the backbone, e.g. ``decoder.block``) whose
    fused projections must not look at later positions; every other stack fuses bidirectionally.
    Recorded per stack, not per model, because mT5's encoder is bidirectional and its decoder is not.
    ``alignment_layer`` (``aligned_*`` fusions): see :mod:`xlt.flare.token_alignment`.
    ``mt_encoder`` (FLARE-MT): every fused layer fuses the MT encoder's states of the target text through one
    trained projection from ``mt_hidden_size`` to the model's width; ``source_layer_offset`` does not apply.
    """

    fusion: str = field(default="add_relu", metadata={"help": ", ".join(FUSIONS)})
    source_layer_offset: int = field(default=1, metadata={"help": "0: same layer, 1: the next layer's input"})
    causal_stacks: list[str] = field(default_factory=list, metadata={"help": "layer stacks fused causally"})
    mt_encoder: str | None = field(default=None, metadata={"help": "FLARE-MT: the MT model whose encoder reads the "
                                                                    "target text (None: FLARE's frozen source pass)"})
    mt_hidden_size: int | None = field(default=None, metadata={"help": "FLARE-MT: width of the MT encoder's states"})
    alignment_layer: int | None = field(default=None, metadata={
        "help": "aligned_* fusions: the layer (1-based) whose states align the two texts (None: two thirds up)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = PEFT_TYPE
        check_fusion_name(self.fusion)
        if self.source_layer_offset not in (0, 1):
            raise ValueError(f"source_layer_offset must be 0 or 1, got {self.source_layer_offset!r}")
        if (self.mt_encoder is None) != (self.mt_hidden_size is None):
            raise ValueError("FLARE-MT needs both mt_encoder and mt_hidden_size (or neither, for FLARE)")
        if needs_alignment(self.fusion) and self.mt_encoder is not None:
            raise ValueError(f"fusion {self.fusion!r} aligns the model's own states of both texts, but FLARE-MT's "
                             "source is another model's: use a position or summary fusion")
        if self.alignment_layer is not None and self.alignment_layer < 1:
            raise ValueError(f"alignment_layer must be >= 1, got {self.alignment_layer!r}")
        if self.mt_hidden_size is not None and self.mt_hidden_size < 1:
            raise ValueError(f"mt_hidden_size must be >= 1, got {self.mt_hidden_size!r}")
        for option, why in UNSUPPORTED.items():
            if not _is_default(getattr(self, option, None)):
                raise ValueError(f"FLARE does not support {option}={getattr(self, option)!r}: {why}")
        if self.init_lora_weights not in SUPPORTED_INITS:
            raise ValueError(f"FLARE does not support init_lora_weights={self.init_lora_weights!r}: it changes the "
                             f"base weight the frozen source pass reads; use one of {SUPPORTED_INITS}")

    def is_causal(self, module_path: str) -> bool:
        """Whether the projection at ``module_path`` (PEFT's full module name) sits in a causal stack.

        A stack path matches whole dotted components anywhere in the name, so ``layers`` matches
        ``model.layers.0.self_attn.q_proj`` and ``decoder.block`` never matches ``encoder.block.0...``.
        """
        name = f".{module_path}."
        return any(f".{stack}." in name for stack in self.causal_stacks)
