"""Builders shared by the FLARE tests, and the reading of the CLI's one-line errors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoConfig

from xlt.kinds.registry import Classification
from xlt.methods.adapters import AdaptedModel, AdapterSettings, attach
from xlt.methods.table import get_method
from xlt.models.architectures import architecture_for
from xlt.models.classifier import resolve_pooling
from xlt.models.loading import load_tokenizer, resolve_model

LABELS = ("negative", "neutral", "positive")


@dataclass
class _Labels:  # what a classifier loader reads of a TaskData
    labels: tuple[str, ...]


def tiny_classifier(path: str, tokenizer):
    """The classifier users get: xlt's pooled head with the family's default pooling, mT5's own head."""
    arch = architecture_for(AutoConfig.from_pretrained(path).model_type)
    pooling = resolve_pooling(None, arch.family)
    return Classification(pooling=pooling).load_model(path, tokenizer, _Labels(LABELS), arch)


def tiny(family: str = "bert", method: str = "flare", fusion: str | None = "add", offset: int = 1,
         r: int = 4, dropout: float = 0.0, randomize_b: bool = True, seed: int = 0,
         adapter_seed: int | None = None, task: str = "classification") -> tuple[AdaptedModel, object]:
    """A tiny classifier with an adapter; B is randomized so the adapter changes outputs from the start."""
    path = resolve_model(f"tiny-random/{family}")
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(path)
    if task == "classification":
        model = tiny_classifier(path, tokenizer)
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


def source_of(batch) -> dict:
    """The source-language inputs a batch hands the FLARE model (its ``source_*`` keys, prefix dropped)."""
    return {k[len("source_"):]: v for k, v in batch.inputs.items() if k.startswith("source_")}


def without_source(inputs: dict) -> dict:
    """A batch's model inputs without the source text (what a non-FLARE call passes)."""
    return {k: v for k, v in inputs.items() if not k.startswith("source_") and k != "zero_source"}


def cli_error(capsys) -> str:
    """The CLI's error without its prefix, checked to be the one line written to stderr."""
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xlt: error: "), lines
    return lines[0].removeprefix("xlt: error: ")
