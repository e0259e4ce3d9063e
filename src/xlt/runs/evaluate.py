"""``xlt evaluate``: a finished run rebuilt from its directory alone (config.yaml, adapter/, the English model it
names) and evaluated again on the same test set, checked against its metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

from xlt.config import RunConfig
from xlt.data.examples import AnyTaskData
from xlt.errors import XltError
from xlt.methods.adapters import load_adapter
from xlt.methods.table import get_method
from xlt.io import write_json
from xlt.run_dir import (ADAPTER, CONFIG, METRICS, missing_files, read_predictions, stage1_dir_of,
                         stored_differences, write_predictions)
from xlt.runs.adapted_model import build_model, evaluate_adapted
from xlt.runs.recipe import Run
from xlt.runs.stage1 import STAGE1_INFO
from xlt.runs.stage2_data import digest_of_test_set, stage2_data


def _read_metrics(run_dir: Path) -> dict:
    try:
        saved = json.loads((run_dir / METRICS).read_text())
    except ValueError:
        raise XltError(f"{run_dir / METRICS} is not valid JSON") from None
    if not isinstance(saved, dict):
        raise XltError(f"{run_dir / METRICS} does not hold a JSON object")
    return saved


def reevaluate_run(run_dir: str | Path) -> dict:
    """Rebuild a finished run from its directory and evaluate it again on the same test set."""
    return reevaluate_with_predictions(run_dir)[0]


def reevaluate_with_predictions(run_dir: str | Path) -> tuple[dict, list[dict]]:
    """:func:`reevaluate_run`'s metrics and the predictions behind them (one row per test example)."""
    return _reevaluate(Path(run_dir))


def _reevaluate(run_dir: Path) -> tuple[dict, list[dict]]:
    """The recomputed metrics and the predictions behind them."""
    missing = missing_files(run_dir, trains=False)
    if missing:
        raise XltError(f"{run_dir} is not a finished run: {missing[0]} is missing")
    cfg = RunConfig.from_yaml(run_dir / CONFIG)
    missing = missing_files(run_dir, get_method(cfg.method).trains)
    if missing:
        raise XltError(f"{run_dir} is not a finished run: {missing[0]} is missing")
    saved = _read_metrics(run_dir)
    stage1 = stage1_dir_of(run_dir, saved)  # relative: the run's own copy (an exported run)
    if stage1 is None or not (stage1 / STAGE1_INFO).is_file():
        raise XltError(f"the run's English model {stage1 or saved.get('stage1_dir')} is missing")
    run = Run(cfg, architecture_from=str(stage1))  # the English model's folder: the base model may be elsewhere
    data, _ = stage2_data(run)
    _check_test_data(run_dir, saved, data)
    adapted, tokenizer = build_model(run, stage1, data)
    if adapted.method.trains:
        load_adapter(adapted, run_dir / ADAPTER)
    return evaluate_adapted(run, adapted, tokenizer, data)


def _check_test_data(run_dir: Path, saved: dict, data: AnyTaskData) -> None:
    """The test set read now is the one the run was tested on (metrics.json's ``test_data_digest``; runs
    that recorded none are not checked): another data directory or an edited file is refused."""
    recorded = saved.get("test_data_digest")
    now = digest_of_test_set(data)
    if isinstance(recorded, str) and recorded != now:
        raise XltError(f"the {data.task} test set read now differs from the one run {run_dir} was tested on "
                       f"(content digest {recorded[:12]}, now {now[:12]}); evaluate needs the same data")


def evaluate_run(run_dir: str | Path) -> dict:
    """:func:`reevaluate_run`, and whether it reproduces metrics.json: ``matches_stored`` (None when the
    run stored no metrics, as a merge not evaluated yet) and ``stored_differences``; and its predictions.jsonl:
    ``predictions_match`` (None when the run kept none) and ``prediction_differences``, the test examples whose
    prediction (or probability, beyond 1e-4) differs now. A merge evaluated for the first time keeps what a
    trained run keeps: :func:`record_merge_evaluation`."""
    result, predictions = _reevaluate(Path(run_dir))
    saved = _read_metrics(Path(run_dir))
    differences = stored_differences(saved, result)
    stored = read_predictions(run_dir)
    changed = None if stored is None else changed_predictions(stored, predictions)
    if "merged_from" in saved and "metrics" not in saved:
        record_merge_evaluation(Path(run_dir), {**saved, **result}, predictions)
    return {**result, "matches_stored": None if differences is None else not differences,
            "stored_differences": differences or [],
            "predictions_match": None if changed is None else not changed, "prediction_differences": changed or 0}


def record_merge_evaluation(run_dir: Path, metrics: dict, predictions: list[dict]) -> None:
    """A merged run's first evaluation written as a trained run's is: predictions.jsonl beside metrics.json,
    which is written last (its ``metrics`` mark an evaluated run, which ``xlt report`` reads)."""
    write_predictions(run_dir, predictions)
    write_json(run_dir / METRICS, metrics)


def changed_predictions(stored: list[dict], now: list[dict]) -> int:
    """How many test examples got another prediction (or, beyond 1e-4, another probability); a different number
    or order of examples counts every row."""
    if [row.get("id") for row in stored] != [row["id"] for row in now]:
        return max(len(stored), len(now))
    return sum(old.get("prediction") != new["prediction"] or abs(old.get("score", 0.0) - new.get("score", 0.0)) > 1e-4
               for old, new in zip(stored, now))


def differences_line(result: dict) -> str | None:
    """One line naming each metric that ``evaluate_run`` recomputed differently from metrics.json."""
    parts = [f"{d['metric']} stored {d['stored']}, recomputed {d['recomputed']}"
             for d in result.get("stored_differences") or []]
    lines = ["recomputed metrics differ from the run's metrics.json: " + "; ".join(parts)] if parts else []
    if result.get("prediction_differences"):
        lines.append(f"{result['prediction_differences']} recomputed test predictions differ from the run's "
                     "predictions.jsonl")
    return "; ".join(lines) or None
