"""FLARE-MT's source: a frozen MT encoder's states of the *target* text, a "latent translation".

Instead of a frozen pass of the task model over English text, the encoder of a translation model
(NLLB, M2M100, OPUS-MT) reads the target-language text itself, tagged exactly as it would be for
translating target -> English (:func:`xlt.mt.tags.plan_tags`: NLLB's FLORES tag of the *target*
language, never English's). No decoding happens. :class:`xlt.flare.tuner.FlareTuner` projects these
states with a trained linear map to the task model's width and fuses the projection at every layer.

The encoder is no submodule of the PEFT model (its weights never enter the adapter's state dict or
the trainable parameters); the tuner holds it aside and moves it to the adapter's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xlt.errors import XltError


@dataclass
class MTEncoderInput:
    """How batches tokenize target text for the MT encoder: the MT tokenizer and its language tags for
    translating ``target_lang`` into ``source_lang``."""

    model: str
    tokenizer: object
    src_lang: str | None  # value for tokenizer.src_lang (NLLB, M2M100); None: no such attribute is used
    prefix: str  # tag text before every sentence (OPUS-MT multi-target, tokenizers without src_lang)
    max_length: int

    def encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if self.src_lang is not None:
            self.tokenizer.src_lang = self.src_lang  # set on every call: a shared tokenizer may have moved on
        enc = self.tokenizer([self.prefix + t for t in texts], truncation=True, max_length=self.max_length,
                             padding=True, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def load_mt_encoder_input(model: str, target_lang: str, source_lang: str, max_length: int) -> MTEncoderInput:
    """The MT tokenizer with its tags checked (a language the model has no tag for is an error naming it)."""
    from xlt.models.loading import load_tokenizer, resolve_model
    from xlt.mt.tags import plan_tags

    tokenizer = load_tokenizer(resolve_model(model))
    plan = plan_tags(tokenizer, model, target_lang, source_lang)
    return MTEncoderInput(model, tokenizer, plan.src_lang, plan.prefix, max_length)


def mt_hidden_size(model: str) -> int:
    """The width of ``model``'s encoder output (``d_model``), read from its config alone."""
    from transformers import AutoConfig

    from xlt.models.loading import resolve_model

    try:
        config = AutoConfig.from_pretrained(resolve_model(model), trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise XltError(f"cannot load MT model {model!r}: {str(err).splitlines()[0]}") from None
    if not getattr(config, "is_encoder_decoder", False):
        raise XltError(f"MT model {model} is a {config.model_type!r} model, not an encoder-decoder")
    return int(getattr(config, "d_model", None) or config.hidden_size)


def load_mt_encoder(model: str) -> nn.Module:
    """The frozen encoder of ``model`` in eval mode (dropout off; its weights never train)."""
    from transformers import AutoModelForSeq2SeqLM

    from xlt.models.loading import resolve_model

    seq2seq = AutoModelForSeq2SeqLM.from_pretrained(resolve_model(model), trust_remote_code=False)
    encoder = seq2seq.get_encoder()
    encoder.requires_grad_(False)
    return encoder.eval()
