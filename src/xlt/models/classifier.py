"""Sequence classification from pooled backbone states: one head for encoders and decoders.

Transformers' ``*ForSequenceClassification`` heads fix the pooling per class (BERT: a tanh pooler
over the first token; decoders: the last non-pad token). A model trained with mean pooling, such as
multilingual-e5, loses accuracy read through its first token, so xlt pools explicitly:

- ``mean``: the average over real tokens (the default for encoders; e5 is trained with it);
- ``first``: the first real token (BERT's [CLS], without the tanh pooler);
- ``last``: the last real token (the default for decoders, whose last token has seen the whole text).

Positions come from the attention mask, so left and right padding pool the same tokens. The head is
dropout + one linear layer on the pooled state. A stage-1 folder holds the backbone as an ordinary
Hugging Face folder plus ``classifier.safetensors`` and ``xlt_classifier.json`` (labels, pooling).
mT5 keeps transformers' ``MT5ForSequenceClassification`` (decoder EOS state), pooling ``eos``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from xlt.errors import XltError

POOLINGS = ("mean", "first", "last")
DEFAULT_POOLING = {"encoder": "mean", "decoder": "last", "encoder-decoder": "eos"}
HEAD_WEIGHTS = "classifier.safetensors"
HEAD_INFO = "xlt_classifier.json"


def resolve_pooling(pooling: str | None, family: str) -> str:
    """The pooling a run uses: the setting, else the family's default; mT5 has only ``eos``."""
    if family == "encoder-decoder":
        if pooling not in (None, "eos"):
            raise XltError(f"pooling {pooling!r} is not available for mT5, which classifies from its decoder's "
                           "final EOS state; drop --pooling")
        return "eos"
    if pooling is None:
        return DEFAULT_POOLING[family]
    if pooling not in POOLINGS:
        raise XltError(f"unknown pooling {pooling!r}; choose one of: {', '.join(POOLINGS)}")
    return pooling


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


@dataclass
class ClassifierOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None  # with output_hidden_states=True


class PooledClassifier(nn.Module):
    """A transformer backbone (``AutoModel``), a pooling and a linear head over ``len(labels)`` classes."""

    def __init__(self, backbone: nn.Module, labels: tuple[str, ...], pooling: str):
        super().__init__()
        if pooling not in POOLINGS:
            raise XltError(f"unknown pooling {pooling!r}; choose one of: {', '.join(POOLINGS)}")
        self.backbone = backbone
        self.labels = tuple(labels)
        self.pooling = pooling
        self.config = backbone.config
        hidden = self.config.hidden_size
        drop = getattr(self.config, "classifier_dropout", None)
        self.dropout = nn.Dropout(drop if drop is not None else getattr(self.config, "hidden_dropout_prob", 0.0))
        self.classifier = nn.Linear(hidden, len(labels))
        std = getattr(self.config, "initializer_range", 0.02)
        nn.init.normal_(self.classifier.weight, std=std)
        nn.init.zeros_(self.classifier.bias)

    @property
    def base_model(self) -> nn.Module:  # where the architecture table's paths start, as for HF task models
        return self.backbone

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs) -> ClassifierOutput:
        output = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        hidden = output.last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        pooled = pool(hidden, attention_mask, self.pooling)
        logits = self.classifier(self.dropout(pooled.to(self.classifier.weight.dtype)))
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return ClassifierOutput(logits, loss, getattr(output, "hidden_states", None))

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None, **kwargs):
        self.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs=gradient_checkpointing_kwargs)

    def save_pretrained(self, folder: str | Path, state_dict: dict[str, torch.Tensor] | None = None, **kwargs) -> None:
        """The backbone as a Hugging Face folder plus the head; ``state_dict`` (this module's keys, e.g. the
        accelerator's gathered state) replaces the module's own tensors."""
        from safetensors.torch import save_file

        folder = Path(folder)
        state = self.state_dict() if state_dict is None else state_dict
        backbone = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
        self.backbone.save_pretrained(folder, state_dict=backbone, **kwargs)
        head = {k: v.detach().cpu().contiguous() for k, v in state.items() if k.startswith("classifier.")}
        save_file(head, str(folder / HEAD_WEIGHTS), metadata={"format": "pt"})
        (folder / HEAD_INFO).write_text(json.dumps({"labels": list(self.labels), "pooling": self.pooling}) + "\n")

    @classmethod
    def from_pretrained(cls, path: str, labels: tuple[str, ...], pooling: str, family: str) -> "PooledClassifier":
        """A backbone from ``path`` and, when ``path`` is a saved classifier, its trained head.

        A saved head must have been trained for the same labels and pooling; anything else is refused.
        """
        from transformers import AutoModel

        extra = {"add_pooling_layer": False} if family == "encoder" else {}  # the tanh pooler is never used
        try:
            backbone = AutoModel.from_pretrained(path, trust_remote_code=False, **extra)
        except OSError as err:
            raise XltError(f"cannot load model {path!r}: {str(err).splitlines()[0]}") from None
        model = cls(backbone, labels, pooling)
        info_path = Path(path) / HEAD_INFO
        if info_path.is_file():
            from safetensors.torch import load_file

            info = json.loads(info_path.read_text())
            if tuple(info["labels"]) != tuple(labels) or info["pooling"] != pooling:
                raise XltError(f"the classifier at {path} was trained with labels {info['labels']} and pooling "
                               f"{info['pooling']!r}, not {list(labels)} and {pooling!r}")
            state = {k.removeprefix("classifier."): v for k, v in load_file(str(Path(path) / HEAD_WEIGHTS)).items()}
            model.classifier.load_state_dict(state)
        return model
