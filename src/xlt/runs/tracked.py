"""Experiment tracking of one ``xlt train`` run (``--report-to``): the trackers open for the run with its settings,
stage 1 and stage 2 log each optimizer step, the test metrics follow, and the local logs end up in the run
directory's ``tracking/`` (:func:`xlt.run_dir.write_run` moves them in). Without ``--report-to`` nothing is made."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterator

from xlt.io import make_temp_dir
from xlt.processes import processes as run_processes
from xlt.runs.recipe import Run
from xlt.runs.stage1 import stage1_lr, stage1_method
from xlt.training.tracking import Tracking, check_trackers, numbers

UNTRACKED = ("show_progress", "report_to")  # settings that change nothing a tracker compares


def hparams(run: Run) -> dict:
    """The run's settings as trackers record them: every setting (flat, as config.yaml holds them) and the
    stage-1 method and learning rate the model decided."""
    settings = {key: value for key, value in run.cfg.to_dict().items() if key not in UNTRACKED}
    return {**settings, "stage1_method": stage1_method(run), "stage1_lr": stage1_lr(run)}


@contextlib.contextmanager
def tracked(run: Run, out: Path) -> Iterator[Tracking | None]:
    """The run's trackers, or None without ``--report-to``. The main process logs into a temp sibling of ``out``
    (named as :func:`xlt.io.make_temp_dir` names them: removed when the run fails, or by the next run into ``out``
    when this one was killed); writing the run moves it in."""
    cfg = run.cfg
    if not cfg.trackers:
        yield None
        return
    check_trackers(cfg.trackers)  # done by xlt train's preflight already; here for callers from Python
    main = run_processes().is_main_process
    folder = make_temp_dir(out) if main else None
    tracking = None
    try:
        tracking = Tracking(cfg.trackers, folder, hparams(run), cfg.bf16, cfg.fp16, main)
        yield tracking
    finally:
        if tracking is not None:
            tracking.finish()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)  # moved into the run already when it finished


def log_test_metrics(tracking: Tracking | None, metrics: dict) -> None:
    """The test metrics as metrics.json holds them, at stage 2's last step (0 for methods that do not train):
    ``eval/NAME``, ``eval/zero_source/NAME`` (FLARE), ``eval/retrieval/LANG/...`` (align methods, per language)
    and the English model's ``eval/SOURCE_LANG/NAME``; then the trackers are closed, their files complete."""
    if tracking is None:
        return
    values = {**numbers(metrics["metrics"], "eval"),
              **numbers(metrics.get("metrics_zero_source") or {}, "eval/zero_source"),
              **numbers(metrics.get("alignment_retrieval") or {}, "eval/retrieval"),
              **numbers(metrics.get("source_metrics") or {}, f"eval/{metrics['source_lang']}")}
    tracking.log(values, tracking.last_step.get("stage2", 0))
    tracking.finish()
