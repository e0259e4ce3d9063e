"""One run of the modular pipeline: stage 1 (English task model, cached) then one stage-2 method.

Outputs of a stage-2 run in ``output_dir``: ``config.yaml`` (resolved settings), ``adapter/``
(safetensors, for methods that train) and ``metrics.json``, built in a temp sibling and swapped in
whole (:mod:`xlt.run_dir`). ``evaluate_run`` rebuilds the model from these files alone.
Classification and generation tasks share this code through :mod:`xlt.tasks_kinds`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

from peft import LoraConfig, get_peft_model

from xlt.config import RunConfig
from xlt.data.examples import GenTaskData, TaskData, content_digest, source_side
from xlt.data.tasks import load_task
from xlt.errors import XltError
from xlt.io import write_json
from xlt.methods import AdaptedModel, AdapterSettings, attach, get_method, load_adapter, save_adapter
from xlt.metrics import gap_to_source
from xlt.models.architectures import Architecture, architecture_for
from xlt.models.cache import build_once, cache_root
from xlt.models.classifier import resolve_pooling
from xlt.models.loading import load_tokenizer, model_slug, resolve_model
from xlt.run_dir import (ADAPTER, CONFIG, METRICS, check_replaceable, missing_files, model_card, stored_differences,
                         write_run)
from xlt.tasks_kinds import kind_of
from xlt.training.processes import processes as run_processes
from xlt.training.loop import TrainSettings, enable_checkpointing, train

STAGE1_INFO = "stage1.json"


def _set_seed(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def load_data(cfg: RunConfig, stage1: bool = False) -> TaskData | GenTaskData:
    """The task's (target, source) data; stage 1 reads the source (English) side of the same examples."""
    data = load_task(cfg.task, cfg.target_lang, cfg.source_lang, cfg.data_dir, cfg.train_file, cfg.test_file)
    if stage1:
        data = source_side(data)
    max_train = cfg.stage1_max_train_examples if stage1 else cfg.max_train_examples
    if max_train:
        data.train = data.train[:max_train]
    if cfg.max_eval_examples:
        data.test = data.test[: cfg.max_eval_examples]
    return data


def stage1_method(cfg: RunConfig) -> str:
    """"full" or "lora": the flag, else the architecture's default (LoRA for large decoders)."""
    return cfg.stage1_method or _architecture(resolve_model(cfg.model)).stage1


def resolve_defaults(cfg: RunConfig, data: TaskData | GenTaskData) -> RunConfig:
    """Fill the settings whose default depends on the model, so a run records what it used: the pooling
    of classification heads (None where nothing is pooled: generation, verbalizer scoring)."""
    family = _architecture(resolve_model(cfg.model)).family
    if isinstance(data, GenTaskData) or (cfg.decoder_classifier == "verbalizer" and family == "decoder"):
        if cfg.pooling is not None:
            raise XltError(f"--pooling is for classification heads; task {cfg.task!r} with this model pools nothing")
        return cfg
    return cfg.replace(pooling=resolve_pooling(cfg.pooling, family))


def model_fingerprint(name: str) -> dict:
    """What identifies the base model: its name and, for a local folder, its config and weight files
    (sizes and modification times: cheap for an 8B model, and changed by any rewrite)."""
    path = Path(resolve_model(name))
    if not path.is_dir():
        return {"model": name}
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".json", ".model"))
    return {"model": name, "files": {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}}


def stage1_settings(cfg: RunConfig, english: TaskData | GenTaskData) -> dict:
    """Everything the English task model depends on, and nothing else: its cache key.

    The data enters by content (``content_digest`` of the examples stage 1 trains and is tested on),
    never by file path or data directory. The LoRA settings only matter when stage 1 itself is LoRA,
    so stage-2 methods with different ranks (r=64 for FLARE, r=8 for alignment) share one fully
    fine-tuned English model.
    """
    method = stage1_method(cfg)
    lora = ({"lora_r": cfg.lora_r, "lora_alpha": cfg.lora_alpha, "lora_dropout": cfg.lora_dropout}
            if method == "lora" else {})
    return {
        **model_fingerprint(cfg.model), "task": cfg.task, "source_lang": english.source_lang,
        "data": content_digest(english), "seed": cfg.seed, "epochs": cfg.stage1_epochs, "lr": cfg.stage1_lr,
        "freeze_embeddings": cfg.stage1_freeze_embeddings if method == "full" else None,
        "method": method, "decoder_classifier": cfg.decoder_classifier, "pooling": cfg.pooling, **lora,
        "max_length": cfg.max_length, "max_answer_length": cfg.max_answer_length, "batch_size": cfg.batch_size,
        "bf16": cfg.bf16, "fp16": cfg.fp16, "schedule": _schedule(cfg, cfg.stage1_epochs, cfg.stage1_lr),
    }


def stage1_dir(cfg: RunConfig, english: TaskData | GenTaskData | None = None) -> Path:
    english = english if english is not None else load_data(cfg, stage1=True)
    settings = stage1_settings(resolve_defaults(cfg, english), english)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(cfg.stage1_dir) if cfg.stage1_dir else cache_root() / "stage1"
    return root / model_slug(cfg.model) / cfg.task / f"seed{cfg.seed}-{digest}"


def _architecture(path: str) -> Architecture:
    from transformers import AutoConfig

    try:
        return architecture_for(AutoConfig.from_pretrained(path, trust_remote_code=False).model_type)
    except OSError as err:
        raise XltError(f"cannot load model {path!r}: {str(err).splitlines()[0]}") from None


def _check_precision(cfg: RunConfig, arch: Architecture, model_type: str) -> None:
    if cfg.fp16 and model_type == "mt5":
        raise XltError("fp16 is refused for mT5 (its activations overflow in fp16); use bf16 or fp32")


def _settings(cfg: RunConfig, epochs: int, lr: float) -> TrainSettings:
    return TrainSettings(epochs, lr, cfg.batch_size, bf16=cfg.bf16, fp16=cfg.fp16, show_progress=cfg.show_progress)


def _schedule(cfg: RunConfig, epochs: int, lr: float) -> dict:
    """The training settings that change a model (all of TrainSettings but the progress bar)."""
    settings = asdict(_settings(cfg, epochs, lr))
    settings.pop("show_progress")
    return {**settings, "lr_schedule": "linear warm-up and decay (transformers)"}


def ensure_stage1(cfg: RunConfig) -> Path:
    """The English task model for (model, task, seed, settings, data): trained once, then reused by every
    stage-2 run. It trains and is tested on the source (English) side of the task's examples."""
    english = load_data(cfg, stage1=True)
    cfg = resolve_defaults(cfg, english)
    folder = stage1_dir(cfg, english)

    def build(tmp: Path) -> None:
        kind = kind_of(english, cfg)
        _set_seed(cfg.seed)
        path = resolve_model(cfg.model)
        arch = _architecture(path)
        tokenizer = load_tokenizer(path)
        model = kind.load_model(path, tokenizer, english, arch)
        _check_precision(cfg, arch, model.config.model_type)
        method = stage1_method(cfg)
        if method == "lora":  # large decoders: LoRA (+ head), merged into the weights afterwards
            head = kind.head_modules(arch)
            model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                     lora_dropout=cfg.lora_dropout, target_modules=list(arch.targets),
                                                     modules_to_save=head))
        elif cfg.stage1_freeze_embeddings:  # the word embeddings are 80% of e5-small's parameters
            model.get_input_embeddings().weight.requires_grad_(False)
        to_batch = kind.train_batches(cfg, tokenizer, model, english, "target", None)
        seconds = train(model, english.train, to_batch, _settings(cfg, cfg.stage1_epochs, cfg.stage1_lr), cfg.seed,
                        desc=f"stage 1 ({cfg.source_lang})")
        if method == "lora":
            model = model.merge_and_unload()
        metrics = kind.evaluate(cfg, model, tokenizer, english, "target", None, desc=f"stage 1 test ({cfg.source_lang})")
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        labels = list(english.labels) if isinstance(english, TaskData) else None
        write_json(tmp / STAGE1_INFO, {"settings": stage1_settings(cfg, english), "labels": labels, "method": method,
                                       "pooling": cfg.pooling, "train_examples": len(english.train),
                                       "test_examples": len(english.test), "train_seconds": seconds,
                                       "source_metrics": metrics})

    return build_once(folder, build, collective=True)  # stage 1 trains: every process takes part


def build_model(cfg: RunConfig, stage1: Path, data: TaskData | GenTaskData) -> tuple[AdaptedModel, object]:
    info = json.loads((stage1 / STAGE1_INFO).read_text())
    if isinstance(data, TaskData) and tuple(info["labels"] or ()) != tuple(data.labels):
        raise XltError(f"label set {list(data.labels)} differs from the English model's {info['labels']}")
    if info.get("pooling") != cfg.pooling:
        raise XltError(f"the English model at {stage1} pools {info.get('pooling')!r}, the run asks for "
                       f"{cfg.pooling!r} (a stage-1 model from an older xlt has no pooling: delete it to rebuild)")
    tokenizer = load_tokenizer(str(stage1))
    arch = _architecture(str(stage1))
    model = kind_of(data, cfg).load_model(str(stage1), tokenizer, data, arch)
    _check_precision(cfg, arch, model.config.model_type)
    adapter = AdapterSettings(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.fusion, cfg.source_layer_offset,
                              cfg.train_head, all_linear=cfg.lora_targets == "all-linear", pooling=cfg.pooling)
    adapted = attach(model, get_method(cfg.method), arch, adapter)
    if cfg.gradient_checkpointing:
        enable_checkpointing(model)
    return adapted, tokenizer


def source_of(method) -> str | None:
    """What a method's batches give the model to fuse: the English text (FLARE) or nothing."""
    return "text" if method.needs_source_pass else None


def evaluate_adapted(cfg: RunConfig, adapted: AdaptedModel, tokenizer, data: TaskData | GenTaskData) -> dict:
    method = adapted.method
    kind = kind_of(data, cfg)
    result = {"metrics": kind.evaluate(cfg, adapted.model, tokenizer, data, method.view, source_of(method),
                                       f"test ({cfg.target_lang})")}
    if adapted.flare is not None and cfg.zero_source_eval:
        result["metrics_zero_source"] = kind.evaluate(cfg, adapted.model, tokenizer, data, method.view, "zero",
                                                      "test, source zeroed")
    return result


def _alignment_layers(cfg: RunConfig, model) -> list[int]:
    from xlt.alignment.contrastive import middle_layer

    if cfg.align_layers:
        try:
            return [int(x) for x in cfg.align_layers.split(",")]
        except ValueError:
            raise XltError(f"align_layers must be comma-separated layer numbers, got {cfg.align_layers!r}") from None
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return [middle_layer(config.num_hidden_layers if hasattr(config, "num_hidden_layers") else config.num_layers)]


def _align_langs(cfg: RunConfig) -> list[str]:
    return [x.strip() for x in (cfg.align_langs or cfg.target_lang).split(",") if x.strip()]


def make_aligner(cfg: RunConfig, tokenizer, model):
    """Training pairs with English for the align methods (the train split of the parallel set)."""
    from xlt.alignment.aligner import Aligner
    from xlt.alignment.contrastive import AlternatingSchedule, alignment_pairs

    pairs = alignment_pairs(cfg.align_data, _align_langs(cfg), "train", cfg.data_dir, cfg.align_max_pairs)
    task, align = (int(x) for x in cfg.align_ratio.split(":"))
    return Aligner(pairs, tokenizer, _alignment_layers(cfg, model), cfg.align_temperature, cfg.batch_size,
                   cfg.max_length, AlternatingSchedule(task, align), cfg.seed)


def alignment_retrieval(cfg: RunConfig, adapted: AdaptedModel, tokenizer, layers: list[int]) -> dict:
    """Margin retrieval English<->language at the aligned layers on held-out (test split) sentences,
    without and with the adapter: the evidence that alignment training did what it should."""
    from xlt.alignment.contrastive import alignment_pairs, backbone_of
    from xlt.alignment.retrieval import layer_embeddings, retrieval_accuracy

    pairs = alignment_pairs(cfg.align_data, _align_langs(cfg), "test", cfg.data_dir, cfg.max_eval_examples)
    backbone = backbone_of(adapted.model)
    result = {}
    for lang, rows in pairs.items():
        english, target = [e for e, _ in rows], [t for _, t in rows]

        def accuracy() -> dict:
            emb_en, emb_t = layer_embeddings(backbone, tokenizer, english), layer_embeddings(backbone, tokenizer, target)
            return {str(layer): (retrieval_accuracy(emb_t[layer - 1], emb_en[layer - 1])
                                 + retrieval_accuracy(emb_en[layer - 1], emb_t[layer - 1])) / 2 for layer in layers}

        with adapted.model.disable_adapter():
            before = accuracy()
        result[lang] = {"before": before, "after": accuracy(), "sentences": len(rows)}
    return result


def run_stage2(cfg: RunConfig) -> dict:
    """Train (if the method trains) and evaluate one method; writes the run directory."""
    method = get_method(cfg.method)
    out = Path(cfg.output_dir)
    check_replaceable(out)  # before any work: the finished run replaces the whole folder
    data = load_data(cfg)
    cfg = resolve_defaults(cfg, data)
    stage1 = ensure_stage1(cfg)
    info = json.loads((stage1 / STAGE1_INFO).read_text())
    _set_seed(cfg.seed)
    adapted, tokenizer = build_model(cfg, stage1, data)
    train_seconds = 0.0
    aligner = make_aligner(cfg, tokenizer, adapted.model) if method.align else None
    processes = run_processes()  # under accelerate launch: every process trains its shard, one writes
    source_passes = {}
    if adapted.flare is not None and cfg.source_cache_gb > 0:
        adapted.flare.enable_source_cache(int(cfg.source_cache_gb * 2**30))
    if method.trains:
        to_batch = kind_of(data, cfg).train_batches(cfg, tokenizer, adapted.model, data, method.view, source_of(method))
        train_seconds = train(adapted.model, data.train, to_batch, _settings(cfg, cfg.epochs, cfg.lr), cfg.seed,
                              desc=f"{cfg.method} ({cfg.target_lang})", aligner=aligner, task_loss=method.task_loss)
    if adapted.flare is not None:  # frozen English passes per training example: 1.0 with the cache, else epochs
        source_passes = {"source_passes_per_example": round(adapted.flare.source_rows_computed / len(data.train), 3)}
    result = evaluate_adapted(cfg, adapted, tokenizer, data)
    if aligner is not None:
        result["alignment_retrieval"] = alignment_retrieval(cfg, adapted, tokenizer, aligner.layers)
    source_metrics = info["source_metrics"]
    metrics = {
        "task": cfg.task, "method": cfg.method, "fusion": cfg.fusion, "model": cfg.model,
        "source_lang": data.source_lang, "target_lang": data.target_lang, "seed": cfg.seed,
        "trainable_params": adapted.trainable_params if method.trains else 0,
        "train_seconds": round(train_seconds, 2), "train_examples": len(data.train) if method.trains else 0,
        "test_examples": len(data.test), **source_passes, **result, "source_metrics": source_metrics,
        "gap": {k: gap_to_source(source_metrics[k], v) for k, v in result["metrics"].items()
                if k in source_metrics and source_metrics[k]},
        "processes": processes.num_processes,
        "stage1_dir": str(stage1.resolve()), "stage1_examples": {"train": info["train_examples"], "test": info["test_examples"]},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if processes.is_main_process:
        _write_run_dir(cfg, out, metrics, adapted if method.trains else None)
    processes.wait_for_everyone()
    return metrics


def _write_run_dir(cfg: RunConfig, out: Path, metrics: dict, adapted: AdaptedModel | None) -> None:
    """config.yaml, adapter/ (with its model card) and metrics.json, swapped in whole (xlt.run_dir)."""
    config = cfg.to_dict()
    card = model_card(config, metrics, out.resolve())
    write_adapter = None if adapted is None else (lambda folder: save_adapter(adapted, folder, card))
    write_run(out, config, metrics, write_adapter)


def finished_run(cfg: RunConfig) -> dict | None:
    """The metrics of a complete run of exactly this config in ``cfg.output_dir``, if there is one:
    config.yaml equal to ``cfg``, metrics.json with metrics, and the adapter files if the method trains."""
    out = Path(cfg.output_dir)
    if missing_files(out, get_method(cfg.method).trains):
        return None
    try:
        saved = RunConfig.from_yaml(out / CONFIG)
    except XltError:
        return None
    try:
        metrics = json.loads((out / METRICS).read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(metrics, dict) and isinstance(metrics.get("metrics"), dict)):
        return None
    if saved.pooling is not None and cfg.pooling is None:  # the run recorded the family default it resolved
        cfg = cfg.replace(pooling=resolve_pooling(None, _architecture(resolve_model(cfg.model)).family))
    return metrics if saved.replace(show_progress=cfg.show_progress) == cfg else None


def _read_metrics(run_dir: Path) -> dict:
    try:
        saved = json.loads((run_dir / METRICS).read_text())
    except ValueError:
        raise XltError(f"{run_dir / METRICS} is not valid JSON") from None
    if not isinstance(saved, dict):
        raise XltError(f"{run_dir / METRICS} does not hold a JSON object")
    return saved


def reevaluate_run(run_dir: str | Path) -> dict:
    """Rebuild a finished run from its directory and evaluate it again on the same test set."""
    run_dir = Path(run_dir)
    missing = missing_files(run_dir, trains=False)
    if missing:
        raise XltError(f"{run_dir} is not a finished run: {missing[0]} is missing")
    cfg = RunConfig.from_yaml(run_dir / CONFIG)
    missing = missing_files(run_dir, get_method(cfg.method).trains)
    if missing:
        raise XltError(f"{run_dir} is not a finished run: {missing[0]} is missing")
    saved = _read_metrics(run_dir)
    stage1 = Path(saved.get("stage1_dir", ""))
    if "stage1_dir" not in saved or not (stage1 / STAGE1_INFO).is_file():
        raise XltError(f"the run's English model {saved.get('stage1_dir')} is missing")
    data = load_data(cfg)
    adapted, tokenizer = build_model(cfg, stage1, data)
    if adapted.method.trains:
        load_adapter(adapted, run_dir / ADAPTER)
    return evaluate_adapted(cfg, adapted, tokenizer, data)


def evaluate_run(run_dir: str | Path) -> dict:
    """:func:`reevaluate_run`, and whether it reproduces metrics.json: ``matches_stored`` (None when the
    run stored no metrics, as a merge not evaluated yet) and ``stored_differences``."""
    result = reevaluate_run(run_dir)
    differences = stored_differences(_read_metrics(Path(run_dir)), result)
    return {**result, "matches_stored": None if differences is None else not differences,
            "stored_differences": differences or []}


def differences_line(result: dict) -> str | None:
    """One line naming each metric that ``evaluate_run`` recomputed differently from metrics.json."""
    if not result.get("stored_differences"):
        return None
    parts = [f"{d['metric']} stored {d['stored']}, recomputed {d['recomputed']}" for d in result["stored_differences"]]
    return "recomputed metrics differ from the run's metrics.json: " + "; ".join(parts)
