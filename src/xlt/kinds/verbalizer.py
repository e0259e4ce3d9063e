"""Decoder-only classification by a verbalizer: score each label word's log-likelihood after a prompt.

No free generation: every example is expanded into one row per label (prompt + label word), the
row's score is the summed log-probability of the label-word tokens, and the scores of an example's
rows are its class logits (cross-entropy over them in training). The expansion happens in the
batch, so FLARE sees ordinary rows: each row's English source is the English prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xlt.data.examples import Example
from xlt.training.batches import Batch, pad_rows, source_inputs, view_segments

PROMPT = "{text}\nAnswer:"


@dataclass
class VerbalizerOutput:
    logits: torch.Tensor  # (B, num_labels) summed label-word log-probabilities
    loss: torch.Tensor | None = None


class VerbalizerClassifier(nn.Module):
    """A causal LM read as a classifier over ``num_labels`` label words (rows grouped per example)."""

    def __init__(self, lm: nn.Module, num_labels: int):
        super().__init__()
        self.lm = lm
        self.num_labels = num_labels
        self.config = lm.config

    @property
    def base_model(self) -> nn.Module:  # the transformer stack, where the architecture table's paths start
        return self.lm.base_model

    def forward(self, input_ids, attention_mask, answer_mask, labels=None, **kwargs) -> VerbalizerOutput:
        hidden = self.lm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        scored = answer_mask[:, 1:].bool()  # token t+1 is predicted from position t
        logits = self.lm.get_output_embeddings()(hidden[:, :-1][scored])
        cap = getattr(self.config, "final_logit_softcapping", None)
        if cap:  # Gemma 2 caps its logits in the LM forward
            logits = torch.tanh(logits / cap) * cap
        token_logp = torch.log_softmax(logits.float(), -1).gather(-1, input_ids[:, 1:][scored].unsqueeze(-1))[:, 0]
        row = torch.arange(input_ids.shape[0], device=input_ids.device).unsqueeze(1).expand_as(scored)[scored]
        scores = torch.zeros(input_ids.shape[0], device=input_ids.device).index_add(0, row, token_logp)
        scores = scores.view(-1, self.num_labels)
        loss = nn.functional.cross_entropy(scores, labels) if labels is not None else None
        return VerbalizerOutput(scores, loss)

    def save_pretrained(self, *args, **kwargs):
        return self.lm.save_pretrained(*args, **kwargs)

    def gradient_checkpointing_enable(self, **kwargs):
        return self.lm.gradient_checkpointing_enable(**kwargs)

    def activation_checkpointing_enable(self, **kwargs):
        return self.lm.activation_checkpointing_enable(**kwargs)


def make_verbalizer_batch(tokenizer, examples: list[Example], labels: tuple[str, ...], view: str, max_length: int,
                          source: str | None = None) -> Batch:
    """One left-padded row per (example, label): prompt + " " + label word; English prompts for FLARE."""
    def prompt(ex: Example, side: str) -> str:  # concat: English line, then target line
        return PROMPT.format(text=("\n" if side == "concat" else " ").join(view_segments(ex, side)))

    words = tokenizer([" " + label for label in labels], add_special_tokens=False)["input_ids"]
    length = 2 * max_length if view == "concat" else max_length
    prompts = tokenizer([prompt(ex, view) for ex in examples], truncation=True, max_length=length)["input_ids"]
    rows = [p + w for p in prompts for w in words]
    answer = [[0] * len(p) + [1] * len(w) for p in prompts for w in words]
    inputs = {"input_ids": pad_rows(rows, tokenizer.pad_token_id, left=True),
              "attention_mask": pad_rows([[1] * len(r) for r in rows], 0, left=True),
              "answer_mask": pad_rows(answer, 0, left=True)}

    def encode_source() -> dict:
        src = tokenizer([prompt(ex, "source") for ex in examples], truncation=True, max_length=max_length)["input_ids"]
        src = [s for s in src for _ in labels]
        return {"input_ids": pad_rows(src, tokenizer.pad_token_id, left=True),
                "attention_mask": pad_rows([[1] * len(s) for s in src], 0, left=True)}

    inputs |= source_inputs(source, encode_source)
    return Batch(inputs, torch.tensor([ex.label for ex in examples]))
