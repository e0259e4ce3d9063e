"""Stage 1: the English task model, trained once per (model, task, seed, settings, English data) and cached.

``stage1_settings`` is its cache key: the English examples by content and every setting that
changes the model. ``ensure_stage1`` builds the folder (in every process under ``accelerate
launch``, published by one). The helpers here that both stages use: the data of a run, the
settings the model decides, the architecture and the training settings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from peft import LoraConfig, get_peft_model

from xlt.config import RunConfig
from xlt.data.examples import (AnyTaskData, GenTaskData, QATaskData, TagTaskData, TaskData, content_digest,
                               source_side)
from xlt.data.sets.uner_json import as_generation as json_entities
from xlt.data.qa_generation import as_generation, is_generated_qa
from xlt.data.registry import default_stage1_lr, load_task
from xlt.errors import XltError
from xlt.io import failed_writes_named, write_json
from xlt.methods.table import get_method
from xlt.models.architectures import Architecture, architecture_for
from xlt.models.cache import build_once, cache_root
from xlt.models.classifier import resolve_pooling
from xlt.models.loading import load_tokenizer, model_slug, resolve_model
from xlt.kinds.registry import QA, Generation, Tagging, kind_of
from xlt.training.limits import check_steps
from xlt.training.loop import TrainSettings, task_steps, train

STAGE1_INFO = "stage1.json"
DOC_STRIDE = RunConfig.__dataclass_fields__["doc_stride"].default  # the only value answer generation accepts


def set_seed(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def load_data(cfg: RunConfig, stage1: bool = False, as_read: bool = False) -> AnyTaskData:
    """The task's (target, source) data; stage 1 reads the source (English) side of the same examples,
    or the English splits of a tagging set (``TagTaskData.english``, xlt.data.examples.source_side). A QA
    set is QATaskData for encoders and answer-generation data for the other families; custom-ner is tagging
    data for encoders and JSON-entity generation data (as uner-json) for the others (``as_read``: not yet
    converted, :func:`as_written_for` does it)."""
    source = cfg.source_lang if stage1 else cfg.source_text_lang  # stage 2 may read a pivot's text
    data = load_task(cfg.task, cfg.target_lang, source, cfg.data_dir, cfg.train_file, cfg.test_file)
    if not as_read:
        data = as_written_for(cfg, data)
    if stage1:
        data = source_side(data)
    max_train = cfg.stage1_max_train_examples if stage1 else cfg.max_train_examples
    if max_train:
        data.train = data.train[:max_train]
    if cfg.max_eval_examples:
        data.test = data.test[: cfg.max_eval_examples]
    return data


def as_written_for(cfg: RunConfig, data: AnyTaskData) -> AnyTaskData:
    """``data`` as ``cfg.model``'s family reads it: QA and custom-ner become generation data off encoders."""
    if _written_by_other_families(data) and architecture_of(resolve_model(cfg.model)).family != "encoder":
        return _as_written(data)
    return data


def _written_by_other_families(data: AnyTaskData) -> bool:
    """Sets that encoders read with a span or tagging head and decoders and mT5 write as text."""
    return isinstance(data, QATaskData) or data.task == "custom-ner"


def _as_written(data: QATaskData | TagTaskData) -> GenTaskData:
    """QA as answer generation (xlt.data.qa_generation), custom-ner as JSON entities (xlt.data.sets.uner_json)."""
    return as_generation(data) if isinstance(data, QATaskData) else json_entities(data, data.task)


def stage1_method(cfg: RunConfig) -> str:
    """"full" or "lora": the flag, else the architecture's default (LoRA for large decoders)."""
    return cfg.stage1_method or architecture_of(resolve_model(cfg.model)).stage1


def stage1_lr(cfg: RunConfig) -> float:
    """Stage 1's learning rate: the flag, else the task's for full fine-tuning or a LoRA rate for LoRA."""
    return cfg.stage1_lr if cfg.stage1_lr is not None else default_stage1_lr(cfg.task, stage1_method(cfg))


def resolve_defaults(cfg: RunConfig, data: AnyTaskData) -> RunConfig:
    """Fill the settings whose default depends on the model, so a run records what it used: the pooling
    of classification heads (None where nothing is pooled: generation, tagging, verbalizer scoring)."""
    family = architecture_of(resolve_model(cfg.model)).family
    get_method(cfg.method).check_family(family)
    if isinstance(data, GenTaskData):
        Generation.check_family(data.task, family)
    if isinstance(data, TagTaskData):
        Tagging.check_family(data.task, family)
    if isinstance(data, QATaskData):
        QA.check_family(data.task, family)
    if is_generated_qa(data) and cfg.doc_stride != DOC_STRIDE:
        raise XltError(f"--doc-stride slides encoders' windows over a paragraph; {family} models read one window "
                       "of it, set by --qa-max-length")
    pools_nothing = isinstance(data, (GenTaskData, TagTaskData, QATaskData))
    if pools_nothing or (cfg.decoder_classifier == "verbalizer" and family == "decoder"):
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


def stage1_lora(cfg: RunConfig) -> dict:
    """Stage 1's LoRA settings (a decoder's English model). Never the stage-2 ``--lora-r``: an alignment run
    (r=8) and a zero-shot run (r=64) must read the same English model, or their difference is two models'."""
    return {"lora_r": cfg.stage1_lora_r, "lora_alpha": 2 * cfg.stage1_lora_r, "lora_dropout": cfg.stage1_lora_dropout}


def stage1_settings(cfg: RunConfig, english: AnyTaskData) -> dict:
    """Everything the English task model depends on, and nothing else: its cache key.

    The data enters by content (``content_digest`` of the examples stage 1 trains and is tested on),
    never by file path or data directory. The LoRA settings only matter when stage 1 itself is LoRA,
    so stage-2 methods with different ranks (r=64 for FLARE, r=8 for alignment) share one fully
    fine-tuned English model; stage-1 LoRA has its own rank (``--stage1-lora-r``) for the same reason.
    """
    tuning = stage1_method(cfg)  # "full" or "lora"
    lora = stage1_lora(cfg) if tuning == "lora" else {}
    qa = ({"qa_max_length": cfg.qa_max_length, "doc_stride": cfg.doc_stride,
           "qa_windows_per_pass": cfg.qa_windows_per_pass} if isinstance(english, QATaskData)  # dropout draws
          else {"qa_max_length": cfg.qa_max_length} if is_generated_qa(english)
          # prompts were once cut at their end, then at --max-length including the instruction
          else {"prompt_cut": "text-limit-before-cue"} if isinstance(english, GenTaskData)
          else {})  # only these tasks' keys: the others keep their cached models
    return {
        **model_fingerprint(cfg.model), "task": cfg.task, "source_lang": english.source_lang,
        "data": content_digest(english), "seed": cfg.seed, "epochs": cfg.stage1_epochs, "lr": stage1_lr(cfg),
        "freeze_embeddings": cfg.stage1_freeze_embeddings if tuning == "full" else None,
        "method": tuning, "decoder_classifier": cfg.decoder_classifier, "pooling": cfg.pooling, **lora,
        "max_length": cfg.max_length, "max_answer_length": cfg.max_answer_length, "batch_size": cfg.batch_size,
        "bf16": cfg.bf16, "fp16": cfg.fp16, "schedule": _schedule(cfg, cfg.stage1_epochs, stage1_lr(cfg)), **qa,
    }


def stage1_dir(cfg: RunConfig, english: AnyTaskData | None = None) -> Path:
    english = english if english is not None else load_data(cfg, stage1=True)
    settings = stage1_settings(resolve_defaults(cfg, english), english)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(cfg.stage1_dir) if cfg.stage1_dir else cache_root() / "stage1"
    return root / model_slug(cfg.model) / cfg.task / f"seed{cfg.seed}-{digest}"


def architecture_of(path: str) -> Architecture:
    from transformers import AutoConfig

    try:
        return architecture_for(AutoConfig.from_pretrained(path, trust_remote_code=False).model_type)
    except OSError as err:
        raise XltError(f"cannot load model {path!r}: {str(err).splitlines()[0]}") from None


def check_precision(cfg: RunConfig, arch: Architecture, model_type: str) -> None:
    if cfg.fp16 and model_type == "mt5":
        raise XltError("fp16 is refused for mT5 (its activations overflow in fp16); use bf16 or fp32")


def train_settings(cfg: RunConfig, epochs: int, lr: float) -> TrainSettings:
    return TrainSettings(epochs, lr, cfg.batch_size, bf16=cfg.bf16, fp16=cfg.fp16, max_grad_norm=cfg.max_grad_norm,
                         show_progress=cfg.show_progress)


def _schedule(cfg: RunConfig, epochs: int, lr: float) -> dict:
    """The training settings that change a model (all of TrainSettings but the progress bar)."""
    settings = asdict(train_settings(cfg, epochs, lr))
    settings.pop("show_progress")
    return {**settings, "lr_schedule": "linear warm-up and decay (transformers)"}


def ensure_stage1(cfg: RunConfig) -> Path:
    """The English task model for (model, task, seed, settings, data): trained once, then reused by every
    stage-2 run. It trains and is tested on the source (English) side of the task's examples."""
    english = load_data(cfg, stage1=True)
    check_steps(len(english.train), cfg.batch_size, cfg.stage1_epochs, "stage 1", "--stage1-epochs")
    cfg = resolve_defaults(cfg, english)
    folder = stage1_dir(cfg, english)

    def build(tmp: Path) -> None:
        kind = kind_of(english, cfg)
        set_seed(cfg.seed)
        path = resolve_model(cfg.model)
        arch = architecture_of(path)
        tokenizer = load_tokenizer(path)
        model = kind.load_model(path, tokenizer, english, arch)
        check_precision(cfg, arch, model.config.model_type)
        tuning = stage1_method(cfg)
        if tuning == "lora":  # large decoders: LoRA (+ head), merged into the weights afterwards
            head = kind.head_modules(arch)
            lora = stage1_lora(cfg)
            model = get_peft_model(model, LoraConfig(r=lora["lora_r"], lora_alpha=lora["lora_alpha"],
                                                     lora_dropout=lora["lora_dropout"],
                                                     target_modules=list(arch.targets), modules_to_save=head))
        elif cfg.stage1_freeze_embeddings:  # the word embeddings are 80% of e5-small's parameters
            model.get_input_embeddings().weight.requires_grad_(False)
        to_batch = kind.train_batches(cfg, tokenizer, model, english, "target", None)
        plan = task_steps(english.train, to_batch, cfg.batch_size, cfg.stage1_epochs, cfg.seed, cfg.qa_windows_per_pass)
        fit = train(model, plan, train_settings(cfg, cfg.stage1_epochs, stage1_lr(cfg)), f"stage 1 ({cfg.source_lang})")
        seconds = fit.seconds
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
        write_json(tmp / STAGE1_INFO, {"settings": stage1_settings(cfg, english), "labels": labels, "method": tuning,
                                       "pooling": cfg.pooling, "train_examples": len(english.train),
                                       "test_examples": len(english.test), "train_seconds": seconds,
                                       "source_metrics": metrics})

    with failed_writes_named(folder):
        return build_once(folder, build, collective=True)  # stage 1 trains: every process takes part
