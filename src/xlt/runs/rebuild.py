"""A finished run's model rebuilt from its directory alone: config.yaml, metrics.json (which names the English
model's folder), that folder and adapter/. ``xlt evaluate`` and ``xlt predict`` (:mod:`xlt.runs.predict`) both
rebuild a run here, so what one evaluates is what the other predicts with."""

from __future__ import annotations

import json
from pathlib import Path

from xlt.config import RunConfig
from xlt.data.examples import AnyTaskData
from xlt.errors import XltError
from xlt.methods.adapters import AdaptedModel, load_adapter
from xlt.methods.table import get_method
from xlt.run_dir import ADAPTER, CONFIG, METRICS, missing_files, stage1_dir_of
from xlt.runs.adapted_model import build_model
from xlt.runs.recipe import Run
from xlt.runs.stage1 import STAGE1_INFO


def read_metrics(run_dir: Path) -> dict:
    """A run's metrics.json, which must hold a JSON object."""
    try:
        saved = json.loads((run_dir / METRICS).read_text())
    except ValueError:
        raise XltError(f"{run_dir / METRICS} is not valid JSON") from None
    if not isinstance(saved, dict):
        raise XltError(f"{run_dir / METRICS} does not hold a JSON object")
    return saved


def open_finished_run(run_dir: Path) -> tuple[Run, dict, Path]:
    """The run of a finished run directory (its architecture read from the English model's folder, as the
    base model may be elsewhere), its metrics.json and the English model's folder; a missing piece is refused."""
    missing = missing_files(run_dir, trains=False)
    if missing:
        raise XltError(f"{run_dir} is not a finished run: {missing[0]} is missing")
    cfg = RunConfig.from_yaml(run_dir / CONFIG)
    missing = missing_files(run_dir, get_method(cfg.method).trains)
    if missing:
        raise XltError(f"{run_dir} is not a finished run: {missing[0]} is missing")
    saved = read_metrics(run_dir)
    stage1 = stage1_dir_of(run_dir, saved)  # relative: the run's own copy (an exported run)
    if stage1 is None or not (stage1 / STAGE1_INFO).is_file():
        raise XltError(f"the run's English model {stage1 or saved.get('stage1_dir')} is missing")
    return Run(cfg, architecture_from=str(stage1)), saved, stage1


def rebuild_model(run_dir: Path, run: Run, stage1: Path, data: AnyTaskData) -> tuple[AdaptedModel, object]:
    """The English model of ``stage1`` with the run's adapter attached and its saved weights loaded (strictly),
    and the tokenizer; ``data`` gives the kind and the label set (checked against the English model's)."""
    adapted, tokenizer = build_model(run, stage1, data)
    if adapted.method.trains:
        load_adapter(adapted, run_dir / ADAPTER)
    return adapted, tokenizer
