"""The forward of xlt's pooled classifier, shared by its two classes: :class:`xlt.models.classifier.PooledClassifier`
(what xlt trains) and :class:`xlt.models.auto_classes.PooledClassifierForSequenceClassification` (what stock
transformers loads from a stage-1 folder), so both compute the same logits by construction."""

from __future__ import annotations

import torch
from torch import nn

from xlt.errors import XltError

POOLINGS = ("mean", "first", "last")


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, H) states → (B, H) by ``pooling`` over the real tokens of ``mask`` (any padding side)."""
    mask = mask.to(hidden.dtype)
    if pooling == "mean":
        return (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    if pooling == "first":
        index = mask.argmax(-1)
    elif pooling == "last":
        index = mask.shape[1] - 1 - mask.flip(-1).argmax(-1)
    else:
        raise XltError(f"unknown pooling {pooling!r}; choose one of: {', '.join(POOLINGS)}")
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


def head_dropout(config) -> float:
    """The head's dropout: the backbone config's classifier dropout, else its hidden dropout, else none."""
    drop = getattr(config, "classifier_dropout", None)
    return drop if drop is not None else getattr(config, "hidden_dropout_prob", 0.0)


def classify(backbone: nn.Module, dropout: nn.Module, classifier: nn.Linear, pooling: str, input_ids=None,
             attention_mask=None, labels=None, **kwargs):
    """(logits, loss or None, hidden states or None): the one forward of xlt's pooled classifier, whichever
    class holds the modules (:class:`PooledClassifier`, or the Hugging Face class of a stage-1 folder)."""
    output = backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    hidden = output.last_hidden_state
    if attention_mask is None:
        attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
    pooled = pool(hidden, attention_mask, pooling)
    logits = classifier(dropout(pooled.to(classifier.weight.dtype)))
    loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
    return logits, loss, getattr(output, "hidden_states", None)
