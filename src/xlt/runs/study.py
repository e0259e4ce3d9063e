"""``xlt study``: a whole comparison from one YAML file. The file has ``RunConfig``'s keys; a key whose value is
a list is an axis (``method: [zero-shot, lora, flare]``, ``seed: [0, 1, 2]``), and the study is the product of
its axes, shared settings once. Every run is checked before the first one trains, finished runs are skipped (so
a killed study resumes where it stopped), runs that need the same English model share it (the stage-1 build
lock), and the study ends with :mod:`xlt.runs.report`'s table.

``workers`` > 1 runs that many at once on this machine in a process pool, each with its share of the cores
(torch threads = cores / workers: two runs that each spin two threads on two cores ran 9.6 times slower than one).
"""

from __future__ import annotations

import itertools
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from xlt.config import RunConfig
from xlt.data.registry import get_task
from xlt.errors import XltError, echo
from xlt.languages import dataset_name
from xlt.methods.table import METHODS, get_method


@dataclass(frozen=True)
class StudyRun:
    """One cell of the study: the values of its axes and the run's config (its output folder inside the study's)."""

    axes: dict
    cfg: RunConfig


def read_study(path: str | Path) -> tuple[dict, dict]:
    """The study file's shared settings and its axes (each a non-empty list of values), in the file's order."""
    path = Path(path)
    if not path.is_file():
        raise XltError(f"study file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise XltError(f"study file {path} is not valid UTF-8 YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise XltError(f"study file {path} must hold a mapping of settings to values or lists of values")
    axes = {key: value for key, value in values.items() if isinstance(value, list)}
    empty = [key for key, value in axes.items() if not value]
    if empty:
        raise XltError(f"study file {path}: axis {echo(empty[0])} has no values")
    return {key: value for key, value in values.items() if key not in axes}, axes


def expand(shared: dict, axes: dict, output_dir: str | Path) -> list[StudyRun]:
    """The product of the axes, each cell a checked RunConfig whose output folder is named for its axis values."""
    runs = []
    for combination in itertools.product(*axes.values()):
        cell = dict(zip(axes, combination))
        folder = Path(output_dir) / _folder_name(cell)
        try:
            settings = _for_method({**shared, **cell})
            cfg = RunConfig.from_dict({**settings, "output_dir": str(folder)})
        except XltError as err:
            raise XltError(f"study run {_folder_name(cell)}: {err}") from None
        runs.append(StudyRun(cell, cfg))
    return runs


def _for_method(settings: dict) -> dict:
    """A shared setting that belongs to some methods only (``fusion``, ``mixup_lambda``, ...) goes to the runs of
    those methods: a study of lora and flare with ``fusion: add`` fuses in its flare runs."""
    method = get_method(settings.get("method", RunConfig.method))
    owned = {option for row in METHODS.values() for option in row.options}
    return {key: value for key, value in settings.items() if key not in owned or key in method.options}


def _folder_name(cell: dict) -> str:
    """``method=flare__seed=0__target_lang=jv``: the axis values, safe as one folder name."""
    name = "__".join(f"{key}={value}" for key, value in cell.items()) or "run"
    return re.sub(r"[^A-Za-z0-9=+_.,-]", "_", name)[:200]


def plan(runs: list[StudyRun]) -> tuple[list[StudyRun], list[StudyRun]]:
    """The runs still to do and those already finished (a complete run of exactly that config in its folder)."""
    from xlt.runs.stage2 import finished_run

    done = [run for run in runs if finished_run(run.cfg) is not None]
    return [run for run in runs if run not in done], done


def run_study(path: str | Path, output_dir: str | Path, workers: int = 1, dry_run: bool = False) -> list[str]:
    """The study of a file: :func:`run_cells` on its shared settings and axes."""
    shared, axes = read_study(path)
    return run_cells(shared, axes, output_dir, workers, dry_run)


def run_cells(shared: dict, axes: dict, output_dir: str | Path, workers: int = 1, dry_run: bool = False) -> list[str]:
    """Check every run, then run those not finished (``workers`` at once); returns one line per run."""
    from xlt.runs.preflight import check_run

    if workers < 1:
        raise XltError(f"--workers must be >= 1, got {workers}")
    runs = expand(shared, axes, output_dir)
    todo, done = plan(runs)
    for run in todo:  # bad input anywhere stops the study before the first run trains
        try:
            check_run(run.cfg)
            if get_task(run.cfg.task).languages is not None:  # the data set's languages, before any run reads it
                dataset_name(run.cfg.task, run.cfg.target_lang)
        except XltError as err:
            raise XltError(f"study run {_folder_name(run.axes)}: {err}") from None
    lines = [f"done  {_folder_name(run.axes)}" for run in done]
    if dry_run:
        return lines + [f"to do {_folder_name(run.axes)}" for run in todo]
    threads = max(1, (os.cpu_count() or 1) // workers)
    if workers == 1:
        results = _run_in_turn(todo, threads)
    else:
        import multiprocessing

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_run_one, [run.cfg for run in todo], itertools.repeat(threads)))
    return lines + [f"ran   {_folder_name(run.axes)}: {result}" for run, result in zip(todo, results)]


def _run_in_turn(todo: list[StudyRun], threads: int) -> list[str]:
    """The runs one after another, each announced with how many are left and, once one has run, about how long
    the rest will take at the pace so far (the first runs also train the English models, so it errs long)."""
    results, started = [], time.monotonic()
    for k, run in enumerate(todo):
        left = ""
        if k:
            per_run = (time.monotonic() - started) / k
            left = f", about {per_run * (len(todo) - k) / 60:.0f} min left"
        print(f"xlt: study run {k + 1}/{len(todo)}: {_folder_name(run.axes)}{left}", file=sys.stderr, flush=True)
        results.append(_run_one(run.cfg, threads))
    return results


def _run_one(cfg: RunConfig, threads: int) -> str:
    """One run in this process with ``threads`` torch threads; its main metrics as one line."""
    import torch

    from xlt.runs.stage2 import run_stage2

    torch.set_num_threads(threads)
    metrics = run_stage2(cfg)["metrics"]
    return ", ".join(f"{name} {value:.3f}" for name, value in metrics.items())
