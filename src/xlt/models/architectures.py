"""Where each architecture keeps its layers and attention projections: one table row per family.

Paths are relative to the backbone (``hf_model.base_model``: ``BertModel``, ``LlamaModel``, the
``MT5ForConditionalGeneration`` itself), so the same row serves every task head. A stack's
``final`` module produces the output that "layer L+1" would receive (the final norm for pre-norm
models); ``None`` means the last layer's own output (post-norm encoders such as BERT).
Causality belongs to a stack, not to a family: mT5's encoder is bidirectional, its decoder is not.
"""

from __future__ import annotations

from dataclasses import dataclass

from xlt.errors import XltError


@dataclass(frozen=True)
class Stack:
    layers: str  # path of the ModuleList of layers
    final: str | None = None  # path of the module whose output follows the last layer
    mask_key: str = "attention_mask"  # which model input masks this stack's positions
    causal: bool = False  # a decoder stack: its fusions must not look at later positions


@dataclass(frozen=True)
class Architecture:
    family: str  # encoder | decoder | encoder-decoder
    stacks: tuple[Stack, ...]
    targets: tuple[str, ...]  # attention projection names that get (FLARE) LoRA
    unfused: tuple[str, ...] = ()  # path fragments whose projections get plain LoRA (mT5 cross-attention)
    head: tuple[str, ...] = ("classifier",)  # sequence-classification head module names
    qa_head: tuple[str, ...] = ("qa_outputs",)  # the span head of *ForQuestionAnswering (stage 2's head for QA)
    stage1: str = "full"  # how the English task model is trained: full fine-tuning, or LoRA merged

    @property
    def causal_stacks(self) -> list[str]:
        """Layer paths of the causal stacks, as ``FlareConfig.causal_stacks`` records them."""
        return [stack.layers for stack in self.stacks if stack.causal]


_ENCODER = Architecture("encoder", (Stack("encoder.layer"),), ("query", "value"))
_DECODER = Architecture("decoder", (Stack("layers", final="norm", causal=True),), ("q_proj", "v_proj"),
                        head=("classifier",), stage1="lora")
_MT5 = Architecture(
    "encoder-decoder",
    (Stack("encoder.block", final="encoder.final_layer_norm"),
     Stack("decoder.block", final="decoder.final_layer_norm", mask_key="decoder_attention_mask", causal=True)),
    ("q", "v"),
    unfused=("EncDecAttention",),
    head=("classification_head",),
    stage1="lora",
)

ARCHITECTURES: dict[str, Architecture] = {
    "bert": _ENCODER,
    "xlm-roberta": _ENCODER,
    "llama": _DECODER,
    "qwen2": _DECODER,
    "gemma2": _DECODER,
    "gemma3_text": _DECODER,  # Gemma 3 text stack (e.g. Gemma 3 270M): sliding-window and global layers alike
    "mt5": _MT5,
}


POOLED_MODEL_TYPE = "xlt-pooled-classifier"  # a stage-1 classifier's config.json (xlt.models.auto_classes)


def backbone_model_type(config) -> str | None:
    """The model type whose architecture row applies: a config's (object or config.json dict) ``model_type``,
    or, for xlt's pooled classifier, its backbone's (``backbone_config``)."""
    def get(obj, key):
        return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)

    model_type = get(config, "model_type")
    if model_type == POOLED_MODEL_TYPE:
        return get(get(config, "backbone_config") or {}, "model_type")
    return model_type


def architecture_for(model_type: str) -> Architecture:
    if model_type not in ARCHITECTURES:
        raise XltError(
            f"model type {model_type!r} is not supported yet; supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    return ARCHITECTURES[model_type]


def middle_layer(num_layers: int) -> int:
    """The default alignment layer, 1-based: round(num_layers / 2), halves rounded up (16 of 32, 4 of 7).

    Python's ``round`` rounds halves to even (2.5 -> 2 but 3.5 -> 4); rounding up is the same rule for
    every odd depth. Middle layers are where the retrieval diagnostic finds languages best aligned.
    """
    if num_layers < 1:
        raise XltError(f"a model needs at least one layer, got {num_layers}")
    return (num_layers + 1) // 2
