"""Experiment tracking through accelerate's trackers (``--report-to``): the names accelerate knows, the check that
each one's library is installed, and a run's trackers, which only the main process holds and writes.

Torch-free on import (the up-front checks import it); accelerate loads when a check or a run asks for it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from xlt.errors import XltError, echo

if TYPE_CHECKING:
    from xlt.training.loop import StepLog

PROJECT = "xlt"  # the trackers' project: TensorBoard writes under FOLDER/xlt/, W&B and MLflow file the run under it


def tracker_names() -> tuple[str, ...]:
    """The trackers accelerate's ``log_with`` accepts, from its own table (``LoggerType``), less "all" (every
    tracker that happens to be installed: a run would log to different places on different machines)."""
    from accelerate.utils import LoggerType

    return tuple(sorted(str(kind.value) for kind in LoggerType if kind is not LoggerType.ALL))


def check_trackers(names: Sequence[str]) -> None:
    """Every name is one of accelerate's trackers and its library is installed (the module and the pip package
    carry the tracker's name: tensorboard, wandb, mlflow, comet_ml, ...); accelerate itself would drop a missing
    one with a debug message and train without it."""
    if not names:
        return
    known = tracker_names()
    for name in names:
        if name not in known:
            raise XltError(f"--report-to {echo(name)} is not one of accelerate's trackers: {', '.join(known)}")
    for name in names:
        if importlib.util.find_spec(name) is None:
            raise XltError(f"--report-to {name} needs the Python package {name}, which is not installed: "
                           f"pip install {name}")


def trackable(values: dict) -> dict:
    """The values every tracker takes as hyperparameters: booleans, numbers and strings (None left out)."""
    return {key: value for key, value in values.items() if isinstance(value, (bool, int, float, str))}


def numbers(values: dict, prefix: str) -> dict[str, float]:
    """The numbers of a nested dict as ``prefix/key/subkey`` names (metrics per language, per layer, ...)."""
    found: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}/{key}"
        if isinstance(value, dict):
            found.update(numbers(value, name))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found[name] = value
    return found


class Tracking:
    """One run's trackers: an ``Accelerator`` made with ``log_with`` and ``project_dir`` (the folder of the local
    logs), its trackers started with the run's hyperparameters. Under ``accelerate launch`` only the main process
    makes one; on the others (``main=False``) logging does nothing, so no other rank creates a tracker or a file."""

    def __init__(self, names: Sequence[str], folder: Path | None, hparams: dict, bf16: bool, fp16: bool,
                 main: bool = True) -> None:
        self.folder = folder  # the local logs (None on the other processes)
        self.last_step: dict[str, int] = {}  # per stage, the number of its last logged step
        self.accelerator = None
        if main:
            from xlt.training.loop import make_accelerator  # the run's precision: accelerate holds one per process

            self.accelerator = make_accelerator(bf16, fp16, log_with=list(names), project_dir=folder)
            self.accelerator.init_trackers(PROJECT, config=trackable(hparams))

    def stage(self, name: str) -> StepLog:
        """The loop's logger for one stage: each value under ``name/`` (``stage1/loss``, ``stage2/lr``)."""

        def log(values: dict, step: int) -> None:
            self.last_step[name] = step
            self.log({f"{name}/{key}": value for key, value in values.items()}, step)

        return log

    def log(self, values: dict, step: int) -> None:
        if self.accelerator is not None:
            self.accelerator.log(values, step=step)

    def finish(self) -> None:
        """Close the trackers (write out and close their files). Not ``end_training``, which also destroys the
        process group that the run still uses after training (the other processes wait for the one that writes)."""
        if self.accelerator is None:
            return
        for tracker in self.accelerator.trackers:
            tracker.finish()
        self.accelerator.trackers.clear()
