"""The run directory of one stage-2 run (or merge), and what it must hold to count as finished.

A run directory holds ``config.yaml``, ``adapter/`` (methods that train: safetensors, PEFT config and
an xlt model card) and ``metrics.json``. It is built whole in a temporary sibling and swapped in at
the end, so a run killed half-way leaves the previous run intact (or nothing), never new files next
to old metrics.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Callable

from xlt.errors import XltError
from xlt.io import make_temp_dir, replace_dir, write_json, write_yaml

CONFIG = "config.yaml"
METRICS = "metrics.json"
ADAPTER = "adapter"
CARD = "README.md"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json", "xlt_adapter.json")
RUN_ENTRIES = (CONFIG, METRICS, ADAPTER)


def _is_run_entry(name: str, entries: tuple[str, ...]) -> bool:
    """One of ``entries``, or the temp file of an atomic write of one (left by a killed process)."""
    return name in entries or any(name.startswith(f".{entry}.") for entry in entries)


def check_replaceable(folder: str | Path, entries: tuple[str, ...] = RUN_ENTRIES, what: str = "an xlt run") -> None:
    """Refuse, before any work, an output folder holding anything but ``entries``: writing the run
    replaces the whole folder, which must never delete a user's other files."""
    folder = Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise XltError(f"output dir {folder} exists and is not a plain folder; choose a new --output-dir")
    if not folder.exists():
        return
    others = sorted(e.name for e in folder.iterdir() if not _is_run_entry(e.name, entries))
    if others:
        raise XltError(f"output dir {folder} holds files that are not part of {what} ({', '.join(others[:3])}); "
                       "choose an empty or new --output-dir")


def missing_files(run_dir: str | Path, trains: bool) -> list[str]:
    """The files a finished run lacks (empty: complete); ``trains``: the method saves an adapter."""
    names = [CONFIG, METRICS, *(f"{ADAPTER}/{name}" for name in ADAPTER_FILES if trains)]
    return [name for name in names if not (Path(run_dir) / name).is_file()]


def write_run(out: str | Path, config: dict, metrics: dict, write_adapter: Callable[[Path], None] | None) -> None:
    """Write config.yaml, the adapter (``write_adapter(folder)``) and metrics.json into a temp sibling
    of ``out``, then swap it in whole; the previous run in ``out`` is removed only after that."""
    out = Path(out)
    tmp = make_temp_dir(out)
    try:
        write_yaml(tmp / CONFIG, config)
        if write_adapter is not None:
            write_adapter(tmp / ADAPTER)
        write_json(tmp / METRICS, metrics)
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _number(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _metric_rows(title: str, values: dict | None) -> list[str]:
    if not values:
        return []
    return [f"| {title}: {name} | {_number(value)} |" for name, value in values.items()]


def model_card(config: dict, metrics: dict, run_dir: str | Path) -> str:
    """The adapter's README.md: what it is, what it was trained and tested on, its scores, how to load it."""
    method, fusion = metrics.get("method", config.get("method")), metrics.get("fusion")
    source, target = metrics.get("source_lang", config.get("source_lang")), metrics.get("target_lang")
    title = f"{method} ({fusion})" if fusion else method
    merge = metrics.get("merge")
    lines = ["---", "library_name: peft", "language:", f"- {source}", f"- {target}",
             "tags:", "- xlt", f"- {method}", "---", "",
             f"# xlt adapter: {title}, {source} → {target}, task {metrics.get('task', config.get('task'))}", "",
             "| | |", "|---|---|", f"| method | {method} |", f"| fusion | {fusion or '–'} |",
             f"| languages | {source} (the English task model's language) → {target} |",
             f"| task / data | {config.get('task')}"
             + (f", {metrics['train_examples']} training and {metrics['test_examples']} test examples ({target})"
                if "test_examples" in metrics else "") + " |",
             f"| base model | the stage-1 English task model `{metrics.get('stage1_dir')}`, "
             f"fine-tuned from `{config.get('model')}` |",
             f"| adapter | LoRA r={config.get('lora_r')}, alpha={config.get('lora_alpha')}, "
             f"on {config.get('lora_targets')} projections |",
             f"| seed | {config.get('seed')} |"]
    if merge:
        weights = ", ".join(f"{w} · `{run}`" for w, run in zip(merge["weights"], metrics.get("merged_from", [])))
        lines.append(f"| merged from | {weights} ({merge['combination']}; head of the first) |")
    lines += ["", "## Test metrics", ""]
    scores = [*_metric_rows(target, metrics.get("metrics")),
              *_metric_rows(f"{target}, English zeroed", metrics.get("metrics_zero_source")),
              *_metric_rows(f"{source} (stage-1 model)", metrics.get("source_metrics"))]
    if scores:
        lines += ["| metric | value |", "|---|---:|", *scores]
    else:
        lines.append("Not evaluated when written; `xlt evaluate` below computes them.")
    lines += ["", "## Load it", "", "```bash", f"xlt evaluate --run-dir {Path(run_dir)}", "```", "",
              "rebuilds the model from this run directory alone (its config.yaml, the stage-1 model above and "
              "this adapter) and evaluates it again on the same test set.", ""]
    return "\n".join(lines)


def same_value(stored: object, recomputed: object) -> bool:
    if isinstance(stored, (int, float)) and isinstance(recomputed, (int, float)):
        return math.isclose(stored, recomputed, rel_tol=0.0, abs_tol=1e-9)
    return stored == recomputed


def stored_differences(saved: dict, result: dict) -> list[dict] | None:
    """Every recomputed metric that differs from metrics.json; None when the run stored no metrics
    (a merge that was never evaluated)."""
    if "metrics" not in saved:
        return None
    differences = []
    for section, values in result.items():
        stored = saved.get(section) or {}
        for name, value in values.items():
            if not same_value(stored.get(name), value):
                differences.append({"metric": f"{section}.{name}", "stored": stored.get(name), "recomputed": value})
    return differences
