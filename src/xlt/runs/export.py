"""``xlt export``: a finished run as one self-contained folder that travels (and, optionally, a Hub repository).

The folder is a run directory like any other (config.yaml, metrics.json, predictions.jsonl, adapter/, the
marker) plus ``stage1/``, its own copy of the English model with the tokenizer, and the adapter's model card
as ``README.md``. metrics.json names the English model relatively (``stage1_dir: stage1``), and the adapter
names it as ``../stage1`` (PEFT's ``base_model_name_or_path``, xlt_adapter.json's ``base_model``), so a copy of
the folder anywhere evaluates (``xlt evaluate --run-dir``) without the machine's cache. A stage-1
classifier of an older xlt (backbone folder + head files) is written in the current layout, which stock
``AutoModelForSequenceClassification`` loads after ``import xlt``. The folder is built in a temp sibling and
swapped in whole; an existing one is replaced only with ``overwrite`` (and only an xlt folder). The folder also
holds ``task_shell.json`` (xlt.runs.task_shell): what prediction reads of the task's data, read here, so that
``xlt predict`` on the copy needs neither the data set nor the user's train/test files (``xlt evaluate`` still
reads the test set).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from xlt.config import RunConfig
from xlt.errors import XltError
from xlt.io import building_dir, failed_writes_named, write_json
from xlt.methods.table import get_method
from xlt.runs.task_shell import data_shell, read_shell, write_shell
from xlt.models.cache import COMPLETE_MARKER
from xlt.models.loading import check_model_folder, read_json_object
from xlt.run_dir import (ADAPTER, CARD, CONFIG, MARKER, METRICS, PREDICTIONS, RUN_ENTRIES, STAGE1, STAGE1_INFO,
                         TASK_SHELL, check_replaceable, missing_files, output_lock, set_base_model, stage1_dir_of,
                         stage1_key, write_marker)

EXPORT_ENTRIES = (*RUN_ENTRIES, STAGE1, CARD, TASK_SHELL)  # what an exported folder holds (check_replaceable)
COPIED = (CONFIG, PREDICTIONS, MARKER)  # run files copied as they are (metrics.json is rewritten)


def check_export(run_dir: str | Path, output_dir: str | Path, overwrite: bool = False) -> Path:
    """Before anything is copied: a finished run whose English model exists, and an output folder that is
    neither inside the run nor around it and may be replaced. Returns the English model's folder."""
    run_dir, out = Path(run_dir), Path(output_dir)
    if not (run_dir / CONFIG).is_file():
        raise XltError(f"{run_dir} is not a finished run: {CONFIG} is missing")
    cfg = RunConfig.from_yaml(run_dir / CONFIG)
    missing = missing_files(run_dir, get_method(cfg.method).trains)
    if missing:
        raise XltError(f"{run_dir} is not a finished run: {missing[0]} is missing")
    stage1 = stage1_dir_of(run_dir, read_json_object(run_dir / METRICS))
    if stage1 is None:
        raise XltError(f"{run_dir / METRICS} names no stage1_dir (the run's English model)")
    if not (stage1 / STAGE1_INFO).is_file():
        raise XltError(f"the run's English model {stage1} is missing")
    check_model_folder(stage1)
    resolved, source = out.resolve(), run_dir.resolve()
    if resolved == source or resolved.is_relative_to(source) or source.is_relative_to(resolved):
        raise XltError(f"--output-dir {out} overlaps the run {run_dir}; export to another folder")
    check_replaceable(out, EXPORT_ENTRIES, overwrite)
    return stage1


def export_run(run_dir: str | Path, output_dir: str | Path, overwrite: bool = False) -> Path:
    """Write the run at ``run_dir`` as one self-contained folder ``output_dir`` (see the module); returns it."""
    run_dir, out = Path(run_dir), Path(output_dir)
    stage1 = check_export(run_dir, out, overwrite)
    metrics = read_json_object(run_dir / METRICS)
    shell = task_shell_of(run_dir, stage1)
    with output_lock(out), failed_writes_named(out):
        check_replaceable(out, EXPORT_ENTRIES, overwrite)  # again, now that the folder is held
        with building_dir(out, keep_mode=True) as tmp:
            for name in COPIED:
                if (run_dir / name).is_file():
                    shutil.copyfile(run_dir / name, tmp / name)
            if not (tmp / MARKER).is_file():
                write_marker(tmp)
            write_shell(tmp, shell)
            copy_stage1(stage1, tmp / STAGE1)
            if (run_dir / ADAPTER).is_dir():
                shutil.copytree(run_dir / ADAPTER, tmp / ADAPTER)
                set_base_model(tmp / ADAPTER, f"../{STAGE1}")
                if (tmp / ADAPTER / CARD).is_file():
                    shutil.copyfile(tmp / ADAPTER / CARD, tmp / CARD)
            # the English model by name where it came from (no path of this machine), and by path here
            write_json(tmp / METRICS, {**metrics, "stage1_dir": STAGE1,
                                       "stage1_key": metrics.get("stage1_key") or stage1_key(stage1.resolve())})
    return out


def task_shell_of(run_dir: Path, stage1: Path) -> dict:
    """What prediction reads of the run's task: an exported run's own shell, else read from the task's data
    (its data set, or the user's files) as stage 2 read it."""
    from xlt.runs.recipe import Run

    shell = read_shell(run_dir)
    if shell is not None:
        return shell
    return data_shell(Run(RunConfig.from_yaml(run_dir / CONFIG), architecture_from=str(stage1)))


def copy_stage1(stage1: Path, target: Path) -> None:
    """The English model's folder without the cache's build marker; an older xlt's pooled classifier (backbone
    folder + head files) rewritten in the current layout, which stock transformers loads."""
    from xlt.models.classifier import saved_layout

    if saved_layout(stage1) == "head-files":
        from xlt.models.classifier import convert_head_files

        convert_head_files(stage1, target, skip=(COMPLETE_MARKER,))
        return
    shutil.copytree(stage1, target, ignore=shutil.ignore_patterns(COMPLETE_MARKER))


def push_to_hub(folder: str | Path, repo: str, private: bool | None = None, token: str | None = None) -> str:
    """Upload an exported folder to the Hub model repository ``repo`` (created if missing; ``private`` as
    given; ``token``: else huggingface_hub's own, e.g. ``HF_TOKEN``); returns the commit's URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    try:
        api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(repo_id=repo, folder_path=str(folder), repo_type="model",
                                   commit_message=f"xlt export of {Path(folder).name}", ignore_patterns=[MARKER])
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise XltError(f"--push-to-hub {repo}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") \
            from None
    return str(getattr(commit, "commit_url", commit))
