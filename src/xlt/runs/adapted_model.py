"""The stage-2 model: the cached English model with the run's adapter attached (LoRA, FLARE, FLARE-MT's encoder,
X-Mixup), and its evaluation on the test set (FLARE: also with the English states zeroed)."""

from __future__ import annotations

import json
from pathlib import Path

from xlt.config import RunConfig
from xlt.data.examples import AnyTaskData, TagTaskData, TaskData
from xlt.errors import XltError
from xlt.kinds.registry import kind_of, task_architecture
from xlt.methods.adapters import AdaptedModel, AdapterSettings, attach
from xlt.methods.table import get_method
from xlt.models.loading import load_tokenizer
from xlt.runs.recipe import Run
from xlt.runs.settings import check_precision
from xlt.runs.stage1 import STAGE1_INFO
from xlt.training.loop import enable_checkpointing


def mt_encoder_input(cfg: RunConfig):
    """FLARE-MT: the MT tokenizer with its language tags checked (cheap, so it runs before stage 1)."""
    if not get_method(cfg.method).mt_encoder:
        return None
    from xlt.flare.mt_encoder import load_mt_encoder_input


    return load_mt_encoder_input(cfg.mt_model, cfg.target_lang, cfg.source_lang, cfg.max_length)


def build_model(run: Run, stage1: Path, data: AnyTaskData, mt_input=None) -> tuple[AdaptedModel, object]:
    """The English model of ``stage1`` with the run's adapter attached (its saved labels and pooling checked)."""
    cfg = run.cfg
    info = json.loads((stage1 / STAGE1_INFO).read_text())
    if isinstance(data, (TaskData, TagTaskData)) and tuple(info["labels"] or ()) != tuple(data.labels):
        raise XltError(f"label set {list(data.labels)} differs from the English model's {info['labels']}")
    if info.get("pooling") != cfg.pooling:
        raise XltError(f"the English model at {stage1} pools {info.get('pooling')!r}, the run asks for "
                       f"{cfg.pooling!r} (a stage-1 model from an older xlt has no pooling: delete it to rebuild)")
    tokenizer = load_tokenizer(str(stage1))
    arch = run.architecture  # the base model's: the English model is the same architecture
    kind = kind_of(data, cfg)
    model = kind.load_model(str(stage1), tokenizer, data, arch)
    check_precision(cfg, model.config.model_type)
    method = run.method
    mt_width = None
    if method.mt_encoder:
        from xlt.flare.mt_encoder import load_mt_encoder, mt_hidden_size


        mt_input = mt_input or mt_encoder_input(cfg)
        mt_width = mt_hidden_size(cfg.mt_model)
    adapter = AdapterSettings(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, fusion=cfg.fusion,
                              source_layer_offset=cfg.source_layer_offset, train_head=cfg.train_head,
                              all_linear=cfg.lora_targets == "all-linear", pooling=cfg.pooling,
                              mt_encoder=cfg.mt_model, mt_hidden_size=mt_width, mixup=mixup_settings(cfg))
    adapted = attach(model, method, task_architecture(kind, arch), adapter)
    if method.mt_encoder:
        adapted.mt_input = mt_input
        adapted.flare.attach_mt_encoder(load_mt_encoder(cfg.mt_model))
    if cfg.gradient_checkpointing:
        enable_checkpointing(model)
    return adapted, tokenizer


def mixup_settings(cfg: RunConfig):
    """X-Mixup's settings of the run (None for other methods)."""
    if not get_method(cfg.method).mixes:
        return None
    from xlt.methods.xmixup import MixupSettings


    layers = tuple(int(x) for x in cfg.mixup_layers.split(",")) if cfg.mixup_layers else None
    return MixupSettings(layers, cfg.mixup_lambda, cfg.mixup_schedule)


def evaluate_adapted(run: Run, adapted: AdaptedModel, tokenizer, data: AnyTaskData) -> tuple[dict, list[dict]]:
    """The test metrics (FLARE: also with the English states zeroed) and the predictions behind the first
    (one row per test example, what predictions.jsonl holds)."""
    cfg, method = run.cfg, adapted.method
    kind = kind_of(data, cfg)
    test = kind.evaluation(cfg, adapted.model, tokenizer, data, method.view, adapted.source,
                           f"test ({cfg.target_lang})")
    result = {"metrics": test.metrics}
    if adapted.flare is not None and cfg.zero_source_eval:
        result["metrics_zero_source"] = kind.evaluate(cfg, adapted.model, tokenizer, data, method.view, "zero",
                                                      "test, source zeroed")
    return result, test.predictions
