"""Builders shared by the FLARE tests."""

from __future__ import annotations

import torch

from xlt.methods import AdaptedModel, AdapterSettings, attach, get_method
from xlt.models.architectures import architecture_for
from xlt.models.loading import load_classifier, load_tokenizer, resolve_model

LABELS = ("negative", "neutral", "positive")


def tiny(family: str = "bert", method: str = "flare", fusion: str | None = "add", offset: int = 1,
         r: int = 4, dropout: float = 0.0, randomize_b: bool = True, seed: int = 0,
         adapter_seed: int | None = None, task: str = "classification") -> tuple[AdaptedModel, object]:
    """A tiny classifier with an adapter; B is randomized so the adapter changes outputs from the start."""
    path = resolve_model(f"tiny-random/{family}")
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(path)
    if task == "classification":
        model = load_classifier(path, LABELS, tokenizer.pad_token_id)
    else:
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

        auto = AutoModelForSeq2SeqLM if family == "mt5" else AutoModelForCausalLM
        model = auto.from_pretrained(path)
    if adapter_seed is not None:
        torch.manual_seed(adapter_seed)  # same base model, different adapter initialization
    arch = architecture_for(model.config.model_type)
    adapted = attach(model, get_method(method), arch,
                     AdapterSettings(r=r, alpha=2 * r, dropout=dropout, fusion=fusion, source_layer_offset=offset))
    if randomize_b:
        for name, p in adapted.model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.5)
    return adapted, tokenizer
