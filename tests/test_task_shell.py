"""An exported run's task_shell.json: what prediction reads of a task's data (class, labels, languages, segments,
prompt template and metric), written as JSON and rebuilt as the same data object with every split empty."""

import dataclasses
import json

import pytest

from xlt.config import RunConfig
from xlt.data.examples import GenTaskData, QATaskData, TagTaskData, TaskData
from xlt.data.prompts import Template
from xlt.data.qa_generation import as_generation as qa_as_generation
from xlt.data.registry import load_task
from xlt.data.sets.uner_json import as_generation as json_entities
from xlt.errors import XltError
from xlt.runs.recipe import Run
from xlt.runs.task_shell import data_shell, from_shell, read_shell, segments_of, shell_of, write_shell


def _rowless(data):
    """``data`` as its shell rebuilds it: every split empty, no English splits."""
    extra = {"english": None} if hasattr(data, "english") else {}
    return dataclasses.replace(data, train=[], valid=[], test=[], **extra)


def _round_trip(data, tmp_path):
    write_shell(tmp_path, shell_of(data))
    return from_shell(read_shell(tmp_path))


@pytest.mark.parametrize("task, lang, cls, segments", [("nusax", "jv", TaskData, 1), ("xnli", "de", TaskData, 2),
                                                       ("uner", "de", TagTaskData, None),
                                                       ("mlqa", "de", QATaskData, None),
                                                       ("massive", "jv", GenTaskData, None)])
def test_every_kind_round_trips_through_its_shell(task, lang, cls, segments, data_dir, tmp_path):
    data = load_task(task, lang, data_dir=data_dir)
    rebuilt = _round_trip(data, tmp_path)
    assert type(rebuilt) is cls and rebuilt == _rowless(data)
    assert (rebuilt.train, rebuilt.valid, rebuilt.test) == ([], [], [])
    assert segments_of(data) == segments and shell_of(data).get("segments") == segments


def test_generation_made_from_qa_and_tagging_sets_keeps_its_template(data_dir, tmp_path):
    """QA as answer generation names the template ``qa``; custom-ner's JSON entities carry a Template built for
    their entity types, which the shell writes out in full."""
    qa = qa_as_generation(load_task("mlqa", "de", data_dir=data_dir))
    assert _round_trip(qa, tmp_path) == _rowless(qa) and shell_of(qa)["template"] == "qa"
    tags = load_task("uner", "de", data_dir=data_dir)
    own = json_entities(dataclasses.replace(tags, labels=("O", "B-PER", "I-PER"), english=None), "custom-ner")
    assert isinstance(own.template, Template)
    rebuilt = _round_trip(own, tmp_path)
    assert rebuilt == _rowless(own) and rebuilt.template == own.template and "type PER " in rebuilt.template.text


def test_data_shell_reads_the_runs_data_as_stage_2_does(data_dir):
    cfg = RunConfig.from_dict({"task": "nusax", "target_lang": "jv", "method": "lora", "data_dir": str(data_dir)})
    assert data_shell(Run(cfg)) == {"class": "TaskData", "task": "nusax", "source_lang": "en", "target_lang": "jv",
                                    "labels": ["negative", "neutral", "positive"], "segments": 1}


def test_a_run_without_a_shell_has_none_and_a_broken_shell_is_one_line(tmp_path):
    assert read_shell(tmp_path) is None
    with pytest.raises(XltError, match=r"^task_shell.json: unknown data class 'Rows'$"):
        from_shell({"class": "Rows"})
    with pytest.raises(XltError, match=r"^task_shell.json lacks 'labels' for a TagTaskData$"):
        from_shell({"class": "TagTaskData", "task": "uner", "source_lang": "en", "target_lang": "de"})
    (tmp_path / "task_shell.json").write_text(json.dumps(["TaskData"]))
    with pytest.raises(XltError, match=r"task_shell.json does not hold a JSON object$"):
        read_shell(tmp_path)
