"""Stage 2, the recipe: one method on the target language, on top of the cached English model.

``run_stage2`` reads top to bottom: data (:mod:`xlt.runs.stage2_data`), English model (:mod:`xlt.runs.stage1`),
adapter (:mod:`xlt.runs.adapted_model`), training (with the align methods' steps, :mod:`xlt.runs.alignment_setup`),
evaluation, the run directory (``config.yaml``, ``adapter/``, ``metrics.json``, built in a temp sibling and swapped
in whole by :mod:`xlt.run_dir`). :mod:`xlt.runs.evaluate` rebuilds a run from its directory alone. Every task kind
shares this code through :mod:`xlt.kinds.registry`.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from xlt.config import RunConfig
from xlt.data.examples import AnyTaskData
from xlt.errors import XltError
from xlt.io import failed_writes_named
from xlt.kinds.registry import kind_of
from xlt.languages import canonical_code
from xlt.methods.adapters import AdaptedModel, save_adapter
from xlt.methods.table import get_method
from xlt.models.classifier import resolve_pooling
from xlt.processes import processes as run_processes
from xlt.run_dir import (CONFIG, METRICS, check_replaceable, missing_files, model_card, output_dir_for, output_lock,
                         write_run)
from xlt.runs.adapted_model import build_model, evaluate_adapted, mt_encoder_input
from xlt.runs.alignment_setup import alignment_retrieval, make_aligner
from xlt.runs.preflight import data_file_record
from xlt.runs.recipe import Run, as_run, resolve_defaults
from xlt.runs.results import gap_to_source
from xlt.runs.settings import set_seed, train_settings
from xlt.runs.stage1 import STAGE1_INFO, ensure_stage1
from xlt.runs.stage2_data import digest_of_test_set, stage2_data
from xlt.runs.tracked import log_test_metrics, tracked
from xlt.training.limits import check_steps
from xlt.training.loop import StepLog, task_steps, train


def run_stage2(run: Run | RunConfig, overwrite: bool = False) -> dict:
    """Train (if the method trains) and evaluate one method; writes the run directory (a new folder under
    runs/ without ``output_dir``; a finished run there is replaced only with ``overwrite``). One Run
    (:mod:`xlt.runs.recipe`) resolves the model and reads the data once for stage 1, stage 2 and the evaluation."""
    run = as_run(run)
    cfg = run.cfg.with_absolute_paths()  # config.yaml names the data the same from any working directory
    cfg = cfg.replace(output_dir=str(output_dir_for(cfg)))
    out = Path(cfg.output_dir)
    check_replaceable(out, overwrite=overwrite)  # before any work: the finished run replaces the whole folder
    with _claimed(out):
        return _run_stage2(run.with_config(cfg), out)


@contextlib.contextmanager
def _claimed(out: Path):
    """The output folder held (``run_dir.output_lock``) by the process that writes it, for the whole run;
    under accelerate launch the others hear whether it was refused."""
    processes = run_processes()
    with contextlib.ExitStack() as stack:
        refused = None
        if processes.is_main_process:
            try:
                stack.enter_context(output_lock(out))
            except XltError as err:
                refused = str(err)
        if processes.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            refused = broadcast_object_list([refused])[0]
        if refused:
            raise XltError(refused)
        yield


def _run_stage2(run: Run, out: Path) -> dict:
    """Stage 2 as a recipe: data, English model, adapter, training, evaluation, the run directory."""
    method = run.method
    record = data_file_record(run.cfg)  # the content of the user's files, hashed before they are read
    files = {"data_files": record} if record else {}
    data, text_info = stage2_data(run)  # the target-language task data (each example with its English side)
    text_info = {**files, "test_data_digest": digest_of_test_set(data), **text_info}
    if method.task_loss:  # a plan too long to build is refused before stage 1 trains
        check_steps(len(data.train), run.cfg.batch_size, run.cfg.epochs, "stage 2", "--epochs")
    run = resolve_defaults(run, data)
    mt_input = mt_encoder_input(run.cfg)  # flare-mt: the MT model's tags for the target language, checked now
    with tracked(run, out) as tracking:  # --report-to: the trackers (else None)
        return _train_and_evaluate(run, out, data, text_info, mt_input, tracking)


def _train_and_evaluate(run: Run, out: Path, data: AnyTaskData, text_info: dict, mt_input, tracking) -> dict:
    """The English model, the adapter, its training and evaluation, the run directory."""
    cfg, method = run.cfg, run.method
    stage1 = ensure_stage1(run, tracking and tracking.stage("stage1"))  # the English task model, trained once, cached
    set_seed(cfg.seed)
    adapted, tokenizer = build_model(run, stage1, data, mt_input)
    aligner = make_aligner(cfg, tokenizer, adapted.model) if method.align else None
    # state: the model's tensors as the accelerator gathered them (every process), which the adapter is saved from
    trained, state = train_adapter(cfg, adapted, tokenizer, data, aligner, tracking and tracking.stage("stage2")) \
        if method.trains else ({"train_seconds": 0.0}, None)
    result, predictions = evaluate_adapted(run, adapted, tokenizer, data)
    if aligner is not None:
        result["alignment_retrieval"] = alignment_retrieval(cfg, adapted, tokenizer, aligner.layers)
    processes = run_processes()  # under accelerate launch every process trained its shard; one writes
    metrics = run_metrics(cfg, adapted, data, stage1, {**trained, **text_info}, result, processes.num_processes)
    log_test_metrics(tracking, metrics)  # and the trackers closed: their files complete before the run is written
    if processes.is_main_process:
        _write_run_dir(cfg, out, metrics, adapted if method.trains else None, state, predictions,
                       tracking and tracking.folder)
    processes.wait_for_everyone()
    return metrics


def train_adapter(cfg: RunConfig, adapted: AdaptedModel, tokenizer, data: AnyTaskData, aligner,
                  log: StepLog | None = None) -> tuple[dict, dict]:
    """Stage-2 training; returns what metrics.json records (its seconds and, for FLARE, the frozen English passes
    per distinct English text of the training set: 1.0 with the source-state cache, the number of epochs without)
    and the trained state (``Trained.state_dict``). ``log``: the tracked run's logger of training steps."""
    if adapted.flare is not None and cfg.source_cache_gb > 0:
        adapted.flare.enable_source_cache(int(cfg.source_cache_gb * 2**30))
    method = adapted.method
    to_batch = kind_of(data, cfg).train_batches(cfg, tokenizer, adapted.model, data, method.view, adapted.source)
    plan = task_steps(data.train, to_batch, cfg.batch_size, cfg.epochs, cfg.seed, cfg.qa_windows_per_pass) \
        if method.task_loss else []
    if aligner is not None:
        plan = aligner.plan(plan, cfg.epochs)
    fit = train(adapted.model, plan, train_settings(cfg, cfg.epochs, cfg.lr), f"{cfg.method} ({cfg.target_lang})", log)
    trained = {"train_seconds": round(fit.seconds, 2)}
    if adapted.flare is not None:  # FLARE: frozen English passes; FLARE-MT: MT encoder passes
        name = "mt_encoder_passes_per_example" if method.mt_encoder else "source_passes_per_example"
        trained[name] = adapted.flare.source_passes_per_source()  # per distinct source text, not per example
    return trained, fit.state_dict()


def run_metrics(cfg: RunConfig, adapted: AdaptedModel, data: AnyTaskData, stage1: Path, trained: dict,
                result: dict, processes: int) -> dict:
    """metrics.json: what ran, on how much data, the scores, the English model's scores and the gap to them."""
    info = json.loads((stage1 / STAGE1_INFO).read_text())
    source_metrics = info["source_metrics"]
    trains = adapted.method.trains
    return {
        "task": cfg.task, "method": cfg.method, "fusion": cfg.fusion, "model": cfg.model,
        "source_lang": canonical_code(cfg.source_lang), "source_from": cfg.source_from,
        **({"mt_model": cfg.mt_model} if cfg.mt_model else {}),
        "target_lang": data.target_lang, "seed": cfg.seed,
        "trainable_params": adapted.trainable_params if trains else 0,
        "train_examples": len(data.train) if trains else 0, "test_examples": len(data.test), **trained, **result,
        "source_metrics": source_metrics,
        "gap": {k: gap_to_source(source_metrics[k], v) for k, v in result["metrics"].items()
                if k in source_metrics and source_metrics[k]},
        **_signatures(data),
        "processes": processes, "stage1_dir": str(stage1.resolve()),
        "stage1_examples": {"train": info["train_examples"], "test": info["test_examples"]},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _signatures(data: AnyTaskData) -> dict:
    """sacreBLEU's signatures of a translation task's BLEU and chrF; the stage-1 direction's too where its
    language is tokenized otherwise (into Chinese, say)."""
    if getattr(data, "metric", None) != "mt":
        return {}
    from xlt.scoring.generation import translation_signatures

    target, source = translation_signatures(data.target_lang), translation_signatures(data.source_lang)
    return {"metric_signatures": target, **({"source_metric_signatures": source} if source != target else {})}


def _write_run_dir(cfg: RunConfig, out: Path, metrics: dict, adapted: AdaptedModel | None,
                   state: dict | None = None, predictions: list[dict] | None = None,
                   tracking: Path | None = None) -> None:
    """config.yaml, adapter/ (with its model card, from ``state`` where training gathered one), metrics.json,
    predictions.jsonl and the trackers' logs (``tracking``), swapped in whole (xlt.run_dir)."""
    config = cfg.to_dict()
    card = model_card(config, metrics)
    write_adapter = None if adapted is None else (lambda folder: save_adapter(adapted, folder, card, state,
                                                                             base_model=metrics["stage1_dir"]))
    with failed_writes_named(out):
        write_run(out, config, metrics, write_adapter, predictions, tracking)


def finished_run(run: Run | RunConfig) -> dict | None:
    """The metrics of a complete run of exactly this config in ``cfg.output_dir``, if there is one:
    config.yaml equal to ``cfg`` (its paths made absolute), metrics.json with metrics, and the adapter files
    if the method trains."""
    run = as_run(run)
    cfg = run.cfg
    if cfg.output_dir is None:  # a new folder: nothing to reuse
        return None
    cfg = cfg.with_absolute_paths()
    out = Path(cfg.output_dir)
    if missing_files(out, get_method(cfg.method).trains):
        return None
    try:
        saved = RunConfig.from_yaml(out / CONFIG)
    except XltError:
        return None
    try:
        metrics = json.loads((out / METRICS).read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(metrics, dict) and isinstance(metrics.get("metrics"), dict)):
        return None
    if saved.pooling is not None and cfg.pooling is None:  # the run recorded the family default it resolved
        cfg = cfg.replace(pooling=resolve_pooling(None, run.architecture.family))
    unchanged = saved.with_absolute_paths().replace(show_progress=cfg.show_progress, report_to=cfg.report_to)
    return metrics if unchanged == cfg else None  # progress bars and trackers change no result


