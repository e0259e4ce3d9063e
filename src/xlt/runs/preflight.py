"""Checks that run before anything heavy, so bad input is one line and exit code 2 within seconds,
with nothing written: parse flags -> :func:`check_run` -> load data -> load model -> train.

Values are checked by ``RunConfig`` itself; here are the checks that look at the file system (output
folders, the user's files, a local model folder) and at the alignment data. Torch-free on import (checking
``--report-to`` reads accelerate's table of trackers, which loads torch, only when the flag is given).
"""

from __future__ import annotations

import os
from pathlib import Path

from xlt.config import RunConfig
from xlt.data.formats.user_file import check_files
from xlt.data.registry import get_task
from xlt.errors import XltError, echo
from xlt.io import file_sha256
from xlt.methods.table import DEFAULT_LORA_R, get_method
from xlt.models.cache import cache_root
from xlt.models.loading import check_model, check_model_folder, check_safetensors, read_json_object, resolve_model
from xlt.run_dir import ADAPTER, ADAPTER_WEIGHTS
from xlt.training.tracking import check_trackers

ENGLISH = ("en", "english")


def check_output_dir(path: str | Path, what: str = "--output-dir") -> None:
    """``path`` can be (or become) a folder this process writes into: not a file, not under a file,
    and the nearest existing folder on the way grants write and search permission (``os.access``)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise XltError(f"{what} {path} is an existing file, not a folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise XltError(f"{what} {path} lies under {existing}, which is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise XltError(f"{what} {path}: no permission to write in {existing}")


def check_sibling_writable(path: str | Path, what: str = "--output-dir") -> None:
    """A finished folder is built in a temporary sibling and renamed into place (xlt.io.building_dir), so an
    existing ``path`` also needs a writable parent: its own permissions alone would fail only at the end."""
    path = Path(path)
    if path.is_dir() and not os.access(path.parent, os.W_OK | os.X_OK):
        raise XltError(f"{what} {path}: no permission to write in {path.parent}, where the finished folder is "
                       "built before it replaces the old one")


def check_run(cfg: RunConfig, overwrite: bool = False) -> None:
    """Everything about one ``xlt train`` run that can be checked without loading data or a model
    (``cfg.output_dir`` set: :func:`xlt.run_dir.output_dir_for`)."""
    from xlt.run_dir import check_replaceable, lock_folder

    check_trackers(cfg.trackers)  # --report-to: accelerate's names, their libraries installed
    check_output_dir(cfg.output_dir)
    check_sibling_writable(cfg.output_dir)
    check_replaceable(cfg.output_dir, overwrite=overwrite)  # nothing of the user's, no finished run unasked
    check_output_dir(lock_folder(), "the lock folder ($XLT_CACHE_DIR/locks)")
    if cfg.stage1_dir:
        check_output_dir(cfg.stage1_dir, "--stage1-dir")
    else:
        check_output_dir(cache_root() / "stage1", "the stage-1 cache ($XLT_CACHE_DIR/stage1)")
    user_files = get_task(cfg.task).user_files
    if user_files:  # read as the run will (custom-ner: with the source side stage 1 trains and is tested on)
        check_files(cfg.task, cfg.train_file, cfg.test_file)
        user_files.read(cfg.train_file)
        user_files.read(cfg.test_file)
    if cfg.source_translator is not None or get_method(cfg.method).translated_train:  # the run reads the cache
        from xlt.mt.cache import check_local_disk, default_cache_path

        check_local_disk(cfg.translation_cache or default_cache_path())
    check_model(cfg.model)
    _check_model_sizes(cfg)
    if get_method(cfg.method).align:
        _check_alignment_data(cfg)


def _check_model_sizes(cfg: RunConfig) -> None:
    """Layer numbers and LoRA ranks against the model's config (its config.json; no weight is read):
    otherwise ``--align-layers 99`` fails after stage 1 has trained and a huge rank fails allocating.
    Only read when a setting needs it; a Hub model whose config cannot be fetched is checked when it loads."""
    ranks = {name: getattr(cfg, name) for name in ("lora_r", "stage1_lora_r")  # the default ranks (the FLARE
             if getattr(cfg, name) > DEFAULT_LORA_R}  # paper's) are accepted on any model, the tiny test ones too
    if not (cfg.align_layers or cfg.mixup_layers or ranks):
        return
    sizes = model_sizes(cfg.model)
    if sizes is None:
        return
    layers, hidden = sizes
    for name in ("align_layers", "mixup_layers"):  # RunConfig checked their form: numbers >= 1
        value = getattr(cfg, name)
        numbers = _layer_numbers(value) if value else []
        twice = name == "mixup_layers" and len(set(numbers)) != len(numbers)  # one mixing module per layer
        if any(n > layers for n in numbers) or twice:
            raise XltError(f"--{name.replace('_', '-')} must be {'distinct ' if twice else ''}layers 1..{layers} of "
                           f"{cfg.model}, got {echo(value)}")
    for name, rank in ranks.items():
        if rank > hidden:
            raise XltError(f"--{name.replace('_', '-')} {rank:,} is above the hidden size of {cfg.model} ({hidden}), "
                           "the highest rank a LoRA update of it can have")


def _layer_numbers(value: str) -> list[int]:
    """The numbers of a checked comma-separated list; one too long for ``int`` (4,300 digits) counts as 10**9."""
    return [int(x) if len(x.strip()) <= 9 else 10**9 for x in value.split(",")]


def model_sizes(name: str) -> tuple[int, int] | None:
    """(transformer layers, hidden size) from the model's config alone (an encoder-decoder's encoder
    layers: the stack alignment and X-Mixup read); None when the config cannot be had without loading."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(resolve_model(name), trust_remote_code=False)
    except (OSError, ValueError):  # a Hub id offline, or unknown there: its loading says so
        return None
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(config.num_hidden_layers), int(config.hidden_size)


def _check_alignment_data(cfg: RunConfig) -> None:
    """The parallel pairs the align methods train on (train split) and report retrieval on (test split):
    as ``xlt.runs.stage2`` reads them (``_align_langs``, ``alignment_pairs``), with at least 2 per language."""
    if cfg.max_eval_examples == 1:
        raise XltError("--max-eval-examples must be >= 2 for align methods (retrieval needs a second sentence)")
    from xlt.data.parallel import load_parallel

    langs = [x.strip() for x in (cfg.align_langs or cfg.target_lang).split(",") if x.strip()]
    if not langs:
        raise XltError(f"--align-langs {cfg.align_langs!r} names no language")
    wanted = ["en", *(lang for lang in langs if lang.lower() not in ENGLISH)]
    for split, limit in (("train", cfg.align_max_pairs), ("test", cfg.max_eval_examples)):
        sentences = load_parallel(cfg.align_data, wanted, cfg.data_dir, max_sentences=limit, split=split,
                                  min_sentences=2)
        if "en" not in sentences:
            raise XltError(f"{cfg.align_data}: no English column to align to (languages: {', '.join(sentences)})")


def data_files(cfg: RunConfig) -> dict[str, str]:
    """The user's data files a run reads, by setting: its train and test files, an align method's
    parallel file."""
    files = {name: getattr(cfg, name) for name in ("train_file", "test_file") if getattr(cfg, name)}
    if get_method(cfg.method).align and Path(cfg.align_data).suffix.lower() in (".csv", ".jsonl"):
        files["align_data"] = cfg.align_data
    return files


def data_file_record(cfg: RunConfig) -> dict[str, dict]:
    """What metrics.json records of each data file (:func:`data_files`): its path and SHA-256."""
    return {name: {"path": str(path), "sha256": file_sha256(path)} for name, path in data_files(cfg).items()}


def check_data_files(run_dir: str | Path, cfg: RunConfig, recorded: dict) -> None:
    """The run's data files are where config.yaml says, with the content they had when it was trained
    (``recorded``: metrics.json's ``data_files``; runs that recorded none are not checked)."""
    for name, path in data_files(cfg).items():
        entry = recorded.get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            continue
        flag = "--" + name.replace("_", "-")
        if not Path(path).is_file():
            raise XltError(f"{flag} {path} of run {run_dir} is missing; evaluate reads the files the run was "
                           "trained and tested on")
        now = file_sha256(path)
        if now != entry["sha256"]:
            raise XltError(f"{flag} {path} changed since run {run_dir} was trained (sha256 {entry['sha256'][:12]}, "
                           f"now {now[:12]}); evaluate reads the files the run was trained and tested on")


def check_run_dir(run_dir: str | Path, for_predict: bool = False) -> RunConfig:
    """A finished run that ``xlt evaluate`` can rebuild: its config, metrics.json (a JSON object naming
    the English model), that model's folder, the adapter's header and the data files it recorded (same
    content; not for prediction with an exported run, which reads no data: ``for_predict``). Returns the
    run's config."""
    from xlt.run_dir import TASK_SHELL, missing_files, stage1_dir_of

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise XltError(f"{run_dir} is not a finished run: config.yaml is missing")
    cfg = RunConfig.from_yaml(run_dir / "config.yaml")
    missing = missing_files(run_dir, get_method(cfg.method).trains)
    if missing:
        raise XltError(f"{run_dir} is not a finished run: {missing[0]} is missing")
    metrics = read_json_object(run_dir / "metrics.json")
    stage1 = stage1_dir_of(run_dir, metrics)
    if stage1 is None:
        raise XltError(f"{run_dir / 'metrics.json'} names no stage1_dir (the run's English model)")
    if not stage1.is_dir():
        raise XltError(f"the run's English model {stage1} is missing")
    check_model_folder(stage1)
    if get_method(cfg.method).trains:
        check_safetensors(run_dir / ADAPTER / ADAPTER_WEIGHTS)
    if for_predict and (run_dir / TASK_SHELL).is_file():
        return cfg
    recorded = metrics.get("data_files")
    check_data_files(run_dir, cfg, recorded if isinstance(recorded, dict) else {})
    return cfg
