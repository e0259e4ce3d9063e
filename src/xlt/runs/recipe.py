"""A run resolved once. ``Run`` holds the config, its method row (:mod:`xlt.methods.table`), the base model's
folder and architecture row (:mod:`xlt.models.architectures`) and the task's data: stage 2's target side and
stage 1's English side, both cut from one read of the task's files where they read the same languages. Each is
looked up the first time it is needed and never again; stage 1, stage 2, evaluation and the demo take the same
Run. Here too the settings the model decides (:func:`resolve_defaults`) and how each family reads a data set
(:func:`as_written_for`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

from xlt.config import RunConfig
from xlt.data import registry
from xlt.data.examples import AnyTaskData, GenTaskData, QATaskData, TagTaskData, source_side
from xlt.data.qa_generation import as_generation, is_generated_qa
from xlt.data.sets.uner_json import as_generation as json_entities
from xlt.errors import XltError
from xlt.kinds.registry import QA, Generation, Tagging
from xlt.methods.table import Method, get_method
from xlt.models.architectures import Architecture, architecture_for, backbone_model_type
from xlt.models.classifier import resolve_pooling
from xlt.models.loading import resolve_model

DOC_STRIDE = RunConfig.__dataclass_fields__["doc_stride"].default  # the only value answer generation accepts


@dataclass(frozen=True)
class Run:
    """One run's config and what it resolves to. ``memo`` holds each look-up by what it depends on (the model's
    name, the files and languages read), so a Run with a changed config (:meth:`with_config`: the pooling
    resolved, paths made absolute) shares the look-ups that still hold."""

    cfg: RunConfig
    architecture_from: str | None = None  # where the architecture is read (evaluation: the English model's folder)
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def method(self) -> Method:
        return get_method(self.cfg.method)

    @property
    def model_path(self) -> str:
        """The base model's folder (built on first use for the embedded and tiny models) or its Hub id."""
        return self._once(("model_path", self.cfg.model), lambda: resolve_model(self.cfg.model))

    @property
    def architecture(self) -> Architecture:
        path = self.architecture_from or self.model_path
        return self._once(("architecture", path), lambda: architecture_of(path))

    def task_files(self, source_lang: str) -> AnyTaskData:
        """The task's (target, ``source_lang``) data as its files hold it: read once per run and language."""
        cfg = self.cfg
        args = (cfg.task, cfg.target_lang, source_lang, cfg.data_dir, cfg.train_file, cfg.test_file)
        return self._once(("task", *args), lambda: registry.load_task(*args))

    @cached_property
    def data(self) -> AnyTaskData:
        """The task's target-side data as stage 2 reads it (its source text gold; stage 2 may translate it)."""
        return load_data(self)

    @cached_property
    def english(self) -> AnyTaskData:
        """The English (source-language) data stage 1 trains and is tested on."""
        return load_data(self, stage1=True)

    def with_config(self, cfg: RunConfig) -> Run:
        return Run(cfg, self.architecture_from, self.memo)

    def _once(self, key: tuple, make: Callable[[], object]):
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]


def as_run(run: Run | RunConfig) -> Run:
    """A Run for callers that hold a config (the CLI, tests): resolved from here on."""
    return run if isinstance(run, Run) else Run(run)


def architecture_of(path: str) -> Architecture:
    from transformers import AutoConfig

    try:
        return architecture_for(backbone_model_type(AutoConfig.from_pretrained(path, trust_remote_code=False)))
    except OSError as err:
        raise XltError(f"cannot load model {path!r}: {str(err).splitlines()[0]}") from None


def load_data(run: Run | RunConfig, stage1: bool = False, as_read: bool = False) -> AnyTaskData:
    """The task's (target, source) data; stage 1 reads the source (English) side of the same examples,
    or the English splits of a tagging set (``TagTaskData.english``, xlt.data.examples.source_side). A QA
    set is QATaskData for encoders and answer-generation data for the other families; custom-ner is tagging
    data for encoders and JSON-entity generation data (as uner-json) for the others (``as_read``: not yet
    converted, :func:`as_written_for` does it). A new object each call: the files' read is shared."""
    run = as_run(run)
    cfg = run.cfg
    data = run.task_files(cfg.source_lang if stage1 else cfg.source_text_lang)  # stage 2 may read a pivot's text
    if not as_read:
        data = as_written_for(run, data)
    if stage1:
        data = source_side(data)
    max_train = cfg.stage1_max_train_examples if stage1 else cfg.max_train_examples
    return dataclasses.replace(data, train=list(data.train[:max_train] if max_train else data.train),
                               valid=list(data.valid), test=list(data.test[: cfg.max_eval_examples] if
                                                                 cfg.max_eval_examples else data.test))


def as_written_for(run: Run | RunConfig, data: AnyTaskData) -> AnyTaskData:
    """``data`` as the run's model family reads it: QA and custom-ner become generation data off encoders."""
    if _written_by_other_families(data) and as_run(run).architecture.family != "encoder":
        return _as_written(data)
    return data


def _written_by_other_families(data: AnyTaskData) -> bool:
    """Sets that encoders read with a span or tagging head and decoders and mT5 write as text (QA, custom-ner)."""
    return registry.get_task(data.task).written_off_encoders


def _as_written(data: QATaskData | TagTaskData) -> GenTaskData:
    """QA as answer generation (xlt.data.qa_generation), custom-ner as JSON entities (xlt.data.sets.uner_json)."""
    return as_generation(data) if isinstance(data, QATaskData) else json_entities(data, data.task)


def resolve_defaults(run: Run | RunConfig, data: AnyTaskData) -> Run:
    """The run with the settings whose default depends on the model filled in, so it records what it used: the
    pooling of classification heads (None where nothing is pooled: generation, tagging, verbalizer scoring)."""
    run = as_run(run)
    cfg, family = run.cfg, run.architecture.family
    run.method.check_family(family)
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
        return run
    return run.with_config(cfg.replace(pooling=resolve_pooling(cfg.pooling, family)))
