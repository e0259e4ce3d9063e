"""Stage 1: the English task model, trained once per (model, task, seed, settings, English data) and cached.

``stage1_settings`` is its cache key: the English examples by content and every setting that
changes the model. ``ensure_stage1`` builds the folder (in every process under ``accelerate
launch``, published by one), reading top to bottom: set up the model, train it, evaluate it, save it.
What both stages resolve (the run's data, model and defaults) is :mod:`xlt.runs.recipe`'s.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path

from peft import LoraConfig, get_peft_model

from xlt.config import RunConfig
from xlt.data.examples import AnyTaskData, GenTaskData, QATaskData, TagTaskData, TaskData, content_digest
from xlt.data.qa_generation import is_generated_qa
from xlt.data.registry import default_stage1_lr
from xlt.io import failed_writes_named, write_json
from xlt.kinds.registry import kind_of
from xlt.models.cache import build_once, cache_root
from xlt.models.loading import load_tokenizer, model_slug
from xlt.run_dir import STAGE1_INFO  # noqa: F401  (the English model's record, imported from here by others)
from xlt.runs.recipe import Run, as_run, resolve_defaults
from xlt.runs.settings import check_precision, schedule, set_seed, train_settings
from xlt.training.limits import check_steps
from xlt.training.loop import StepLog, task_steps, train


def stage1_method(run: Run | RunConfig) -> str:
    """"full" or "lora": the flag, else the architecture's default (LoRA for large decoders)."""
    run = as_run(run)
    return run.cfg.stage1_method or run.architecture.stage1


def stage1_lr(run: Run | RunConfig) -> float:
    """Stage 1's learning rate: the flag, else the task's for full fine-tuning or a LoRA rate for LoRA."""
    run = as_run(run)
    cfg = run.cfg
    return cfg.stage1_lr if cfg.stage1_lr is not None else default_stage1_lr(cfg.task, stage1_method(run))


def model_fingerprint(name: str, path: str) -> dict:
    """What identifies the base model ``name`` (at ``path``, its resolved folder or id): its name and, for a local
    folder, its config and weight files (sizes and modification times: cheap for an 8B model, and changed by any
    rewrite)."""
    path = Path(path)
    if not path.is_dir():
        return {"model": name}
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".json", ".model"))
    return {"model": name, "files": {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}}


def stage1_lora(cfg: RunConfig) -> dict:
    """Stage 1's LoRA settings (a decoder's English model). Never the stage-2 ``--lora-r``: an alignment run
    (r=8) and a zero-shot run (r=64) must read the same English model, or their difference is two models'."""
    return {"lora_r": cfg.stage1_lora_r, "lora_alpha": 2 * cfg.stage1_lora_r, "lora_dropout": cfg.stage1_lora_dropout}


def stage1_settings(run: Run, english: AnyTaskData) -> dict:
    """Everything the English task model depends on, and nothing else: its cache key.

    The data enters by content (``content_digest`` of the examples stage 1 trains and is tested on),
    never by file path or data directory. The LoRA settings only matter when stage 1 itself is LoRA,
    so stage-2 methods with different ranks (r=64 for FLARE, r=8 for alignment) share one fully
    fine-tuned English model; stage-1 LoRA has its own rank (``--stage1-lora-r``) for the same reason.
    """
    cfg = run.cfg
    tuning = stage1_method(run)  # "full" or "lora"
    lora = stage1_lora(cfg) if tuning == "lora" else {}
    qa = ({"qa_max_length": cfg.qa_max_length, "doc_stride": cfg.doc_stride,
           "qa_windows_per_pass": cfg.qa_windows_per_pass} if isinstance(english, QATaskData)  # dropout draws
          else {"qa_max_length": cfg.qa_max_length} if is_generated_qa(english)
          # prompts were once cut at their end, then at --max-length including the instruction
          else {"prompt_cut": "text-limit-before-cue"} if isinstance(english, GenTaskData)
          else {})  # only these tasks' keys: the others keep their cached models
    return {
        **model_fingerprint(cfg.model, run.model_path), "task": cfg.task, "source_lang": english.source_lang,
        "data": content_digest(english), "seed": cfg.seed, "epochs": cfg.stage1_epochs, "lr": stage1_lr(run),
        "freeze_embeddings": cfg.stage1_freeze_embeddings if tuning == "full" else None,
        "method": tuning, "decoder_classifier": cfg.decoder_classifier, "pooling": cfg.pooling, **lora,
        "max_length": cfg.max_length, "max_answer_length": cfg.max_answer_length, "batch_size": cfg.batch_size,
        "bf16": cfg.bf16, "fp16": cfg.fp16, "schedule": schedule(cfg, cfg.stage1_epochs, stage1_lr(run)), **qa,
    }


def stage1_dir(run: Run | RunConfig, english: AnyTaskData | None = None) -> Path:
    """The English model's cache folder: named for the model, the task and the digest of its settings."""
    run = as_run(run)
    english = english if english is not None else run.english
    settings = stage1_settings(resolve_defaults(run, english), english)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    cfg = run.cfg
    root = Path(cfg.stage1_dir) if cfg.stage1_dir else cache_root() / "stage1"
    return root / model_slug(cfg.model) / cfg.task / f"seed{cfg.seed}-{digest}"


def ensure_stage1(run: Run | RunConfig, log: StepLog | None = None) -> Path:
    """The English task model for (model, task, seed, settings, data): trained once, then reused by every
    stage-2 run. It trains and is tested on the source (English) side of the task's examples. ``log``: the
    tracked run's logger of training steps (only when this call trains it)."""
    run = as_run(run)
    english = run.english
    cfg = run.cfg
    check_steps(len(english.train), cfg.batch_size, cfg.stage1_epochs, "stage 1", "--stage1-epochs")
    run = resolve_defaults(run, english)
    folder = stage1_dir(run, english)
    with failed_writes_named(folder):
        return build_once(folder, partial(_build, run, english, log=log), collective=True)  # every process trains


def _build(run: Run, english: AnyTaskData, tmp: Path, log: StepLog | None = None) -> None:
    """Stage 1 as a recipe: set up the model, train it, evaluate it on the English test set, save it."""
    cfg = run.cfg
    set_seed(cfg.seed)
    kind, tokenizer, model = _setup(run, english)
    to_batch = kind.train_batches(cfg, tokenizer, model, english, "target", None)
    plan = task_steps(english.train, to_batch, cfg.batch_size, cfg.stage1_epochs, cfg.seed, cfg.qa_windows_per_pass)
    fit = train(model, plan, train_settings(cfg, cfg.stage1_epochs, stage1_lr(run)), f"stage 1 ({cfg.source_lang})",
                log)
    tuning = stage1_method(run)
    # full fine-tuning saves the accelerator's gathered state (FSDP/ZeRO-3 shard the module's own); LoRA is
    # merged into the module's weights, which needs them whole (not checked under FSDP: no GPU here)
    state = fit.state_dict() if tuning == "full" else None
    model = fit.unwrapped()
    if tuning == "lora":
        model = model.merge_and_unload()
    metrics = kind.evaluate(cfg, model, tokenizer, english, "target", None, desc=f"stage 1 test ({cfg.source_lang})")
    model.save_pretrained(tmp, safe_serialization=True, **({} if state is None else {"state_dict": state}))
    tokenizer.save_pretrained(tmp)
    labels = list(english.labels) if isinstance(english, (TaskData, TagTaskData)) else None
    write_json(tmp / STAGE1_INFO, {"settings": stage1_settings(run, english), "labels": labels, "method": tuning,
                                   "pooling": cfg.pooling, "train_examples": len(english.train),
                                   "test_examples": len(english.test), "train_seconds": fit.seconds,
                                   "source_metrics": metrics})


def _setup(run: Run, english: AnyTaskData):
    """The task kind, tokenizer and base model to train: full fine-tuning (word embeddings frozen by default)
    or, for large decoders, LoRA (+ head), merged into the weights after training."""
    cfg, arch = run.cfg, run.architecture
    kind = kind_of(english, cfg)
    tokenizer = load_tokenizer(run.model_path)
    model = kind.load_model(run.model_path, tokenizer, english, arch)
    check_precision(cfg, model.config.model_type)
    if stage1_method(run) == "lora":
        lora = stage1_lora(cfg)
        model = get_peft_model(model, LoraConfig(r=lora["lora_r"], lora_alpha=lora["lora_alpha"],
                                                 lora_dropout=lora["lora_dropout"], target_modules=list(arch.targets),
                                                 modules_to_save=kind.head_modules(arch)))
    elif cfg.stage1_freeze_embeddings:  # the word embeddings are 80% of e5-small's parameters
        model.get_input_embeddings().weight.requires_grad_(False)
    return kind, tokenizer, model
