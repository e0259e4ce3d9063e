"""The training settings both stages use: the seed, the precision a model accepts, and the loop's settings."""

from __future__ import annotations

from dataclasses import asdict

from xlt.config import RunConfig
from xlt.errors import XltError
from xlt.training.loop import TrainSettings


def set_seed(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def check_precision(cfg: RunConfig, model_type: str) -> None:
    if cfg.fp16 and model_type == "mt5":
        raise XltError("fp16 is refused for mT5 (its activations overflow in fp16); use bf16 or fp32")


def train_settings(cfg: RunConfig, epochs: int, lr: float) -> TrainSettings:
    return TrainSettings(epochs, lr, cfg.batch_size, bf16=cfg.bf16, fp16=cfg.fp16, max_grad_norm=cfg.max_grad_norm,
                         show_progress=cfg.show_progress)


def schedule(cfg: RunConfig, epochs: int, lr: float) -> dict:
    """The training settings that change a model (all of TrainSettings but the progress bar)."""
    settings = asdict(train_settings(cfg, epochs, lr))
    settings.pop("show_progress")
    return {**settings, "lr_schedule": "linear warm-up and decay (transformers)"}
