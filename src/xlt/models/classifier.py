"""Sequence classification from pooled backbone states: one head for encoders and decoders.

Transformers' ``*ForSequenceClassification`` heads fix the pooling per class (BERT: a tanh pooler
over the first token; decoders: the last non-pad token). A model trained with mean pooling, such as
multilingual-e5, loses accuracy read through its first token, so xlt pools explicitly:

- ``mean``: the average over real tokens (the default for encoders; e5 is trained with it);
- ``first``: the first real token (BERT's [CLS], without the tanh pooler);
- ``last``: the last real token (the default for decoders, whose last token has seen the whole text).

Positions come from the attention mask, so left and right padding pool the same tokens. The head is
dropout + one linear layer on the pooled state. A stage-1 folder is a Hugging Face folder of model type
``xlt-pooled-classifier`` (:mod:`xlt.models.auto_classes`: config.json wraps the backbone's config with the
pooling and labels; model.safetensors holds ``backbone.*`` and ``classifier.*``), which stock
``AutoModelForSequenceClassification`` loads after ``import xlt``. Folders of an older xlt hold the backbone
as an ordinary folder plus ``classifier.safetensors`` and ``xlt_classifier.json`` (labels, pooling); they
still load here. mT5 keeps transformers' ``MT5ForSequenceClassification`` (decoder EOS state), pooling ``eos``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from xlt.errors import XltError
from xlt.models.pooling import POOLINGS, classify, head_dropout

DEFAULT_POOLING = {"encoder": "mean", "decoder": "last", "encoder-decoder": "eos"}
HEAD_WEIGHTS = "classifier.safetensors"  # the older layout's head (still read)
HEAD_INFO = "xlt_classifier.json"  # the older layout's labels and pooling (still read)
MAX_SHARD_SIZE = "5GB"


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


@dataclass
class ClassifierOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None  # with output_hidden_states=True


def saved_layout(path: str | Path) -> str | None:
    """How a folder holds a trained pooled classifier: "pretrained" (config.json of model type
    ``xlt-pooled-classifier``), "head-files" (an older xlt's backbone folder + head files), or None (a base
    model, or no folder)."""
    from xlt.models.architectures import POOLED_MODEL_TYPE

    path = Path(path)
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = None
    if isinstance(config, dict) and config.get("model_type") == POOLED_MODEL_TYPE:
        return "pretrained"
    return "head-files" if (path / HEAD_INFO).is_file() else None


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
        self.dropout = nn.Dropout(head_dropout(self.config))
        self.classifier = nn.Linear(hidden, len(labels))
        std = getattr(self.config, "initializer_range", 0.02)
        nn.init.normal_(self.classifier.weight, std=std)
        nn.init.zeros_(self.classifier.bias)

    @property
    def base_model(self) -> nn.Module:  # where the architecture table's paths start, as for HF task models
        return self.backbone

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs) -> ClassifierOutput:
        return ClassifierOutput(*classify(self.backbone, self.dropout, self.classifier, self.pooling, input_ids,
                                          attention_mask, labels, **kwargs))

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None, **kwargs):
        self.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs=gradient_checkpointing_kwargs)

    def save_pretrained(self, folder: str | Path, state_dict: dict[str, torch.Tensor] | None = None, **kwargs) -> None:
        """A Hugging Face folder of model type ``xlt-pooled-classifier`` (config.json, model.safetensors or its
        shards); ``state_dict`` (this module's keys, e.g. the accelerator's gathered state) replaces the module's
        own tensors. Other keyword arguments (``safe_serialization``) are accepted and mean nothing more."""
        from huggingface_hub import save_torch_state_dict

        from xlt.models.auto_config import pooled_config

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = self.state_dict() if state_dict is None else state_dict
        state = {k: v.detach().contiguous() for k, v in state.items() if k.startswith(("backbone.", "classifier."))}
        save_torch_state_dict(state, folder, max_shard_size=MAX_SHARD_SIZE, metadata={"format": "pt"})
        pooled_config(self.backbone.config, self.labels, self.pooling).save_pretrained(folder)

    @classmethod
    def from_pretrained(cls, path: str, labels: tuple[str, ...], pooling: str, family: str) -> "PooledClassifier":
        """A backbone from ``path`` and, when ``path`` is a saved classifier (either layout), its trained head.

        A saved head must have been trained for the same labels and pooling; anything else is refused.
        """
        layout = saved_layout(path)
        if layout == "pretrained":
            return cls._from_pooled_folder(path, labels, pooling)
        from transformers import AutoModel

        extra = {"add_pooling_layer": False} if family == "encoder" else {}  # the tanh pooler is never used
        try:
            backbone = AutoModel.from_pretrained(path, trust_remote_code=False, **extra)
        except OSError as err:
            raise XltError(f"cannot load model {path!r}: {str(err).splitlines()[0]}") from None
        model = cls(backbone, labels, pooling)
        if layout == "head-files":
            from safetensors.torch import load_file

            info = json.loads((Path(path) / HEAD_INFO).read_text())
            _check_head(path, info["labels"], info["pooling"], labels, pooling)
            state = {k.removeprefix("classifier."): v for k, v in load_file(str(Path(path) / HEAD_WEIGHTS)).items()}
            model.classifier.load_state_dict(state)
        return model

    @classmethod
    def _from_pooled_folder(cls, path: str, labels: tuple[str, ...], pooling: str) -> "PooledClassifier":
        """A folder of model type ``xlt-pooled-classifier``: loaded by its Hugging Face class, whose backbone and
        head become this module's."""
        from xlt.models.auto_classes import load_pooled

        try:
            saved = load_pooled(path)
        except OSError as err:
            raise XltError(f"cannot load model {path!r}: {str(err).splitlines()[0]}") from None
        _check_head(path, list(saved.labels), saved.config.pooling, labels, pooling)
        model = cls(saved.backbone, labels, pooling)
        model.classifier.load_state_dict(saved.classifier.state_dict())
        return model


def _check_head(path: str, saved_labels: list, saved_pooling: str, labels: tuple[str, ...], pooling: str) -> None:
    if tuple(saved_labels) != tuple(labels) or saved_pooling != pooling:
        raise XltError(f"the classifier at {path} was trained with labels {list(saved_labels)} and pooling "
                       f"{saved_pooling!r}, not {list(labels)} and {pooling!r}")


def convert_head_files(source: str | Path, target: str | Path, skip: tuple[str, ...] = ()) -> None:
    """Rewrite an older xlt's stage-1 classifier (backbone folder + ``classifier.safetensors`` +
    ``xlt_classifier.json``) in the current layout at ``target``: the same tensors, its labels and pooling in
    config.json; its other files (tokenizer, stage1.json) copied, ``skip`` left out."""
    import shutil

    from xlt.models.architectures import architecture_for, backbone_model_type

    source, target = Path(source), Path(target)
    info = json.loads((source / HEAD_INFO).read_text())
    family = architecture_for(backbone_model_type(json.loads((source / "config.json").read_text()))).family
    model = PooledClassifier.from_pretrained(str(source), tuple(info["labels"]), info["pooling"], family)
    model.save_pretrained(target)
    weights = {"config.json", HEAD_WEIGHTS, HEAD_INFO, *skip}
    for path in sorted(source.iterdir()):
        if path.is_file() and path.name not in weights and not path.name.startswith("model"):
            shutil.copyfile(path, target / path.name)
