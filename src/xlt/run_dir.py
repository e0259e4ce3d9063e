"""The run directory of one stage-2 run (or merge), and what it must hold to count as finished.

A run directory holds ``config.yaml``, ``adapter/`` (methods that train: safetensors, PEFT config and
an xlt model card), ``metrics.json`` and ``.xlt-run`` (the marker only xlt writes: its version and a
random run id). It is built whole in a temporary sibling and swapped in at the end, so a run killed
half-way leaves the previous run intact (or nothing), never new files next to old metrics; the folder
it replaces keeps its mode (setgid bit included). A folder is only ever replaced when it is empty or
holds an xlt run (the marker, and nothing else), and a finished run only when the caller says so
(``--overwrite``). Folders of an xlt that wrote no marker are refused like any other files: nothing
tells them from a user's own ``config.yaml``. One run at a time writes a folder (:func:`output_lock`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import secrets
from pathlib import Path
from typing import Callable, Iterator

from xlt.errors import XltError
from xlt.io import building_dir, host_tag, remove_stale_temp_dirs, write_json, write_text_atomic, write_yaml

CONFIG = "config.yaml"
METRICS = "metrics.json"
PREDICTIONS = "predictions.jsonl"  # one row per test example: id, gold, prediction (score where the kind has one)
ADAPTER = "adapter"
CARD = "README.md"
MARKER = ".xlt-run"
# an adapter folder's files, named here once: PEFT's weights and config, and xlt's own record
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_INFO = "xlt_adapter.json"  # what PEFT's config does not hold: the method, the head's pooling, X-Mixup's mixing
ADAPTER_FILES = (ADAPTER_WEIGHTS, ADAPTER_CONFIG, ADAPTER_INFO)
TRACKING = "tracking"  # --report-to: the trackers' local logs (TensorBoard's event files, ...)
RUN_ENTRIES = (CONFIG, METRICS, PREDICTIONS, ADAPTER, MARKER, TRACKING)
RUNS_ROOT = "runs"  # where runs go without --output-dir


def _is_run_entry(name: str, entries: tuple[str, ...]) -> bool:
    """One of ``entries``, or the temp file of an atomic write of one (left by a killed process)."""
    return name in entries or any(name.startswith(f".{entry}.") for entry in entries)


def write_marker(folder: str | Path) -> str:
    """Mark ``folder`` as written by xlt (the version and a new random run id); returns the id."""
    from xlt import __version__

    run_id = secrets.token_hex(8)
    write_json(Path(folder) / MARKER, {"xlt": __version__, "run_id": run_id})
    return run_id


def run_id(folder: str | Path) -> str | None:
    """The run id in ``folder``'s marker; None where there is no valid marker (not written by xlt)."""
    try:
        marker = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = marker.get("run_id") if isinstance(marker, dict) else None
    return value if isinstance(value, str) and value else None


def check_replaceable(folder: str | Path, entries: tuple[str, ...] = RUN_ENTRIES, overwrite: bool = False) -> None:
    """Refuse, before any work, an output folder that writing the run (which replaces the whole folder)
    must not replace: one holding anything xlt did not write (no marker, or files besides ``entries``),
    or a finished xlt run unless ``overwrite``. New and empty folders are fine."""
    folder = Path(folder)
    remove_stale_temp_dirs(folder)  # first put back a run that a killed swap left aside
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise XltError(f"--output-dir {folder} exists and is not a plain folder; choose a new or empty folder")
    names = sorted(entry.name for entry in folder.iterdir()) if folder.exists() else []
    if not names:
        return
    ours = run_id(folder) is not None
    others = [name for name in names if not (ours and _is_run_entry(name, entries))]
    if others:
        older = " (a run of an xlt that wrote no .xlt-run marker is not replaced: move it away)" \
            if not ours and CONFIG in names else ""
        raise XltError(f"--output-dir {folder} holds files xlt did not write ({', '.join(others[:3])}); "
                       f"choose a new or empty folder{older}")
    if not overwrite:
        raise XltError(f"--output-dir {folder} holds a finished xlt run; pass --overwrite to replace it, "
                       "or choose a new folder")


def lock_folder() -> Path:
    """Where output-folder locks live ($XLT_CACHE_DIR/locks): not beside the user's folders."""
    from xlt.models.cache import cache_root

    return cache_root() / "locks"


@contextlib.contextmanager
def output_lock(folder: str | Path) -> Iterator[None]:
    """Hold ``folder`` for one run: a second run that asks while it is held is refused in one line.

    The lock (``filelock``: an OS lock the kernel drops when its holder dies) is a file named for the
    folder's resolved path in :func:`lock_folder`, with a ``.pid`` file beside it saying who holds it;
    both stay (deleting a lock file that another process has open would let two runs hold two locks)."""
    from filelock import FileLock, Timeout

    folder = Path(folder)
    resolved = folder.resolve()
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:24]
    lock_path = lock_folder() / f"{re.sub(r'[^A-Za-z0-9+_.-]', '_', resolved.name)[:64]}-{key}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    holder = lock_path.with_suffix(".pid")
    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise XltError(f"--output-dir {folder} is in use by another xlt run ({_holder(holder)})") from None
    try:
        write_text_atomic(holder, f"{host_tag()} {os.getpid()}\n")
        yield
    finally:
        lock.release()


def _holder(holder: Path) -> str:
    """``pid N`` (``on HOST`` when another machine's) from the lock's pid file."""
    try:
        host, pid = holder.read_text(encoding="utf-8").split()
    except (OSError, ValueError):
        return "pid unknown"
    return f"pid {pid}" + ("" if host == host_tag() else f" on {host}")


def output_dir_for(cfg) -> Path:
    """The run's folder: ``cfg.output_dir``, else a new one named for the run (:func:`default_output_dir`)."""
    if cfg.output_dir is not None:
        return Path(cfg.output_dir)
    from xlt.languages import canonical_code

    try:
        target = canonical_code(cfg.target_lang)
    except XltError:  # the data loader names the problem
        target = cfg.target_lang
    return default_output_dir(cfg.task, target, cfg.method, cfg.fusion, cfg.seed)


def default_output_dir(task: str, target_lang: str, method: str, fusion: str | None, seed: int,
                       root: str | Path = RUNS_ROOT) -> Path:
    """A new folder for a run without ``--output-dir``: ``runs/TASK-TARGET-METHOD[-FUSION]-seedSEED``,
    with ``-2``, ``-3``, ... where that exists, so no run replaces another unasked. (Two runs of the same
    settings started at the same instant pick the same name; the second is refused, the folder being in use or
    finished.)"""
    name = "-".join([task, target_lang, method, *([fusion] if fusion else []), f"seed{seed}"])
    base = Path(root) / re.sub(r"[^A-Za-z0-9+_.-]", "_", name)
    path, n = base, 1
    while path.exists() or path.is_symlink():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


STAGE1 = "stage1"  # an exported run's own copy of its English model (metrics.json: ``stage1_dir: stage1``)
TASK_SHELL = "task_shell.json"  # an exported run's task without its rows: what predict reads (xlt.runs.task_shell)
STAGE1_INFO = "stage1.json"  # in a stage-1 folder: its settings, labels, pooling and English test metrics


def stage1_dir_of(run_dir: str | Path, metrics: dict) -> Path | None:
    """The English (stage-1) model a run names in metrics.json (``stage1_dir``): an absolute path as training
    wrote it, or a path relative to the run directory (an exported run's ``stage1``), so a copied folder
    finds its own copy; None where metrics.json names none."""
    stage1 = metrics.get("stage1_dir")
    if not isinstance(stage1, str) or not stage1:
        return None
    return Path(run_dir) / stage1  # an absolute stage1 stays as it is


def stage1_key(stage1: str | Path) -> str:
    """An English model by name, not path (model cards travel): ``MODEL/TASK/seedN-DIGEST`` of its cache folder."""
    return "/".join(Path(stage1).parts[-3:])


def set_base_model(folder: str | Path, base_model: str) -> None:
    """Name ``base_model`` (a stage-1 folder) in an adapter folder's PEFT config (``base_model_name_or_path``)
    and, where it exists, its xlt_adapter.json (``base_model``)."""
    folder = Path(folder)
    for name, key in ((ADAPTER_CONFIG, "base_model_name_or_path"), (ADAPTER_INFO, "base_model")):
        if (folder / name).is_file():
            saved = json.loads((folder / name).read_text())
            saved[key] = base_model
            write_text_atomic(folder / name, json.dumps(saved, indent=2 if name == ADAPTER_CONFIG else None) + "\n")


def missing_files(run_dir: str | Path, trains: bool) -> list[str]:
    """The files a finished run lacks (empty: complete); ``trains``: the method saves an adapter."""
    names = [CONFIG, METRICS, *(f"{ADAPTER}/{name}" for name in ADAPTER_FILES if trains)]
    return [name for name in names if not (Path(run_dir) / name).is_file()]


def write_run(out: str | Path, config: dict, metrics: dict, write_adapter: Callable[[Path], None] | None,
              predictions: list[dict] | None = None, tracking: Path | None = None) -> None:
    """Write config.yaml, the adapter (``write_adapter(folder)``), metrics.json, predictions.jsonl (when given) and
    the marker into a temp sibling of ``out``, then swap it in whole, keeping ``out``'s mode; the previous run in
    ``out`` is removed only after that. ``tracking``: the trackers' logs, a finished folder beside ``out``, moved
    in as ``tracking/``."""
    with building_dir(out, keep_mode=True) as tmp:
        if tracking is not None:
            os.rename(tracking, tmp / TRACKING)  # a sibling of out, as tmp is: one file system
        write_marker(tmp)
        write_yaml(tmp / CONFIG, config)
        if write_adapter is not None:
            write_adapter(tmp / ADAPTER)
        write_json(tmp / METRICS, metrics)
        if predictions is not None:
            write_predictions(tmp, predictions)


def write_predictions(run_dir: str | Path, predictions: list[dict]) -> None:
    """A run's predictions.jsonl (one JSON object per test example), written atomically: a trained run's when
    it is written, a merged run's when it is first evaluated."""
    write_text_atomic(Path(run_dir) / PREDICTIONS,
                      "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in predictions))


def read_predictions(run_dir: str | Path) -> list[dict] | None:
    """The rows of a run's predictions.jsonl, or None where the run has none (written before xlt kept them)."""
    path = Path(run_dir) / PREDICTIONS
    if not path.is_file():
        return None
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except ValueError:
        raise XltError(f"{path} is not JSON lines") from None


def _number(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _metric_rows(title: str, values: dict | None) -> list[str]:
    if not values:
        return []
    return [f"| {title}: {name} | {_number(value)} |" for name, value in values.items()]


def model_card(config: dict, metrics: dict) -> str:
    """The adapter's README.md: what it is, what it was trained and tested on, its scores, how to load it.

    The card travels with the adapter, so it names things by name, never by this machine's paths: the
    base model's id (a local model folder by its name), the task and languages, the data files by name and
    content hash, the English model by its stage-1 key, merged runs by name, method and run id."""
    method, fusion = metrics.get("method", config.get("method")), metrics.get("fusion")
    source, target = metrics.get("source_lang", config.get("source_lang")), metrics.get("target_lang")
    title = f"{method} ({fusion})" if fusion else method
    merge = metrics.get("merge")
    stage1 = metrics.get("stage1_dir")
    lines = ["---", "library_name: peft", "language:", f"- {source}", f"- {target}",
             "tags:", "- xlt", f"- {method}", *([f"base_model: {stage1_key(stage1)}"] if stage1 else []), "---", "",
             f"# xlt adapter: {title}, {source} → {target}, task {metrics.get('task', config.get('task'))}", "",
             "| | |", "|---|---|", f"| method | {method} |", f"| fusion | {fusion or '–'} |",
             f"| languages | {source} (the English task model's language) → {target} |",
             f"| task / data | {config.get('task')}"
             + (f", {metrics['train_examples']} training and {metrics['test_examples']} test examples ({target})"
                if "test_examples" in metrics else "") + " |",
             *_data_rows(metrics),
             f"| base model | the English task model of stage 1, fine-tuned from {_model_name(config.get('model'))}"
             + (f" (stage-1 key `{Path(stage1).name}`)" if stage1 else "") + " |",
             f"| adapter | LoRA r={config.get('lora_r')}, alpha={config.get('lora_alpha')}, "
             f"on {config.get('lora_targets')} projections |",
             f"| seed | {config.get('seed')} |"]
    if merge:
        runs = metrics.get("merged_runs") or [{} for _ in merge["weights"]]
        weights = ", ".join(f"{w} · " + (f"`{run['name']}` ({run['method']}, run {run['run_id']})" if run
                                          else f"input {i + 1}")
                            for i, (w, run) in enumerate(zip(merge["weights"], runs)))
        lines.append(f"| merged from | {weights} ({merge['combination']}; head of the first) |")
    lines += ["", "## Test metrics", ""]
    scores = [*_metric_rows(target, metrics.get("metrics")),
              *_metric_rows(f"{target}, English zeroed", metrics.get("metrics_zero_source")),
              *_metric_rows(f"{source} (stage-1 model)", metrics.get("source_metrics"))]
    if scores:
        lines += ["| metric | value |", "|---|---:|", *scores]
    else:
        lines.append("Not evaluated when written; `xlt evaluate` below computes them.")
    lines += ["", "## Load it", "", "```bash", "xlt evaluate --run-dir RUN_DIR", "```", "",
              "with RUN_DIR the run directory that holds this `adapter/` folder: rebuilds the model from that "
              "directory alone (its config.yaml, the stage-1 model above and this adapter) and evaluates it "
              "again on the same test set. `xlt export --run-dir RUN_DIR --output-dir DIR` writes one folder "
              "with the stage-1 model in `DIR/stage1`, which stock transformers and PEFT load after `import xlt`:",
              "", "```python", "import xlt  # registers xlt's classifier with transformers and FLARE with PEFT",
              "from peft import PeftModel", "from transformers import AutoModelForSequenceClassification", "",
              'base = AutoModelForSequenceClassification.from_pretrained("DIR/stage1")',
              'model = PeftModel.from_pretrained(base, "DIR/adapter")', "```", ""]
    return "\n".join(lines)


def _model_name(model: str | None) -> str:
    """A model id as given; a local model folder by its name alone."""
    if model is None:
        return "`?`"
    path = Path(model).expanduser()
    if path.is_absolute() or model.startswith((".", "~")) or path.is_dir():
        return f"`{path.resolve().name}` (a local model folder)"
    return f"`{model}`"


def _data_rows(metrics: dict) -> list[str]:
    """The data files by name and SHA-256 (its first 12 hex digits), and the test set's content digest."""
    files = metrics.get("data_files") or {}
    rows = ["| data files | " + ", ".join(f"`{Path(f['path']).name}` (sha256 `{f['sha256'][:12]}`)"
                                          for f in files.values()) + " |"] if files else []
    digest = metrics.get("test_data_digest")
    return rows + ([f"| test set | content digest `{digest[:12]}` |"] if digest else [])


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
