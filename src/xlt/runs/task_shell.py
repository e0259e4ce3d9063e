"""What prediction reads of a task's data, without a single row: an exported run's ``task_shell.json``.

``xlt predict`` reads the task's data only for its class (the kind), the label set, the languages, the number of
text segments of a classification example (one text or a sentence pair) and a generation task's prompt template
and metric. ``xlt export`` writes these (:func:`data_shell`) into the folder, so that a copy predicts on a machine
without the data set or the user's train/test files: :func:`from_shell` rebuilds the data object of the right
class with every split empty, which the kinds' ``load_model`` and ``predict`` read as they read the full one.
"""

from __future__ import annotations

import json
from pathlib import Path

from xlt.data.examples import AnyTaskData, GenTaskData, QATaskData, TagTaskData, TaskData
from xlt.data.prompts import Template
from xlt.errors import XltError
from xlt.io import write_json
from xlt.run_dir import TASK_SHELL

SHELL_CLASSES = {cls.__name__: cls for cls in (TaskData, TagTaskData, QATaskData, GenTaskData)}


def data_shell(run) -> dict:
    """The shell of the run's data as stage 2 read it (``run``: a :class:`xlt.runs.recipe.Run`; the data is read
    here, on the machine that exports)."""
    return shell_of(run.data)


def shell_of(data: AnyTaskData) -> dict:
    """What prediction reads of ``data``, as a JSON-ready dict."""
    shell = {"class": type(data).__name__, "task": data.task, "source_lang": data.source_lang,
             "target_lang": data.target_lang}
    if isinstance(data, (TaskData, TagTaskData)):
        shell["labels"] = list(data.labels)
    if isinstance(data, TaskData):
        shell["segments"] = segments_of(data)
    if isinstance(data, GenTaskData):
        template = data.template  # a registered name, or one built for this set (custom-ner's entity types)
        shell["template"] = template if isinstance(template, str) else {"name": template.name, "text": template.text}
        shell["metric"] = data.metric
    return shell


def segments_of(data: AnyTaskData) -> int | None:
    """How many texts a classification example holds (2: a sentence pair); None for other kinds or no rows."""
    if not isinstance(data, TaskData):
        return None
    first = next(iter(data.test or data.train or data.valid), None)
    return len(first.target) if first is not None else None


def from_shell(shell: dict) -> AnyTaskData:
    """The data object ``shell`` describes, every split empty (and no English splits: prediction reads none)."""
    cls = SHELL_CLASSES.get(shell.get("class"))
    if cls is None:
        raise XltError(f"{TASK_SHELL}: unknown data class {shell.get('class')!r}")
    try:
        common = {"task": shell["task"], "source_lang": shell["source_lang"], "target_lang": shell["target_lang"],
                  "train": [], "valid": [], "test": []}
        if cls in (TaskData, TagTaskData):
            return cls(labels=tuple(shell["labels"]), **common)
        if cls is GenTaskData:
            template = shell["template"]
            if isinstance(template, dict):
                template = Template(template["name"], template["text"])
            return GenTaskData(template=template, metric=shell["metric"], **common)
        return QATaskData(**common)
    except (KeyError, TypeError) as err:
        raise XltError(f"{TASK_SHELL} lacks {err} for a {cls.__name__}") from None


def read_shell(run_dir: str | Path) -> dict | None:
    """The shell an exported run holds, None for a run that has none (a trained run reads its data)."""
    path = Path(run_dir) / TASK_SHELL
    if not path.is_file():
        return None
    try:
        shell = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise XltError(f"{path} is not valid JSON") from None
    if not isinstance(shell, dict):
        raise XltError(f"{path} does not hold a JSON object")
    return shell


def write_shell(folder: str | Path, shell: dict) -> None:
    write_json(Path(folder) / TASK_SHELL, shell)
