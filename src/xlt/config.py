"""The settings of one run, from CLI flags or a YAML file with the same keys, validated up front.

``RunConfig`` is the one source of truth for ``xlt train``: each field's annotation gives the flag's
type (and the type a YAML value must have), its :func:`setting` metadata the help line and the
choices. Adding a setting is one line here; the flag, its help and its checks follow.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from xlt.data.paths import resolve_data_dir
from xlt.data.registry import STAGE1_BUDGET, STAGE1_LORA_LR, TASKS, get_task
from xlt.errors import XltError, clip, echo
from xlt.flare.fusion_names import FUSIONS, check_fusion_name, needs_alignment
from xlt.languages import canonical_code
from xlt.methods.table import ALIGN_LORA_R, DEFAULT_LORA_R, METHODS, MIXUP_OPTIONS, get_method, methods_with
from xlt.scoring.generation import check_bleu_tokenizer
from xlt.training.limits import MAX_OPTIMIZER_STEPS

ALL = "all"  # how help lines show a None limit (no maximum)
MAX_LORA_R = 65_536  # above any model's hidden size, the most a LoRA update's rank can use (xlt.runs.preflight checks
# the model's own hidden size once its config is read)


def show_value(value: Any) -> str:
    """A default as a help line shows it: on/off, none, space-separated lists."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


def setting(default: Any, help: str, choices: tuple | Callable[[], tuple] | None = None,
            shown: str | None = None, many: bool = False) -> Any:
    """A RunConfig field with its help line; ``shown`` says what the default means when it is None; ``choices``
    may be a function, read each time (the task table grows with xlt.data.registry.register_task); ``many``: a
    list of names (``--flag A B``, a YAML list or one string), held as one comma-separated string."""
    return field(default=default, metadata={"help": help, "choices": choices, "shown": shown, "many": many})


def field_choices(f: Field) -> tuple | None:
    """The choices of a RunConfig field now."""
    choices = f.metadata.get("choices")
    return choices() if callable(choices) else choices


def _task_names() -> tuple[str, ...]:
    return tuple(TASKS)


def _user_files_help(test: bool) -> str:
    """The --train-file/--test-file help line: what each task of the user's files reads (its row's user_files)."""
    rows = [(name, spec.user_files) for name, spec in TASKS.items() if spec.user_files]
    if test:
        return f"tasks {', '.join(name for name, _ in rows)}: test file with the same columns"
    return "task " + "; ".join(f"{name}: {'training ' if i == 0 else ''}{files.format} ({files.columns})"
                               for i, (name, files) in enumerate(rows))


def _budget_shown(index: int) -> str:
    """A stage-1 default as help shows it: the general value, then the tasks that differ."""
    tasks: dict[object, list[str]] = {}
    for task, spec in TASKS.items():
        if spec.stage1_budget:
            tasks.setdefault(spec.stage1_budget[index], []).append(task)
    return "; ".join([show_value(STAGE1_BUDGET[index])] + [f"{show_value(v)} for {', '.join(t)}"
                                                            for v, t in tasks.items()])


@dataclass
class RunConfig:
    task: str = setting("nusax", "task: the data set (its one-line description below)", choices=_task_names)
    method: str = setting("lora", "stage-2 method", choices=tuple(METHODS))
    fusion: str | None = setting(None, "FLARE fusion of the target and English bottlenecks (flare only)",
                                 choices=FUSIONS, shown="add_relu for flare")
    model: str = setting("e5-small", "e5-small, tiny-random/<family>, a Hugging Face model id or a local folder")
    source_lang: str = setting("en", "language of the English task model and of each example's source version")
    source_from: str = setting("gold", "the source text stage 2 reads or fuses: gold (each example's source_lang "
                                       "version), pivot:LANG (its version in another language of a parallel set, "
                                       "e.g. pivot:id on NusaX), mt:MODEL (the target text machine-translated into "
                                       "source_lang) or lexicon (NusaX word-by-word stand-in); stage 1 always reads "
                                       "source_lang")
    translator: str | None = setting(None, "MT model of translate-test (the English it reads) and translate-train "
                                           "(the training set it translates): a Hugging Face seq2seq id or folder "
                                           "(NLLB, M2M100, Marian), a CTranslate2 folder, or lexicon")
    mt_beams: int = setting(1, "beam size of machine translation (1: greedy)")
    mt_batch_size: int = setting(16, "sentences per machine-translation batch")
    translation_cache: str | None = setting(None, "sqlite file of cached translations", shown="under the cache dir")
    mt_model: str | None = setting(None, "flare-mt: the MT model whose frozen encoder reads the target text (NLLB, "
                                         "M2M100 or OPUS-MT: a Hugging Face id or folder)", shown="none")
    target_lang: str = setting("ace", "target language: ISO 639-1/3 code or the data set's name")
    seed: int = setting(0, "random seed (0 .. 2**32-1)")
    output_dir: str | None = setting(None, "run directory: config.yaml, adapter/, metrics.json; a new or empty "
                                           "folder, or one holding an earlier xlt run (with --overwrite)",
                                     shown="a new folder runs/TASK-TARGET-METHOD[-FUSION]-seedSEED[-N]")
    data_dir: str | None = setting(None, "data set folder", shown="$XLT_DATA_DIR, else ../shared/datasets")
    train_file: str | None = setting(None, _user_files_help(test=False), shown="none")
    test_file: str | None = setting(None, _user_files_help(test=True), shown="none")
    # stage 2 (paper defaults: LoRA on query/value, r=64, alpha=128)
    epochs: int = setting(5, "stage-2 epochs")
    lr: float = setting(5e-4, "stage-2 learning rate (> 0)")
    batch_size: int = setting(32, "examples per batch")
    max_length: int = setting(64, "tokens per text (longer texts are truncated; generation tasks: the "
                                  "instruction's tokens come on top)")
    pooling: str | None = setting(None, "how a classification head reads the tokens: their mean, the first or the "
                                  "last real token (eos: mT5's own head, its only choice)",
                                  choices=("mean", "first", "last", "eos"), shown="mean for encoders, last for decoders")
    decoder_classifier: str = setting("head", "decoder classification: a head on the last non-pad token, or "
                                      "each label word's log-likelihood", choices=("head", "verbalizer"))
    max_answer_length: int = setting(48, "generation tasks: answer tokens in training, new tokens in decoding; QA: "
                                         "tokens of the longest answer span predicted")
    qa_max_length: int = setting(384, "QA: tokens per window (question + a chunk of the paragraph); decoders and "
                                      "mT5: tokens per prompt (instruction, question, a window of the paragraph)")
    doc_stride: int = setting(128, "QA on encoders: tokens consecutive paragraph windows share (at most half a "
                                   "window's paragraph)")
    qa_windows_per_pass: int = setting(16, "QA on encoders: most windows one model call takes; a batch's further "
                                           "windows run in further calls, gradients accumulated (bounds memory "
                                           "however long the paragraphs)")
    num_beams: int = setting(1, "generation tasks: beam size of decoding (1: greedy; beams for methods without a "
                                "source text)")
    lora_r: int | None = setting(None, "LoRA rank",
                                 shown=f"{DEFAULT_LORA_R} (FLARE paper); {ALIGN_LORA_R} for align methods")
    lora_alpha: int | None = setting(None, "LoRA alpha (> 0)", shown="2 * lora_r")
    lora_dropout: float = setting(0.1, "LoRA dropout, in [0, 1)")
    lora_targets: str | None = setting(None, "modules that get LoRA: attention query/value, or every linear layer",
                                       choices=("attention", "all-linear"),
                                       shown="attention; all-linear for align methods")
    source_layer_offset: int = setting(1, "FLARE: layer i fuses the English state of layer i + offset "
                                       "(1: the paper's equation)", choices=(0, 1))
    mixup_layers: str | None = setting(None, "x-mixup: comma-separated 1-based layers whose output is mixed with "
                                       "the English states", shown="the middle layer")
    mixup_lambda: float | None = setting(None, "x-mixup: the mixing ratio λ in [0, 1] (fixed), or the adaptive λ's "
                                         "ceiling λ0 (entropy)", shown="0.5 for x-mixup")
    mixup_schedule: str | None = setting(None, "x-mixup: λ fixed, or per example from the cross-attention's entropy "
                                         "(the paper)", choices=("fixed", "entropy"), shown="entropy for x-mixup")
    max_grad_norm: float = setting(1.0, "clip the gradients' global norm at this value before each optimizer step, "
                                        "stage 1 and stage 2 (0: no clipping)")
    train_head: bool = setting(False, "also train the task head in stage 2")
    gradient_checkpointing: bool = setting(False, "gradient checkpointing (less memory, slower)")
    bf16: bool = setting(False, "bf16 autocast")
    fp16: bool = setting(False, "fp16 autocast (refused for mT5, whose activations overflow in fp16)")
    max_train_examples: int | None = setting(None, "stage-2 (target-language) training examples", shown=ALL)
    max_eval_examples: int | None = setting(None, "test examples", shown=ALL)
    # alignment (methods align, lora+align)
    align_data: str = setting("nusax-mt", "align methods: parallel set with English (nusax-mt, xnli, massive, wmt23, "
                              "tatoeba) or a CSV/JSONL file with one column per language")
    align_langs: str | None = setting(None, "align methods: comma-separated languages to align with English",
                                      shown="the target language")
    align_layers: str | None = setting(None, "align methods: comma-separated 1-based layers",
                                       shown="the middle layer")
    align_temperature: float = setting(0.1, "align methods: InfoNCE temperature (> 0)")
    align_ratio: str = setting("1:1", "lora+align: task steps:alignment steps")
    align_max_pairs: int | None = setting(None, "align methods: sentence pairs per language (>= 2)", shown=ALL)
    zero_source_eval: bool = setting(True, "flare: also report metrics with the English states zeroed")
    source_cache_gb: float = setting(2.0, "flare: memory for the English states kept across epochs, GiB (beyond "
                                          "it they spill to a temporary file; 0: recompute them every epoch)")
    # stage 1 (English task model), cached per (model, task, seed, these settings)
    stage1_epochs: int | None = setting(None, "stage-1 (English task model) epochs", shown=_budget_shown(0))
    stage1_lr: float | None = setting(None, "stage-1 learning rate (> 0)",
                                      shown=f"{_budget_shown(1)}; {show_value(STAGE1_LORA_LR)} when stage 1 is LoRA")
    stage1_freeze_embeddings: bool = setting(True, "stage 1, full fine-tuning: freeze the word embeddings")
    stage1_method: str | None = setting(None, "stage 1: full fine-tuning, or LoRA merged into the weights",
                                        choices=("full", "lora"), shown="full for encoders, lora for decoders and mT5")
    stage1_lora_r: int = setting(DEFAULT_LORA_R, "stage 1 as LoRA (decoders): its rank (alpha 2 * rank), the same "
                                 "whatever stage-2 method follows, so every method adapts one English model")
    stage1_lora_dropout: float = setting(0.1, "stage 1 as LoRA: its dropout, in [0, 1)")
    stage1_max_train_examples: int | None = setting(None, "English training examples for stage 1", shown=ALL)
    stage1_dir: str | None = setting(None, "cache root for stage-1 models", shown="$XLT_CACHE_DIR/stage1")
    show_progress: bool = setting(True, "progress bars")
    report_to: str | None = setting(None, "experiment trackers (accelerate's: tensorboard, wandb, mlflow, ...) that log "
                                    "each optimizer step's loss and learning rate and the test metrics; local logs go "
                                    "to RUN_DIR/tracking/", shown="none (off)", many=True)

    def __post_init__(self) -> None:
        self.report_to = _names(self.report_to)
        for f in fields(self):
            setattr(self, f.name, _typed(f.name, getattr(self, f.name)))
        method = get_method(self.method)
        if self.stage1_epochs is None and self.task in TASKS:  # an unknown task: refused with the choices below
            self.stage1_epochs = TASKS[self.task].budget()[0]  # the rate also depends on the model: stage1.stage1_lr
        if self.lora_r is None:
            self.lora_r = method.lora_r
        if self.lora_alpha is None:
            self.lora_alpha = 2 * self.lora_r
        if self.lora_targets is None:
            self.lora_targets = method.lora_targets
        for f in fields(self):
            _check_choice(f, getattr(self, f.name))
        if method.attention_only and self.lora_targets != "attention":
            raise XltError("FLARE adapts the attention query/value projections only; drop --lora-targets all-linear")
        if not re.fullmatch(r"\d+:\d+", self.align_ratio or "") or self.align_ratio == "0:0":
            raise XltError(f"align_ratio must look like 1:1 (task steps:alignment steps), got {echo(self.align_ratio)}")
        if method.fuses:
            self.fusion = check_fusion_name(self.fusion or "add_relu")
        elif self.fusion is not None:
            raise XltError(f"--fusion is only for --method {' or '.join(methods_with('fusion'))}, not {self.method!r}")
        self._check_mixup()
        self._check_source_from()
        task = get_task(self.task)
        if task.user_files:  # the other tasks' loaders check it against the data set's languages
            canonical_code(self.source_lang)  # metrics.json records its code: unknown, refused after training
        self._check_qa_source(task, method)
        # what the task's row refuses (not parallel, not classification, ...); a machine-translated source lifts some
        refused = task.refusal(method, translated_source=self.source_translator is not None)
        if refused:
            raise XltError(refused)
        self._check_mt_model(method)
        if needs_alignment(self.fusion or "") and (method.mt_encoder or task.kind == "generation"):
            raise XltError(f"--fusion {self.fusion} aligns the model's own states of whole target and English texts; "
                           + ("flare-mt's source is another model's" if method.mt_encoder else
                              f"{self.task} decodes token by token") + ": use a position or summary fusion")
        if self.num_beams > 1 and method.needs_source_pass:
            raise XltError(f"--num-beams is for methods without a source text; {self.method} decodes greedily")
        if task.translation:
            for lang in (self.target_lang, self.source_lang):  # what stage 2 and (custom-mt) stage 1 translate into
                check_bleu_tokenizer(lang)
        if self.bf16 and self.fp16:
            raise XltError("choose one of bf16 and fp16")
        self._check_numbers()
        self.report_to = _tracker_list(self.report_to)

    def _check_qa_source(self, task, method) -> None:
        """Extractive QA reads the gold English side or its machine translation (FLARE and input-fusion read it as
        input); translate-test is scored on English answer spans, which a translated paragraph does not carry."""
        if task.kind != "extractive-qa" or self.source_from == "gold":
            return
        if self.source_translator is None:
            raise XltError(f"task {self.task} reads the gold English side or its machine translation (--source-from "
                           f"mt:MODEL); --source-from {clip(self.source_from)} is not available for QA")
        if method.translated_test:
            raise XltError(f"translate-test on extractive QA ({self.task}) scores answer spans of the English "
                           "paragraph, which machine translation does not carry; use flare or input-fusion with "
                           "--source-from mt:MODEL")

    def _check_mt_model(self, method) -> None:
        if method.mt_encoder and not self.mt_model:
            raise XltError("flare-mt needs --mt-model MODEL: the MT model whose encoder reads the target text")
        if self.mt_model and "mt_model" not in method.options:
            raise XltError(f"--mt-model is for {' or '.join(methods_with('mt_model'))}, not {self.method!r}")
        if method.mt_encoder and self.decoder_classifier == "verbalizer":
            raise XltError("flare-mt feeds the MT states to a classification head's batches; drop --decoder-classifier "
                           "verbalizer")

    def _check_mixup(self) -> None:
        """X-Mixup's settings (its defaults filled in), and what it cannot run: only classification heads."""
        method = get_method(self.method)
        if not method.mixes:
            given = [name for name in MIXUP_OPTIONS if getattr(self, name) is not None]
            if given:
                raise XltError(f"--{given[0].replace('_', '-')} is only for --method "
                               f"{' or '.join(methods_with(given[0]))}, not {self.method!r}")
            return
        self.mixup_lambda = 0.5 if self.mixup_lambda is None else self.mixup_lambda
        self.mixup_schedule = self.mixup_schedule or "entropy"
        if not 0 <= self.mixup_lambda <= 1:  # also refuses nan
            raise XltError(f"mixup_lambda must be in [0, 1], got {echo(self.mixup_lambda)}")
        if self.mixup_layers is not None and not re.fullmatch(r"\s*[1-9]\d*\s*(,\s*[1-9]\d*\s*)*", self.mixup_layers):
            raise XltError(f"mixup_layers must be comma-separated layer numbers >= 1, got {echo(self.mixup_layers)}")
        if self.decoder_classifier != "head":
            raise XltError("x-mixup mixes the states a classification head pools; drop --decoder-classifier verbalizer")
        if self.gradient_checkpointing and not method.checkpointing:
            raise XltError("x-mixup mixes inside the forward pass, which checkpointing would recompute without "
                           "the source; drop --gradient-checkpointing")

    def _check_source_from(self) -> None:
        method = get_method(self.method)
        if self.translator is not None:
            made = "lexicon" if self.translator == "lexicon" else f"mt:{self.translator}"
            if method.translated_test and self.source_from in ("gold", made):
                self.source_from = made  # translate-test reads the translator's English
            elif method.translated_test:
                raise XltError(f"translate-test reads either --translator's English or --source-from "
                               f"{clip(self.source_from)}, not both")
            elif "translator" not in method.options:
                raise XltError(f"--translator is for {' and '.join(methods_with('translator'))}, not {self.method!r} "
                               "(FLARE and input-fusion read machine translation with --source-from mt:MODEL)")
        elif method.translated_train:
            raise XltError("translate-train needs --translator MODEL (or lexicon)")
        kind, _, value = self.source_from.partition(":")
        if self.source_from == "gold":
            return
        if not method.reads_source:
            raise XltError(f"--source-from {clip(self.source_from)} changes the source text, which {self.method!r} "
                           "never reads")
        if self.source_from == "lexicon" or (kind == "mt" and value):
            return
        if kind != "pivot" or not value:
            raise XltError(f"source_from must be gold, pivot:LANG, mt:MODEL or lexicon, got {echo(self.source_from)}")
        if get_task(self.task).user_files:
            raise XltError("source_from pivot:LANG needs a parallel data set; a custom file has one source column")
        if not get_task(self.task).parallel:
            raise XltError(f"source_from pivot:LANG needs a parallel data set; task {self.task} is not parallel")
        pivot = canonical_code(value)
        if pivot in (canonical_code(self.target_lang), canonical_code(self.source_lang)):
            raise XltError(f"source_from pivot:{clip(value)} must differ from the target and the source language")
        self.source_from = f"pivot:{pivot}"

    @property
    def source_text_lang(self) -> str:
        """The language of the source text stage 2 reads: the pivot's, else source_lang."""
        kind, _, value = self.source_from.partition(":")
        return value if kind == "pivot" else self.source_lang

    @property
    def source_translator(self) -> str | None:
        """The translator that makes stage 2's source text (``mt:MODEL`` or ``lexicon``), if any."""
        kind, _, value = self.source_from.partition(":")
        return "lexicon" if self.source_from == "lexicon" else value if kind == "mt" else None

    def _check_numbers(self) -> None:
        if self.doc_stride < 0:
            raise XltError(f"doc_stride must be >= 0, got {echo(self.doc_stride)}")
        if self.qa_max_length < 8:
            raise XltError(f"qa_max_length must be >= 8, got {echo(self.qa_max_length)}")
        for name in ("epochs", "batch_size", "max_length", "max_answer_length", "lora_r", "lora_alpha",
                     "stage1_epochs", "stage1_lora_r", "mt_beams", "mt_batch_size", "num_beams",
                     "qa_windows_per_pass"):
            if getattr(self, name) < 1:
                raise XltError(f"{name} must be >= 1, got {echo(getattr(self, name))}")
        for name, most, why in (("epochs", MAX_OPTIMIZER_STEPS, "optimizer steps a run plans"),
                                ("stage1_epochs", MAX_OPTIMIZER_STEPS, "optimizer steps a run plans"),
                                ("lora_r", MAX_LORA_R, "above any model's hidden size"),
                                ("stage1_lora_r", MAX_LORA_R, "above any model's hidden size")):
            if getattr(self, name) > most:
                raise XltError(f"{name} must be at most {most:,} ({why}), got {echo(getattr(self, name))}")
        for name in ("lr", "stage1_lr", "align_temperature"):
            value = getattr(self, name)
            if value is None:  # stage1_lr: the default for the stage-1 method
                continue
            if not (math.isfinite(value) and value > 0):
                raise XltError(f"{name} must be a finite number > 0, got {echo(value)}")
        for name in ("source_cache_gb", "max_grad_norm"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise XltError(f"{name} must be a finite number >= 0, got {echo(getattr(self, name))}")
        if not 0 <= self.lora_dropout < 1:  # also refuses nan
            raise XltError(f"lora_dropout must be in [0, 1), got {echo(self.lora_dropout)}")
        if not 0 <= self.stage1_lora_dropout < 1:
            raise XltError(f"stage1_lora_dropout must be in [0, 1), got {echo(self.stage1_lora_dropout)}")
        if not 0 <= self.seed < 2**32:
            raise XltError(f"seed must be in 0 .. 2**32-1, got {echo(self.seed)}")
        for name in ("max_train_examples", "max_eval_examples", "stage1_max_train_examples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise XltError(f"{name} must be >= 1, got {echo(value)}")
        if self.align_max_pairs is not None and self.align_max_pairs < 2:
            raise XltError(f"align_max_pairs must be >= 2 (in-batch negatives need a second pair), "
                           f"got {echo(self.align_max_pairs)}")
        if self.align_layers is not None and not re.fullmatch(r"\s*[1-9]\d*\s*(,\s*[1-9]\d*\s*)*", self.align_layers):
            raise XltError(f"align_layers must be comma-separated layer numbers >= 1, got {echo(self.align_layers)}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known, key=str)  # YAML keys may be numbers too
        if unknown:
            shown = ", ".join(echo(key) if not isinstance(key, str) or len(key) > 40 else key for key in unknown[:5])
            more = f" and {len(unknown) - 5:,} more" if len(unknown) > 5 else ""
            raise XltError(f"unknown config key(s): {shown}{more}")
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
            values = yaml.load(path.read_text(encoding="utf-8"), Loader=_ConfigLoader) or {}
        except UnicodeDecodeError:
            raise XltError(f"config file {path} is not UTF-8 text") from None
        except _AliasFound as err:
            raise XltError(f"config file {path}, line {err.line}: YAML aliases ({echo('*' + err.anchor)[1:-1]}) are "
                           "not read in config files; write the value out") from None
        except yaml.YAMLError as err:
            raise XltError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
        except ValueError as err:  # a scalar YAML reads but Python refuses: 2001-13-45, an int of 5,000 digits
            raise XltError(f"config file {path} holds a value YAML cannot read: {echo(str(err))}") from None
        if not isinstance(values, dict):
            raise XltError(f"config file {path} must hold a mapping of keys to values")
        return cls.from_dict({**values, **(overrides or {})})

    def with_absolute_paths(self) -> "RunConfig":
        """The config with every data path absolute, and the data directory the run reads (``--data-dir``,
        else $XLT_DATA_DIR or the one found from here) written out, so that the run directory's config.yaml
        names the same files from any working directory (``xlt evaluate`` elsewhere reads the same data)."""
        changes = {name: _absolute(getattr(self, name)) for name in PATH_FIELDS if getattr(self, name)}
        if Path(self.align_data).suffix.lower() in (".csv", ".jsonl"):
            changes["align_data"] = _absolute(self.align_data)
        if self.data_dir is None and self.reads_data_dir:
            try:
                changes["data_dir"] = _absolute(resolve_data_dir(None))
            except XltError:  # no data directory: loading says so
                pass
        return self.replace(**changes) if changes else self

    @property
    def reads_data_dir(self) -> bool:
        """Whether the run reads the data directory: a built-in data set, a named parallel set (align
        methods) or the NusaX lexicon."""
        method = get_method(self.method)
        return (get_task(self.task).user_files is None
                or (method.align and Path(self.align_data).suffix.lower() not in (".csv", ".jsonl"))
                or "lexicon" in (self.translator, self.source_translator))

    @property
    def trackers(self) -> list[str]:
        """The names of ``report_to`` (empty: no tracking)."""
        return self.report_to.split(",") if self.report_to else []

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)


def _names(value: Any) -> Any:
    """A list of names (the flag's ``NAME [NAME ...]``, a YAML list) as one comma-separated string; anything else
    as it is, for the type check."""
    if isinstance(value, (list, tuple)) and all(isinstance(name, str) for name in value):
        return ",".join(value)
    return value


def _tracker_list(value: str | None) -> str | None:
    """``report_to`` written one way: names separated by commas, each once, in the order given; "none" (or nothing)
    is None, tracking off. Whether accelerate knows a name and its library is installed is checked before the run
    (xlt.runs.preflight), where importing accelerate costs nothing the run would not pay."""
    names = list(dict.fromkeys(name for name in re.split(r"[,\s]+", value or "") if name))
    if names == ["none"] or not names:
        return None
    if "none" in names:
        raise XltError(f"report_to: none turns tracking off and takes no other name, got {echo(value)}")
    return ",".join(names)


PATH_FIELDS = ("train_file", "test_file", "data_dir", "translation_cache", "stage1_dir")  # made absolute


def _absolute(path: str | Path) -> str:
    return os.path.abspath(Path(path).expanduser())


class _AliasFound(yaml.YAMLError):
    def __init__(self, anchor: str, line: int) -> None:
        super().__init__(f"alias *{anchor} on line {line}")
        self.anchor, self.line = anchor, line


class _ConfigLoader(yaml.SafeLoader):
    """YAML's safe subset without aliases: a config file is a flat list of settings, and an alias
    (``*name``) lets a 3 KB file expand into billions of values (a "billion laughs" file)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _AliasFound(str(event.anchor), event.start_mark.line + 1)
        return super().compose_node(parent, index)


_SCALARS = (bool, int, float, str)
_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _field_types() -> dict[str, tuple[type, bool]]:
    """Each field's (scalar type, None allowed), from its annotation: the one place types are declared."""
    types = {}
    for name, hint in typing.get_type_hints(RunConfig).items():
        args = typing.get_args(hint) or (hint,)
        scalars = [a for a in args if a is not type(None)]
        if len(scalars) != 1 or scalars[0] not in _SCALARS:
            raise TypeError(f"RunConfig.{name}: annotate as bool, int, float or str, optionally | None")
        types[name] = (scalars[0], type(None) in args)
    return types


FIELD_TYPES = _field_types()


def _typed(name: str, value: Any) -> Any:
    """``value`` if it has the field's type, else an error; a float field takes an int (5 -> 5.0) and a
    numeric string, because YAML 1.1 reads ``5e-4`` (no dot) as a string. Bools are not ints here."""
    kind, optional = FIELD_TYPES[name]
    if value is None and optional:
        return None
    if kind is str and isinstance(value, os.PathLike):  # from Python callers; YAML needs plain strings
        return os.fspath(value)
    if kind is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    expected = _TYPE_WORDS[kind] + (" or null" if optional else "")
    quote = " (quote it in YAML)" if kind is str and isinstance(value, (bool, int, float)) else ""
    raise XltError(f"{name} must be {expected}, got {echo(value)} ({type(value).__name__}){quote}")


def _check_choice(f: Field, value: Any) -> None:
    choices = field_choices(f)
    if choices and value is not None and value not in choices:
        raise XltError(f"{f.name} must be one of {', '.join(map(str, choices))}; got {echo(value)}")


def shown_default(f: Field) -> str:
    return f.metadata.get("shown") or show_value(f.default)
