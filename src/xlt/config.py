"""The settings of one run, from CLI flags or a YAML file with the same keys, validated up front."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from xlt.errors import XltError
from xlt.flare.fusion import check_fusion_name
from xlt.methods import get_method


@dataclass
class RunConfig:
    task: str = "nusax"
    method: str = "lora"
    fusion: str | None = None  # flare only; default add_relu
    model: str = "e5-small"
    source_lang: str = "en"
    target_lang: str = "ace"
    seed: int = 0
    output_dir: str = "runs/run"
    data_dir: str | None = None
    train_file: str | None = None  # task "custom"
    test_file: str | None = None
    # stage 2 (paper defaults: LoRA on query/value, r=64, alpha=128)
    epochs: int = 5
    lr: float = 5e-4
    batch_size: int = 32
    max_length: int = 64
    pooling: str | None = None  # classification heads: mean, first, last; default mean (encoders), last (decoders)
    decoder_classifier: str = "head"  # decoders: "head" (last non-pad token) or "verbalizer" (label words)
    max_answer_length: int = 48  # generation tasks: answer tokens in training, new tokens in decoding
    lora_r: int | None = None  # default: 64 (FLARE paper), 8 for the align methods (alignment paper)
    lora_alpha: int | None = None  # default: 2 * lora_r
    lora_dropout: float = 0.1
    lora_targets: str | None = None  # "attention" (q, v) or "all-linear"; default: all-linear for align methods
    source_layer_offset: int = 1
    train_head: bool = False
    gradient_checkpointing: bool = False
    bf16: bool = False
    fp16: bool = False  # refused for mT5, whose activations overflow in fp16
    max_train_examples: int | None = None  # stage-2 (target-language) training examples
    max_eval_examples: int | None = None
    # alignment (methods align, lora+align)
    align_data: str = "nusax-mt"  # parallel set with English (xlt.data.parallel), or a CSV/JSONL file
    align_langs: str | None = None  # comma-separated; default: the target language
    align_layers: str | None = None  # comma-separated 1-based layers; default: the middle layer
    align_temperature: float = 0.1
    align_ratio: str = "1:1"  # task steps : alignment steps
    align_max_pairs: int | None = None  # per language
    zero_source_eval: bool = True  # flare: also report metrics with the English states zeroed
    # stage 1 (English task model), cached per (model, task, seed, these settings)
    stage1_epochs: int = 4
    stage1_lr: float = 5e-5
    stage1_freeze_embeddings: bool = True  # full fine-tuning only
    stage1_method: str | None = None  # "full" or "lora" (merged into the weights); default by family
    stage1_max_train_examples: int | None = None  # English training examples for stage 1 (None: all)
    stage1_dir: str | None = None  # cache root for stage-1 models; default $XLT_CACHE_DIR/stage1
    show_progress: bool = True

    def __post_init__(self) -> None:
        method = get_method(self.method)
        if self.lora_r is None:
            self.lora_r = 8 if method.align else 64
        if self.lora_alpha is None:
            self.lora_alpha = 2 * self.lora_r
        if self.lora_targets is None:
            self.lora_targets = "all-linear" if method.align else "attention"
        if self.lora_targets not in ("attention", "all-linear"):
            raise XltError(f"lora_targets must be 'attention' or 'all-linear', got {self.lora_targets!r}")
        if method.adapter == "flare" and self.lora_targets != "attention":
            raise XltError("FLARE adapts the attention query/value projections only; drop --lora-targets all-linear")
        if not re.fullmatch(r"\d+:\d+", self.align_ratio or "") or self.align_ratio == "0:0":
            raise XltError(f"align_ratio must look like 1:1 (task steps:alignment steps), got {self.align_ratio!r}")
        if method.adapter == "flare":
            self.fusion = check_fusion_name(self.fusion or "add_relu")
        elif self.fusion is not None:
            raise XltError(f"--fusion is only for --method flare, not {self.method!r}")
        if self.bf16 and self.fp16:
            raise XltError("choose one of bf16 and fp16")
        for name in ("epochs", "batch_size", "max_length", "max_answer_length", "lora_r", "stage1_epochs"):
            if getattr(self, name) < 1:
                raise XltError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.decoder_classifier not in ("head", "verbalizer"):
            raise XltError(f"decoder_classifier must be 'head' or 'verbalizer', got {self.decoder_classifier!r}")
        if self.pooling not in (None, "mean", "first", "last", "eos"):
            raise XltError(f"pooling must be 'mean', 'first' or 'last', got {self.pooling!r}")
        if self.stage1_method not in (None, "full", "lora"):
            raise XltError(f"stage1_method must be 'full' or 'lora', got {self.stage1_method!r}")
        if self.source_layer_offset not in (0, 1):
            raise XltError(f"source_layer_offset must be 0 or 1, got {self.source_layer_offset}")
        for name in ("max_train_examples", "max_eval_examples", "stage1_max_train_examples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise XltError(f"{name} must be >= 1, got {value}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise XltError(f"unknown config key(s): {', '.join(unknown)}")
        try:
            return cls(**values)
        except TypeError as err:
            raise XltError(f"bad config: {err}") from None

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> "RunConfig":
        path = Path(path)
        if not path.is_file():
            raise XltError(f"config file not found: {path}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise XltError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(values, dict):
            raise XltError(f"config file {path} must hold a mapping of keys to values")
        return cls.from_dict({**values, **(overrides or {})})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)
