"""The task table: one :class:`TaskSpec` row per data set, and ``load_task``, which turns a task name and
languages into its :class:`TaskData` (classification), :class:`GenTaskData` (generation), :class:`TagTaskData`
(tagging) or :class:`QATaskData` (extractive QA).

Everything the rest of xlt knows about a task is in its row: how it loads (one module of xlt.data.sets, or
xlt.data.formats.user_file for ``custom``), what kind of data it is, its languages, whether each example has an
English version, whether its input and source are the same sentence (translation), the user's files it reads,
stage 1's budget, and which families write it as text. ``RunConfig`` (the methods a task refuses, and why),
the CLI (``--task`` choices and help), ``xlt.runs.preflight`` (the reader of a user's file) and
``xlt.runs.recipe`` read the rows. A new data set is one module and one row (docs/new-dataset.md):
``register_task(TaskSpec(...))`` from user code, or one line in :data:`TASKS` here. Torch-free, so
``RunConfig`` checks a run against its task before anything loads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from xlt.data.examples import AnyTaskData, GenTaskData, QATaskData, TagTaskData, TaskData
from xlt.data.formats import user_file
from xlt.data.paths import resolve_data_dir
from xlt.data.sets import custom_mt, custom_ner, massive, nusax, nusax_mt, panx
from xlt.data.sets import question_answering as qa
from xlt.data.sets import uner, uner_json, wmt23, xnli
from xlt.errors import XltError
from xlt.languages import TASK_LANGUAGES

KINDS: dict[str, type] = {  # a row's kind -> the data its loader returns (xlt.kinds.registry runs each kind)
    "classification": TaskData,
    "generation": GenTaskData,
    "tagging": TagTaskData,
    "extractive-qa": QATaskData,
}


@dataclass(frozen=True)
class UserFiles:
    """What a task of the user's files reads from ``--train-file`` and ``--test-file``: ``format`` and ``columns``
    as the --train-file help line shows them, ``read`` how ``xlt train`` checks one file before anything loads."""

    format: str  # "CSV/JSONL" (by suffix) or "JSONL"
    columns: str
    read: Callable[[str | Path], Any]


@dataclass(frozen=True)
class Refusal:
    """Methods a task refuses: those for which ``applies(method)`` holds (an xlt.methods.table.Method, read by
    its properties only, so the data layer imports no method code), with the one-line reason
    (``{method}``, ``{task}`` and ``{classification}``, the classification tasks, filled in). ``lifted_by_mt``:
    the refusal does not hold when the run machine-translates the source text (``--source-from mt:MODEL``)."""

    applies: Callable[[Any], bool]
    reason: str
    lifted_by_mt: bool = False


# what a task's facts refuse, in the order RunConfig reports them
MIXES_CLASSIFIER_STATES = Refusal(lambda m: m.mixes,
                                  "x-mixup is for sentence classification tasks ({classification}), not {task!r}")
NEEDS_ENGLISH_SIDE = Refusal(lambda m: m.reads_source,
                             "method {method} needs the English version of each example, and task {task} is not "
                             "parallel; use zero-shot or lora")
# extractive QA without an English side: translate-test would need English answer spans, which MT does not carry;
# the methods that only read the English as input take the target question and paragraph machine-translated
TRANSLATES_NO_ANSWERS = Refusal(lambda m: m.translated_test, NEEDS_ENGLISH_SIDE.reason)
MT_GIVES_ENGLISH_SIDE = Refusal(lambda m: m.reads_source and not m.translated_test,
                                "method {method} needs the English version of each example, and task {task} is not "
                                "parallel; give it one with --source-from mt:MODEL (the question and paragraph "
                                "machine-translated into English), or use zero-shot or lora", lifted_by_mt=True)
FEEDS_MT_ENCODER = Refusal(lambda m: m.mt_encoder,
                           "flare-mt runs sentence classification tasks ({classification}), not {task}")
READS_OTHER_VERSION = Refusal(lambda m: m.reads_source or m.translated_train or m.mt_encoder,
                              "method {method} reads another version of the input, which for {task} is the same "
                              "sentence; use zero-shot, lora, align or lora+align")


@dataclass(frozen=True)
class TaskSpec:
    """One data set. ``load`` is ``load(data_dir, target_lang, source_lang)`` for a data set under the data
    directory, ``load(train_file, test_file, target_lang, source_lang)`` where ``user_files`` is set; it returns
    the data class of ``kind`` (:data:`KINDS`) with ``task`` = ``name``."""

    name: str
    load: Callable[..., AnyTaskData]
    kind: str  # a key of KINDS
    description: str  # one line: CLI help (xlt train --help) and docs
    languages: Mapping[str, str] | None = None  # canonical code -> its name in the files; None: any (user files)
    parallel: bool = True  # every example has an English version (what translate-test, input-fusion, FLARE read)
    translation: bool = False  # the input and its English version are the same sentence (nothing to fuse)
    user_files: UserFiles | None = None  # None: the data set is read from the data directory
    stage1_budget: tuple[int, float] | None = None  # stage 1's (epochs, learning rate); None: STAGE1_BUDGET
    written_off_encoders: bool = False  # decoders and mT5 write it as text (QA answers, custom-ner's JSON)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"TaskSpec {self.name!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    @property
    def refuses(self) -> tuple[Refusal, ...]:
        """The methods this task refuses, from its facts: x-mixup and flare-mt off sentence classification, the
        methods that read the English version where there is none (extractive QA: unless it is machine-translated),
        or where it is the same sentence."""
        sentences, qa = self.kind == "classification", self.kind == "extractive-qa"
        return tuple(r for r, applies in ((MIXES_CLASSIFIER_STATES, not sentences),
                                          (NEEDS_ENGLISH_SIDE, not self.parallel and not qa),
                                          (TRANSLATES_NO_ANSWERS, not self.parallel and qa),
                                          (MT_GIVES_ENGLISH_SIDE, not self.parallel and qa),
                                          (FEEDS_MT_ENCODER, not sentences),
                                          (READS_OTHER_VERSION, self.translation)) if applies)

    def refusal(self, method, translated_source: bool = False) -> str | None:
        """Why this task refuses ``method`` (an xlt.methods.table.Method), or None; ``translated_source``: the run
        reads a machine-translated source text, which lifts the refusals that say so."""
        for r in self.refuses:
            if r.applies(method) and not (translated_source and r.lifted_by_mt):
                return r.reason.format(method=method.name, task=self.name,
                                       classification=", ".join(sorted(classification_tasks())))
        return None

    def budget(self) -> tuple[int, float]:
        """Stage 1's (epochs, full fine-tuning learning rate) for this task."""
        return self.stage1_budget or STAGE1_BUDGET


# stage 1's (epochs, learning rate): the general default, and the tasks where it learns nothing. English NER on
# e5-small (EWT dev: 2,001 sentences, 4% of the tokens in entities) scored F1 0.0 at (4, 5e-5), 0.18 at (4, 2e-4)
# and 0.54 at (10, 2e-4) on the English PUD test (README); a user's NER file is taken to be as small. PAN-X's
# 20,000 English sentences take the general default (unmeasured). English MLQA (578 training questions) scored
# F1 0.23 at (4, 5e-5) and 0.52 at (10, 2e-4) on its 570 test questions (README); a user's QA file is taken to be
# as small. TyDiQA's English training file has 3,696 questions, 6 times MLQA's half: 3 epochs at the same rate
# give it twice the question-passes that lifted MLQA (not measured at full size; README).
STAGE1_BUDGET = (4, 5e-5)
SMALL_ENGLISH_SET = (10, 2e-4)
# stage 1 as LoRA (decoders, mT5) takes a LoRA learning rate whatever the task: Gemma 3 270M's LoRA stage 1 stayed
# near chance on NusaX at full fine-tuning's 5e-5 and learned English sentiment at 2e-4 (README)
STAGE1_LORA_LR = 2e-4

_CUSTOM = UserFiles("CSV/JSONL", ", ".join(user_file.COLUMNS), user_file.read_records)
_CUSTOM_QA = UserFiles("JSONL", "target_context, target_question, answers, source_*", qa.read_custom_qa)
# stage 1 trains and is tested on each line's source side, which xlt train therefore requires
_CUSTOM_NER = UserFiles("JSONL", "target_tokens, target_tags, source_tokens, source_tags",
                        partial(custom_ner.read_custom_ner, english=True))
_CUSTOM_MT = UserFiles("CSV/JSONL", ", ".join(custom_mt.COLUMNS), custom_mt.read_custom_mt)

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (
    TaskSpec("nusax", nusax.load, "classification", "NusaX-Senti sentiment, 12 Indonesian languages parallel by id",
             TASK_LANGUAGES["nusax"]),
    TaskSpec("xnli", xnli.load, "classification", "XNLI natural language inference, 15 languages parallel",
             TASK_LANGUAGES["xnli"]),
    TaskSpec("custom", user_file.load, "classification", "your parallel classification files", user_files=_CUSTOM),
    TaskSpec("massive", partial(massive.load, variant="slots"), "generation",
             "MASSIVE slot filling, written as text", TASK_LANGUAGES["massive"]),
    TaskSpec("massive-intent", partial(massive.load, variant="intent"), "generation",
             "MASSIVE intent detection, written as text", TASK_LANGUAGES["massive-intent"]),
    TaskSpec("panx", panx.load, "tagging", "PAN-X (WikiANN) named entities, each language its own text",
             TASK_LANGUAGES["panx"], parallel=False),
    TaskSpec("uner", uner.load, "tagging", "Universal NER on the parallel PUD treebanks", TASK_LANGUAGES["uner"],
             stage1_budget=SMALL_ENGLISH_SET),
    TaskSpec("uner-json", uner_json.load, "generation", "Universal NER's entities written as JSON",
             TASK_LANGUAGES["uner"]),
    TaskSpec("nusax-mt", nusax_mt.load, "generation", "NusaX machine translation between its 12 languages",
             TASK_LANGUAGES["nusax"], translation=True),
    TaskSpec("wmt23", wmt23.load, "generation", "WMT23 translation out of English, halves of its 7-way test set",
             TASK_LANGUAGES["wmt23"], translation=True),
    TaskSpec("mlqa", qa.load_mlqa, "extractive-qa", "MLQA extractive question answering, parallel by id",
             TASK_LANGUAGES["mlqa"], stage1_budget=SMALL_ENGLISH_SET, written_off_encoders=True),
    TaskSpec("tydiqa", qa.load_tydiqa, "extractive-qa", "TyDiQA-GoldP extractive QA, each language its own text",
             TASK_LANGUAGES["tydiqa"], parallel=False, stage1_budget=(3, 2e-4), written_off_encoders=True),
    TaskSpec("custom-qa", qa.load_custom_qa, "extractive-qa", "your extractive QA files", user_files=_CUSTOM_QA,
             stage1_budget=SMALL_ENGLISH_SET, written_off_encoders=True),
    TaskSpec("custom-ner", custom_ner.load, "tagging", "your named-entity files (JSON entities off encoders)",
             user_files=_CUSTOM_NER, stage1_budget=SMALL_ENGLISH_SET, written_off_encoders=True),
    # custom-mt's other direction, stage 1's, even reads the gold answer (xlt.data.sets.custom_mt)
    TaskSpec("custom-mt", custom_mt.load, "generation", "your sentence pairs, translated source into target",
             user_files=_CUSTOM_MT, translation=True),
)}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a data set to the table from user code (docs/new-dataset.md): ``xlt train --task NAME`` and
    ``RunConfig`` accept it from then on, in this process."""
    if spec.name in TASKS:
        raise XltError(f"task {spec.name!r} is already in the task table")
    TASKS[spec.name] = spec
    return spec


def get_task(task: str) -> TaskSpec:
    """The row of ``task`` (any case, surrounding spaces ignored)."""
    spec = TASKS.get(str(task).strip().lower())
    if spec is None:
        raise XltError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    return spec


def user_file_tasks() -> tuple[str, ...]:
    """The tasks that read --train-file and --test-file."""
    return tuple(name for name, spec in TASKS.items() if spec.user_files)


def classification_tasks() -> tuple[str, ...]:
    """The tasks with one label per text (what x-mixup and flare-mt run)."""
    return tuple(name for name, spec in TASKS.items() if spec.kind == "classification")


def default_stage1_lr(task: str, stage1_method: str) -> float:
    """Stage 1's default learning rate for ``task`` trained by ``stage1_method`` ("full" or "lora"); its
    epochs depend on the task alone, which ``RunConfig`` fills in."""
    return STAGE1_LORA_LR if stage1_method == "lora" else get_task(task).budget()[1]


def _no_files(task: str, train_file, test_file) -> None:
    if train_file is not None or test_file is not None:
        raise XltError(f"--train-file/--test-file apply only to tasks {', '.join(user_file_tasks())}, not {task}")


def load_task(
    task: str,
    target_lang: str,
    source_lang: str = "en",
    data_dir: str | Path | None = None,
    train_file: str | Path | None = None,
    test_file: str | Path | None = None,
) -> AnyTaskData:
    """Load ``task`` for ``target_lang``, each example paired with its ``source_lang`` version: the data class
    of the row's kind (:data:`KINDS`), from the user's files or from the data directory."""
    spec = get_task(task)
    if spec.user_files:
        data = spec.load(train_file, test_file, target_lang, source_lang)
    else:
        _no_files(spec.name, train_file, test_file)
        data = spec.load(resolve_data_dir(data_dir), target_lang, source_lang)
    if not isinstance(data, KINDS[spec.kind]):  # a row whose loader disagrees with it: a bug, not bad input
        raise TypeError(f"task {spec.name}'s loader returned {type(data).__name__}, not the "
                        f"{KINDS[spec.kind].__name__} of kind {spec.kind}")
    return data
