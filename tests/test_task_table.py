"""The task table (xlt.data.registry.TASKS): every row is what the CLI, loading, RunConfig and stage 1 read."""

import csv
import json

import pytest

from xlt.cli.main import build_parser
from xlt.config import RunConfig
from xlt.data.examples import GenTaskData, QATaskData, TagTaskData, TaskData
from xlt.data.registry import (KINDS, STAGE1_BUDGET, STAGE1_LORA_LR, TASKS, TaskSpec, default_stage1_lr, get_task,
                               load_task, register_task)
from xlt.errors import XltError
from xlt.methods.table import METHODS

# one small case per data set read from the data directory ($XLT_DATA_DIR): its target language
BUILT_IN = {"nusax": "jv", "xnli": "sw", "massive": "jv", "massive-intent": "jv", "panx": "de", "uner": "de",
            "uner-json": "de", "nusax-mt": "ace", "wmt23": "uk", "mlqa": "de", "tydiqa": "sw"}


def _write_csv(path, rows):
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _user_file(tmp_path, task):
    """One tiny file of the user's for ``task`` (read as both the train and the test file)."""
    if task == "custom":
        return _write_csv(tmp_path / "f.csv", [{"source_text": "good", "target_text": "gut", "label": "pos"},
                                               {"source_text": "bad", "target_text": "schlecht", "label": "neg"}])
    if task == "custom-mt":
        return _write_csv(tmp_path / "f.csv", [{"source_text": "good morning", "target_text": "guten Morgen"}])
    if task == "custom-qa":
        return _write_jsonl(tmp_path / "f.jsonl", [{
            "target_context": "Paris ist die Hauptstadt.", "target_question": "Was ist die Hauptstadt?",
            "answers": [{"text": "Paris", "answer_start": 0}], "source_context": "The capital is Paris.",
            "source_question": "What is the capital?", "source_answers": ["Paris"]}])
    if task == "custom-ner":
        return _write_jsonl(tmp_path / "f.jsonl", [{
            "target_tokens": ["Anna", "wohnt", "in", "Berlin"], "target_tags": ["B-PER", "O", "O", "B-LOC"],
            "source_tokens": ["Anna", "lives", "in", "Berlin"], "source_tags": ["B-PER", "O", "O", "B-LOC"]}])
    raise AssertionError(f"no tiny file for task {task}: add one here")


def test_every_row_has_a_tiny_case_here():
    user_files = {name for name, spec in TASKS.items() if spec.user_files}
    assert set(BUILT_IN) | user_files == set(TASKS) and not set(BUILT_IN) & user_files


@pytest.mark.parametrize("name", list(TASKS))
def test_the_row_is_a_task_choice_and_loads_data_of_its_kind(name, tmp_path):
    spec = TASKS[name]
    train = {a.dest: a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions}
    assert name in train["task"].choices
    assert get_task(name) is spec and get_task(f" {name.upper()} ") is spec
    if spec.user_files:
        path = _user_file(tmp_path, name)
        spec.user_files.read(path)  # what xlt train's preflight reads, before any model loads
        data = load_task(name, "de", "en", train_file=path, test_file=path)
        with pytest.raises(XltError, match="--train-file/--test-file apply only to tasks .*, not nusax"):
            load_task("nusax", "jv", train_file=path)
    else:
        assert spec.languages and BUILT_IN[name] in spec.languages and "en" in spec.languages
        data = load_task(name, BUILT_IN[name])
    assert type(data) is KINDS[spec.kind] and data.task == name
    assert len(data.train) >= 1 and len(data.test) >= 1


def test_kinds_name_the_four_data_classes():
    assert KINDS == {"classification": TaskData, "generation": GenTaskData, "tagging": TagTaskData,
                     "extractive-qa": QATaskData}
    assert {spec.kind for spec in TASKS.values()} == set(KINDS)


def _config(name, method, **extra):
    settings = {"task": name, "method": method, "target_lang": BUILT_IN.get(name, "de"), **extra}
    if method == "translate-train":
        settings["translator"] = "lexicon"
    if method == "flare-mt":
        settings["mt_model"] = "some/mt-model"
    return RunConfig(**settings)


@pytest.mark.parametrize("name", list(TASKS))
def test_the_row_refuses_its_methods_with_its_reason_and_takes_the_others(name):
    spec = TASKS[name]
    refused = set()
    for method in METHODS.values():
        reason = spec.refusal(method)
        if reason is None:
            _config(name, method.name)
            continue
        refused.add(method.name)
        with pytest.raises(XltError) as err:
            _config(name, method.name)
        assert str(err.value) == reason and len(reason.splitlines()) == 1
    expected = set()  # the rows' facts, method by method
    if spec.kind != "classification":
        expected |= {"x-mixup", "flare-mt"}
    if not spec.parallel:
        expected |= {"translate-test", "input-fusion", "flare", "x-mixup"}
    if spec.translation:
        expected |= {"translate-test", "input-fusion", "flare", "x-mixup", "flare-mt", "translate-train"}
    assert refused == expected


def test_a_machine_translated_source_lifts_only_the_refusals_of_qa_sets_without_an_english_side():
    lifted = {(name, m) for name, spec in TASKS.items() for m, method in METHODS.items()
              if spec.refusal(method) and not spec.refusal(method, translated_source=True)}
    assert lifted == {("tydiqa", "flare"), ("tydiqa", "input-fusion")}  # translate-test needs English answer spans


def test_the_reasons_read_as_before():
    assert TASKS["panx"].refusal(METHODS["flare"]) == ("method flare needs the English version of each example, and "
                                                       "task panx is not parallel; use zero-shot or lora")
    assert TASKS["mlqa"].refusal(METHODS["x-mixup"]) == ("x-mixup is for sentence classification tasks (custom, "
                                                         "nusax, xnli), not 'mlqa'")
    assert TASKS["panx"].refusal(METHODS["x-mixup"]).startswith("x-mixup is for sentence classification")
    assert TASKS["wmt23"].refusal(METHODS["flare-mt"]) == ("flare-mt runs sentence classification tasks (custom, "
                                                           "nusax, xnli), not wmt23")
    assert TASKS["custom-mt"].refusal(METHODS["translate-train"]) == (
        "method translate-train reads another version of the input, which for custom-mt is the same sentence; use "
        "zero-shot, lora, align or lora+align")


@pytest.mark.parametrize("name", list(TASKS))
def test_the_stage1_budget_is_runconfigs_default(name):
    epochs, lr = TASKS[name].stage1_budget or STAGE1_BUDGET
    assert RunConfig(task=name, target_lang=BUILT_IN.get(name, "de")).stage1_epochs == epochs
    assert default_stage1_lr(name, "full") == lr and default_stage1_lr(name, "lora") == STAGE1_LORA_LR


def test_written_off_encoders_are_qa_and_custom_ner():
    assert {n for n, s in TASKS.items() if s.written_off_encoders} == {"mlqa", "tydiqa", "custom-qa", "custom-ner"}


def test_an_unknown_task_or_kind_and_a_second_row_of_one_name_are_refused():
    with pytest.raises(XltError, match="^unknown task 'sst2'; known tasks: nusax, xnli, custom, massive"):
        get_task("sst2")
    with pytest.raises(XltError, match="^task 'nusax' is already in the task table$"):
        register_task(TaskSpec("nusax", lambda *args: None, "classification", "again"))
    with pytest.raises(ValueError, match="kind must be one of classification, generation, tagging, extractive-qa"):
        TaskSpec("toy", lambda *args: None, "regression", "a number per text")


def test_the_help_lists_each_task_with_its_description(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    out = capsys.readouterr().out
    for name, spec in TASKS.items():
        assert any(line.split() == [name, *spec.description.split()] for line in out.splitlines()), name
    flat = " ".join(out.split())
    assert ("task custom: training CSV/JSONL (source_text, target_text, label); custom-qa: JSONL (target_context, "
            "target_question, answers, source_*); custom-ner: JSONL (target_tokens, target_tags, source_tokens, "
            "source_tags); custom-mt: CSV/JSONL (source_text, target_text)") in flat
