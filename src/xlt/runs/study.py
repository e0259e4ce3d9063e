"""``xlt study``: a whole comparison from one YAML file. The file has ``RunConfig``'s keys; a key whose value is
a list is an axis (``method: [zero-shot, lora, flare]``, ``seed: [0, 1, 2]``), and the study is the product of
its axes, shared settings once, then the ``extra:`` runs (a list of mappings: shared settings + each). Every run is checked before the first one trains, finished runs are skipped (so
a killed study resumes where it stopped), runs that need the same English model share it (the stage-1 build
lock), and the study ends with :mod:`xlt.runs.report`'s table.

``workers`` > 1 runs that many at once on this machine in a process pool, each with its share of the cores
(torch threads = cores / workers: two runs that each spin two threads on two cores ran 9.6 times slower than one).
``engine="submitit"`` runs them as submitit's jobs instead, here or on SLURM (:mod:`xlt.runs.cluster`).
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

EXTRA = "extra"  # the study file's list of runs added after the product
SLURM = "slurm"  # the study file's SLURM parameters (xlt.runs.cluster)
NOT_AXES = (EXTRA,)  # list-valued keys that are no axis
ENGINES = ("pool", "submitit")  # how the runs to do run: this machine's process pool, or submitit's jobs


@dataclass(frozen=True)
class StudyRun:
    """One cell of the study: the values of its axes and the run's config (its output folder inside the study's)."""

    axes: dict
    cfg: RunConfig


def read_study(path: str | Path) -> tuple[dict, dict]:
    """The study file's shared settings and its axes (each a non-empty list of values), in the file's order; its
    ``extra`` runs (a list of mappings, each one run more) stay in the shared settings under ``extra``."""
    path = Path(path)
    if not path.is_file():
        raise XltError(f"study file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise XltError(f"study file {path} is not valid UTF-8 YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise XltError(f"study file {path} must hold a mapping of settings to values or lists of values")
    axes = {key: value for key, value in values.items() if isinstance(value, list) and key not in NOT_AXES}
    empty = [key for key, value in axes.items() if not value]
    if empty:
        raise XltError(f"study file {path}: axis {echo(empty[0])} has no values")
    _check_extra(path, values.get(EXTRA, []))
    return {key: value for key, value in values.items() if key not in axes}, axes


def _check_extra(path: Path, extra: object) -> None:
    """``extra:`` is a list of mappings of settings to single values (an extra run has no axes)."""
    if not isinstance(extra, list):
        raise XltError(f"study file {path}: {EXTRA} must be a list of runs, each a mapping of settings to values")
    for number, cell in enumerate(extra, 1):
        if not isinstance(cell, dict) or not cell:
            raise XltError(f"study file {path}: {EXTRA} run {number} must be a mapping of settings to values")
        lists = [key for key, value in cell.items() if isinstance(value, (list, dict))]
        if lists:
            raise XltError(f"study file {path}: {EXTRA} run {number} gives {echo(lists[0])} several values; an "
                           "extra run is one run (put each value in a run of its own)")


def expand(shared: dict, axes: dict, output_dir: str | Path) -> list[StudyRun]:
    """The product of the axes, then the ``extra`` runs (shared settings + each mapping), each a checked RunConfig
    whose output folder is named for its axis values (an extra run's: its mapping); a run twice is refused."""
    cells = [dict(zip(axes, combination)) for combination in itertools.product(*axes.values())]
    cells += shared.get(EXTRA, [])
    shared = {key: value for key, value in shared.items() if key not in (EXTRA, SLURM)}
    runs, seen = [], {}
    for cell in cells:
        folder = Path(output_dir) / _folder_name(cell)
        try:
            settings = _for_method({**shared, **cell})
            cfg = RunConfig.from_dict({**settings, "output_dir": str(folder)})
        except XltError as err:
            raise XltError(f"study run {_folder_name(cell)}: {err}") from None
        same = seen.get(folder.name) or seen.get(_settings_key(cfg))
        if same:
            raise XltError(f"study run {_folder_name(cell)} is the same run as {same}; leave one out")
        seen[folder.name] = seen[_settings_key(cfg)] = _folder_name(cell)
        runs.append(StudyRun(cell, cfg))
    return runs


def _settings_key(cfg: RunConfig) -> str:
    """Every setting of a run but its folder: two cells with the same key are one run."""
    return repr(sorted((key, repr(value)) for key, value in cfg.to_dict().items() if key != "output_dir"))


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


def run_study(path: str | Path, output_dir: str | Path, workers: int = 1, dry_run: bool = False,
              engine: str = "pool") -> list[str]:
    """The study of a file: :func:`run_cells` on its shared settings, axes and ``slurm:`` block."""
    shared, axes = read_study(path)
    slurm = shared.pop(SLURM, None)
    if slurm is not None and engine != "submitit":
        raise XltError(f"study file {path} has a slurm: block, which only --engine submitit submits; add "
                       "--engine submitit (or leave the block out to run here)")
    return run_cells(shared, axes, output_dir, workers, dry_run, engine, slurm)


def run_cells(shared: dict, axes: dict, output_dir: str | Path, workers: int = 1, dry_run: bool = False,
              engine: str = "pool", slurm: dict | None = None) -> list[str]:
    """Check every run, then run those not finished (``workers`` at once, by ``engine``); one line per run, those
    of failed runs starting with ``failed``."""
    from xlt.runs.preflight import check_run

    if workers < 1:
        raise XltError(f"--workers must be >= 1, got {workers}")
    if engine not in ENGINES:
        raise XltError(f"unknown --engine {echo(engine)}; choose one of: {', '.join(ENGINES)}")
    runs = expand(shared, axes, output_dir)
    todo, done = plan(runs)
    for run in todo:  # bad input anywhere stops the study before the first run trains
        try:
            check_run(run.cfg)
            if get_task(run.cfg.task).languages is not None:  # the data set's languages, before any run reads it
                dataset_name(run.cfg.task, run.cfg.target_lang)
        except XltError as err:
            raise XltError(f"study run {_folder_name(run.axes)}: {err}") from None
    if engine == "submitit":
        from xlt.runs.cluster import executor_parameters, submitit

        submitit(), executor_parameters(slurm, workers)  # installed, and the slurm: block complete
    lines = [f"done  {_folder_name(run.axes)}" for run in done]
    if dry_run:
        return lines + [f"to do {_folder_name(run.axes)}" for run in todo]
    return lines + _run_todo(todo, output_dir, workers, engine, slurm)


def _run_todo(todo: list[StudyRun], output_dir: str | Path, workers: int, engine: str, slurm: dict | None) -> list[str]:
    """The runs to do: one after another, in a local process pool, or as submitit's jobs."""
    names = [_folder_name(run.axes) for run in todo]
    if engine == "submitit":
        from xlt.runs.cluster import run_jobs

        return run_jobs(run_job, todo, names, output_dir, workers, slurm) if todo else []
    threads = max(1, (os.cpu_count() or 1) // workers)
    if workers == 1:
        results = _run_in_turn(todo, threads)
    else:
        import multiprocessing

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_run_kept, [run.cfg for run in todo], itertools.repeat(threads)))
    return [f"ran   {name}: {result}" if ok else f"failed {name}: {result}" for name, (ok, result) in zip(names, results)]


def _run_kept(cfg: RunConfig, threads: int) -> tuple[bool, str]:
    """:func:`_run_one`, its failure kept as one line so the study's other runs go on (as submitit's jobs do)."""
    try:
        return True, _run_one(cfg, threads)
    except Exception as err:  # noqa: BLE001 - any failure of one run: reported, the others still run
        first = (str(err).strip().splitlines() or [""])[0]
        return False, f"{type(err).__name__}: {first}" if not isinstance(err, XltError) else first


def _run_in_turn(todo: list[StudyRun], threads: int) -> list[tuple[bool, str]]:
    """The runs one after another, each announced with how many are left and, once one has run, about how long
    the rest will take at the pace so far (the first runs also train the English models, so it errs long)."""
    results, started = [], time.monotonic()
    for k, run in enumerate(todo):
        left = ""
        if k:
            per_run = (time.monotonic() - started) / k
            left = f", about {per_run * (len(todo) - k) / 60:.0f} min left"
        print(f"xlt: study run {k + 1}/{len(todo)}: {_folder_name(run.axes)}{left}", file=sys.stderr, flush=True)
        results.append(_run_kept(run.cfg, threads))
    return results


def run_job(settings: dict, folder: str, threads: int | None) -> str:
    """One run as a job of another process (:mod:`xlt.runs.cluster`): plain data in (its settings, RunConfig's keys,
    and its folder), :func:`_run_one` with ``threads`` torch threads (None: the cores the job was given)."""
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return _run_one(RunConfig.from_dict({**settings, "output_dir": folder}), threads)


def _run_one(cfg: RunConfig, threads: int) -> str:
    """One run in this process with ``threads`` torch threads; its main metrics as one line."""
    import torch

    from xlt.runs.stage2 import run_stage2

    torch.set_num_threads(threads)
    metrics = run_stage2(cfg)["metrics"]
    return ", ".join(f"{name} {value:.3f}" for name, value in metrics.items())
