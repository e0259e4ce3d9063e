"""Task registry: ``load_task`` turns a task name and languages into a :class:`TaskData`
(classification), :class:`GenTaskData` (generation) or :class:`TagTaskData` (tagging).

Tasks: ``nusax`` (sentiment, xlt.data.sets.nusax), ``xnli`` (NLI, xlt.data.sets.xnli), ``custom`` (the
user's CSV/JSONL files, xlt.data.formats.user_file), ``massive`` and ``massive-intent`` (slot filling and
intent as generation, xlt.data.sets.massive), ``panx`` and ``uner`` (named entities as tagging,
xlt.data.sets.panx, xlt.data.sets.uner), ``uner-json`` (the same entities written as JSON by a generating
model, xlt.data.sets.uner_json), ``nusax-mt`` and ``wmt23`` (translation, xlt.data.sets.nusax_mt, xlt.data.sets.wmt23), ``mlqa``, ``tydiqa`` and
``custom-qa`` (extractive question answering, xlt.data.sets.question_answering: span heads on encoders; decoders and mT5 read it
as answer generation, xlt.data.qa_generation, converted in xlt.runs.recipe.load_data), ``custom-ner`` (the user's
entities: tagging on encoders, JSON like uner-json on the others, xlt.data.sets.custom_ner) and ``custom-mt`` (the
user's sentence pairs, translated like nusax-mt, xlt.data.sets.custom_mt). Data sets are read from the data
directory found by :func:`resolve_data_dir`. :data:`NOT_PARALLEL` names the tasks whose examples have no English
version, which :func:`check_parallel` refuses to methods that read one (torch-free, so ``RunConfig``
checks it before anything loads).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from xlt.data.paths import ENV_VAR, resolve_data_dir
from xlt.data.sets import (custom_mt, custom_ner, massive, nusax, nusax_mt, panx, question_answering as qa, uner,
                           uner_json as json_ner, wmt23, xnli)
from xlt.data.formats import user_file
from xlt.data.examples import AnyTaskData, GenTaskData, QATaskData, TagTaskData, TaskData
from xlt.errors import XltError

def _no_files(task: str, train_file, test_file) -> None:
    if train_file is not None or test_file is not None:
        raise XltError(f"--train-file/--test-file apply only to tasks {', '.join(USER_FILE_TASKS)}, not {task}")


def _load_nusax(target_lang, source_lang, data_dir, train_file, test_file) -> TaskData:
    _no_files("nusax", train_file, test_file)
    try:
        root = resolve_data_dir(data_dir)
    except XltError:
        if data_dir is not None or os.environ.get(ENV_VAR) or not nusax.hub_available():
            raise
        root = None  # UNTESTED: Hub fallback
    return nusax.load(root, target_lang, source_lang)


def _load_xnli(target_lang, source_lang, data_dir, train_file, test_file) -> TaskData:
    _no_files("xnli", train_file, test_file)
    return xnli.load(resolve_data_dir(data_dir), target_lang, source_lang)


def _load_custom(target_lang, source_lang, data_dir, train_file, test_file) -> TaskData:
    return user_file.load(train_file, test_file, target_lang, source_lang)


def _load_massive(target_lang, source_lang, data_dir, train_file, test_file) -> GenTaskData:
    _no_files("massive", train_file, test_file)
    return massive.load(resolve_data_dir(data_dir), target_lang, source_lang, "slots")


def _load_massive_intent(target_lang, source_lang, data_dir, train_file, test_file) -> GenTaskData:
    _no_files("massive-intent", train_file, test_file)
    return massive.load(resolve_data_dir(data_dir), target_lang, source_lang, "intent")


def _load_panx(target_lang, source_lang, data_dir, train_file, test_file) -> TagTaskData:
    _no_files("panx", train_file, test_file)
    return panx.load(resolve_data_dir(data_dir), target_lang, source_lang)


def _load_uner(target_lang, source_lang, data_dir, train_file, test_file) -> TagTaskData:
    _no_files("uner", train_file, test_file)
    return uner.load(resolve_data_dir(data_dir), target_lang, source_lang)


def _load_uner_json(target_lang, source_lang, data_dir, train_file, test_file) -> GenTaskData:
    _no_files("uner-json", train_file, test_file)
    return json_ner.load(resolve_data_dir(data_dir), target_lang, source_lang)


def _load_nusax_mt(target_lang, source_lang, data_dir, train_file, test_file) -> GenTaskData:
    _no_files("nusax-mt", train_file, test_file)
    return nusax_mt.load(resolve_data_dir(data_dir), target_lang, source_lang)


def _load_wmt23(target_lang, source_lang, data_dir, train_file, test_file) -> GenTaskData:
    _no_files("wmt23", train_file, test_file)
    return wmt23.load(resolve_data_dir(data_dir), target_lang, source_lang)


def _load_mlqa(target_lang, source_lang, data_dir, train_file, test_file) -> QATaskData:
    _no_files("mlqa", train_file, test_file)
    return qa.load_mlqa(resolve_data_dir(data_dir), target_lang, source_lang)


def _load_tydiqa(target_lang, source_lang, data_dir, train_file, test_file) -> QATaskData:
    _no_files("tydiqa", train_file, test_file)
    return qa.load_tydiqa(resolve_data_dir(data_dir), target_lang, source_lang)


def _load_custom_qa(target_lang, source_lang, data_dir, train_file, test_file) -> QATaskData:
    return qa.load_custom_qa(train_file, test_file, target_lang, source_lang)


def _load_custom_ner(target_lang, source_lang, data_dir, train_file, test_file) -> TagTaskData:
    return custom_ner.load(train_file, test_file, target_lang, source_lang)


def _load_custom_mt(target_lang, source_lang, data_dir, train_file, test_file) -> GenTaskData:
    return custom_mt.load(train_file, test_file, target_lang, source_lang)


TASKS: dict[str, Callable[..., AnyTaskData]] = {
    "nusax": _load_nusax,
    "xnli": _load_xnli,
    "custom": _load_custom,
    "massive": _load_massive,
    "massive-intent": _load_massive_intent,
    "panx": _load_panx,
    "uner": _load_uner,
    "uner-json": _load_uner_json,
    "nusax-mt": _load_nusax_mt,
    "wmt23": _load_wmt23,
    "mlqa": _load_mlqa,
    "tydiqa": _load_tydiqa,
    "custom-qa": _load_custom_qa,
    "custom-ner": _load_custom_ner,
    "custom-mt": _load_custom_mt,
}

SENTENCE_TASKS = frozenset({"nusax", "xnli", "custom"})  # one label per text (classification kind)
TRANSLATION_TASKS = frozenset({"nusax-mt", "wmt23", "custom-mt"})  # the input is one sentence in both directions: nothing
# to fuse (custom-mt's other direction even reads the gold answer)
NOT_PARALLEL = frozenset({"panx", "tydiqa"})  # no example has an English version (each language its own text)
QA_TASKS = frozenset({"mlqa", "tydiqa", "custom-qa"})  # extractive QA (xlt.kinds.extractive_qa; xlt.data.qa_generation)
USER_FILE_TASKS = ("custom", "custom-qa", "custom-ner", "custom-mt")  # tasks that read --train-file and --test-file
# stage 1's (epochs, learning rate): the general default, and the tasks where it learns nothing. English NER on
# e5-small (EWT dev: 2,001 sentences, 4% of the tokens in entities) scored F1 0.0 at (4, 5e-5), 0.18 at (4, 2e-4)
# and 0.54 at (10, 2e-4) on the English PUD test (README); a user's NER file is taken to be as small. PAN-X's
# 20,000 English sentences take the general default (unmeasured). English MLQA (578 training questions) scored
# F1 0.23 at (4, 5e-5) and 0.52 at (10, 2e-4) on its 570 test questions (README); a user's QA file is taken to be
# as small. TyDiQA's English training file has 3,696 questions, 6 times MLQA's half: 3 epochs at the same rate
# give it twice the question-passes that lifted MLQA (not measured at full size; README).
STAGE1_BUDGET = (4, 5e-5)
SMALL_ENGLISH_SET = (10, 2e-4)
STAGE1_BUDGETS = {**{task: SMALL_ENGLISH_SET for task in ("uner", "custom-ner", "mlqa", "custom-qa")},
                  "tydiqa": (3, 2e-4)}
# stage 1 as LoRA (decoders, mT5) takes a LoRA learning rate whatever the task: Gemma 3 270M's LoRA stage 1 stayed
# near chance on NusaX at full fine-tuning's 5e-5 and learned English sentiment at 2e-4 (README)
STAGE1_LORA_LR = 2e-4


def default_stage1_lr(task: str, stage1_method: str) -> float:
    """Stage 1's default learning rate for ``task`` trained by ``stage1_method`` ("full" or "lora"); its
    epochs depend on the task alone, which ``RunConfig`` fills in."""
    return STAGE1_LORA_LR if stage1_method == "lora" else STAGE1_BUDGETS.get(task, STAGE1_BUDGET)[1]


def check_parallel(task: str, method: str, view: str, fuses_source: bool) -> None:
    """Refuse a method that reads (translate-test, input-fusion) or fuses (flare) the English version of
    each example on a task that has none."""
    if task in NOT_PARALLEL and (view != "target" or fuses_source):
        raise XltError(f"method {method} needs the English version of each example, and task {task} is not "
                       "parallel; use zero-shot or lora")


def load_task(
    task: str,
    target_lang: str,
    source_lang: str = "en",
    data_dir: str | Path | None = None,
    train_file: str | Path | None = None,
    test_file: str | Path | None = None,
) -> AnyTaskData:
    """Load ``task`` for ``target_lang``, each example paired with its ``source_lang`` version;
    generation tasks (``massive*``, ``uner-json``, ``nusax-mt``, ``wmt23``, ``custom-mt``) give :class:`GenTaskData`,
    tagging tasks (``panx``, ``uner``, ``custom-ner``) :class:`TagTaskData`, QA tasks (``mlqa``, ``tydiqa``,
    ``custom-qa``) :class:`QATaskData`, the others :class:`TaskData`."""
    loader = TASKS.get(task.strip().lower())
    if loader is None:
        raise XltError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    return loader(target_lang, source_lang, data_dir, train_file, test_file)
