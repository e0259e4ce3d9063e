"""Stage 2, the recipe: one method on the target language, on top of the cached English model.

``run_stage2`` reads top to bottom: data, English model (:mod:`xlt.runs.stage1`), adapter, training,
evaluation, the run directory (``config.yaml``, ``adapter/``, ``metrics.json``, built in a temp
sibling and swapped in whole by :mod:`xlt.run_dir`). ``evaluate_run`` rebuilds a run from its
directory alone. Classification and generation share this code through :mod:`xlt.kinds.registry`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path

from xlt.config import RunConfig
from xlt.data.examples import AnyTaskData, TagTaskData, TaskData, content_digest
from xlt.data.registry import get_task
from xlt.errors import XltError
from xlt.io import failed_writes_named
from xlt.languages import canonical_code
from xlt.methods.adapters import AdaptedModel, AdapterSettings, attach, load_adapter, save_adapter
from xlt.methods.table import get_method
from xlt.runs.results import gap_to_source
from xlt.models.classifier import resolve_pooling
from xlt.models.loading import load_tokenizer
from xlt.runs.preflight import data_file_record
from xlt.run_dir import (ADAPTER, CONFIG, METRICS, check_replaceable, missing_files, model_card, output_dir_for,
                         output_lock, stored_differences, write_run)
from xlt.runs.recipe import Run, as_run, as_written_for, load_data, resolve_defaults
from xlt.runs.settings import check_precision, set_seed, train_settings
from xlt.runs.stage1 import STAGE1_INFO, ensure_stage1
from xlt.kinds.registry import kind_of, task_architecture
from xlt.training.limits import check_steps
from xlt.training.loop import enable_checkpointing, task_steps, train
from xlt.processes import processes as run_processes


def stage2_data(run: Run) -> tuple[AnyTaskData, dict]:
    """The data stage 2 trains and is tested on, and what metrics.json records about its text: the
    gold task data, with the source text machine-translated (``--source-from mt:M``/``lexicon``, and its
    chrF against the gold) or the training set translated into the target language (translate-train)."""
    cfg, method = run.cfg, run.method
    if method.translated_train and get_task(cfg.task).kind == "extractive-qa":
        return _translated_qa(run)
    data = run.data
    if cfg.source_from.startswith("pivot:"):  # how far the pivot's text is from the gold English
        return data, {"source_chrf": pivot_chrf(run, data)}
    if cfg.source_translator is None and not method.translated_train:
        return data, {}
    from xlt.mt.translated_data import translated_source, translated_training_set

    model = cfg.source_translator or cfg.translator
    with _translator(cfg, model) as (translator, cache):
        if method.translated_train:
            return translated_training_set(data, translator, cache), {"translator": model}
        splits = ("train", "test") if method.trains else ("test",)
        data, quality = translated_source(data, translator, cache, splits)
        return data, {"translator": model, "source_chrf": quality}


@contextlib.contextmanager
def _translator(cfg: RunConfig, model: str):
    """The MT model ``model`` and the translation cache, closed afterwards."""
    from xlt.mt.cache import TranslationCache
    from xlt.mt.factory import load_translator

    translator = load_translator(model, data_dir=cfg.data_dir, batch_size=cfg.mt_batch_size, num_beams=cfg.mt_beams)
    cache = TranslationCache(cfg.translation_cache)
    try:
        yield translator, cache
    finally:
        cache.close()


def _translated_qa(run: Run) -> tuple[AnyTaskData, dict]:
    """QA translate-train: the English training questions translated with their answers projected (as read,
    then converted for decoders and mT5), and how many survived."""
    from xlt.mt.translated_data import translated_qa_training_set

    cfg = run.cfg
    with _translator(cfg, cfg.translator) as (translator, cache):
        data, projection = translated_qa_training_set(load_data(run, as_read=True), translator, cache,
                                                      cfg.max_train_examples)
    return as_written_for(run, data), {"translator": cfg.translator, "answer_projection": projection}


def pivot_chrf(run: Run, data: AnyTaskData) -> dict:
    """chrF of the pivot text of the test rows against their gold source-language text (the read stage 1's
    English side comes from)."""
    from xlt.mt.chrf import corpus_chrf

    if not isinstance(data, TaskData):
        return {}
    gold = {ex.id: ex.source for ex in load_data(run.with_config(run.cfg.replace(source_from="gold"))).test}
    pairs = [(" ".join(ex.source), " ".join(gold[ex.id])) for ex in data.test if gold.get(ex.id) is not None]
    if not pairs:
        return {}
    score = corpus_chrf([h for h, _ in pairs], [r for _, r in pairs])
    return {"test": {"chrf": round(score.score, 2), "sentences": len(pairs)}, "signature": score.signature}


def mt_encoder_input(cfg: RunConfig):
    """FLARE-MT: the MT tokenizer with its language tags checked (cheap, so it runs before stage 1)."""
    if not get_method(cfg.method).mt_encoder:
        return None
    from xlt.flare.mt_encoder import load_mt_encoder_input

    return load_mt_encoder_input(cfg.mt_model, cfg.target_lang, cfg.source_lang, cfg.max_length)


def build_model(run: Run, stage1: Path, data: AnyTaskData, mt_input=None) -> tuple[AdaptedModel, object]:
    """The English model of ``stage1`` with the run's adapter attached (its saved labels and pooling checked)."""
    cfg = run.cfg
    info = json.loads((stage1 / STAGE1_INFO).read_text())
    if isinstance(data, (TaskData, TagTaskData)) and tuple(info["labels"] or ()) != tuple(data.labels):
        raise XltError(f"label set {list(data.labels)} differs from the English model's {info['labels']}")
    if info.get("pooling") != cfg.pooling:
        raise XltError(f"the English model at {stage1} pools {info.get('pooling')!r}, the run asks for "
                       f"{cfg.pooling!r} (a stage-1 model from an older xlt has no pooling: delete it to rebuild)")
    tokenizer = load_tokenizer(str(stage1))
    arch = run.architecture  # the base model's: the English model is the same architecture
    kind = kind_of(data, cfg)
    model = kind.load_model(str(stage1), tokenizer, data, arch)
    check_precision(cfg, model.config.model_type)
    method = run.method
    mt_width = None
    if method.mt_encoder:
        from xlt.flare.mt_encoder import load_mt_encoder, mt_hidden_size

        mt_input = mt_input or mt_encoder_input(cfg)
        mt_width = mt_hidden_size(cfg.mt_model)
    adapter = AdapterSettings(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, fusion=cfg.fusion,
                              source_layer_offset=cfg.source_layer_offset, train_head=cfg.train_head,
                              all_linear=cfg.lora_targets == "all-linear", pooling=cfg.pooling,
                              mt_encoder=cfg.mt_model, mt_hidden_size=mt_width, mixup=mixup_settings(cfg))
    adapted = attach(model, method, task_architecture(kind, arch), adapter)
    if method.mt_encoder:
        adapted.mt_input = mt_input
        adapted.flare.attach_mt_encoder(load_mt_encoder(cfg.mt_model))
    if cfg.gradient_checkpointing:
        enable_checkpointing(model)
    return adapted, tokenizer


def mixup_settings(cfg: RunConfig):
    """X-Mixup's settings of the run (None for other methods)."""
    if not get_method(cfg.method).mixes:
        return None
    from xlt.methods.xmixup import MixupSettings

    layers = tuple(int(x) for x in cfg.mixup_layers.split(",")) if cfg.mixup_layers else None
    return MixupSettings(layers, cfg.mixup_lambda, cfg.mixup_schedule)


def evaluate_adapted(run: Run, adapted: AdaptedModel, tokenizer, data: AnyTaskData) -> dict:
    cfg, method = run.cfg, adapted.method
    kind = kind_of(data, cfg)
    result = {"metrics": kind.evaluate(cfg, adapted.model, tokenizer, data, method.view, adapted.source,
                                       f"test ({cfg.target_lang})")}
    if adapted.flare is not None and cfg.zero_source_eval:
        result["metrics_zero_source"] = kind.evaluate(cfg, adapted.model, tokenizer, data, method.view, "zero",
                                                      "test, source zeroed")
    return result


def _alignment_layers(cfg: RunConfig, model) -> list[int]:
    from xlt.models.architectures import middle_layer

    if cfg.align_layers:
        try:
            return [int(x) for x in cfg.align_layers.split(",")]
        except ValueError:
            raise XltError(f"align_layers must be comma-separated layer numbers, got {cfg.align_layers!r}") from None
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return [middle_layer(config.num_hidden_layers if hasattr(config, "num_hidden_layers") else config.num_layers)]


def _align_langs(cfg: RunConfig) -> list[str]:
    return [x.strip() for x in (cfg.align_langs or cfg.target_lang).split(",") if x.strip()]


def make_aligner(cfg: RunConfig, tokenizer, model):
    """Training pairs with English for the align methods (the train split of the parallel set)."""
    from xlt.alignment.aligner import Aligner
    from xlt.alignment.contrastive import AlternatingSchedule, alignment_pairs

    pairs = alignment_pairs(cfg.align_data, _align_langs(cfg), "train", cfg.data_dir, cfg.align_max_pairs)
    task, align = (int(x) for x in cfg.align_ratio.split(":"))
    return Aligner(pairs, tokenizer, _alignment_layers(cfg, model), cfg.align_temperature, cfg.batch_size,
                   cfg.max_length, AlternatingSchedule(task, align), cfg.seed)


def alignment_retrieval(cfg: RunConfig, adapted: AdaptedModel, tokenizer, layers: list[int]) -> dict:
    """Margin retrieval English<->language at the aligned layers on held-out (test split) sentences,
    without and with the adapter: the evidence that alignment training did what it should."""
    from xlt.alignment.contrastive import alignment_pairs, backbone_of
    from xlt.alignment.retrieval import layer_embeddings, retrieval_accuracy

    pairs = alignment_pairs(cfg.align_data, _align_langs(cfg), "test", cfg.data_dir, cfg.max_eval_examples)
    backbone = backbone_of(adapted.model)
    result = {}
    for lang, rows in pairs.items():
        english, target = [e for e, _ in rows], [t for _, t in rows]

        def accuracy() -> dict:
            emb_en, emb_t = layer_embeddings(backbone, tokenizer, english), layer_embeddings(backbone, tokenizer, target)
            return {str(layer): (retrieval_accuracy(emb_t[layer - 1], emb_en[layer - 1])
                                 + retrieval_accuracy(emb_en[layer - 1], emb_t[layer - 1])) / 2 for layer in layers}

        with adapted.model.disable_adapter():
            before = accuracy()
        result[lang] = {"before": before, "after": accuracy(), "sentences": len(rows)}
    return result


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
    cfg = run.cfg
    mt_input = mt_encoder_input(cfg)  # flare-mt: the MT model's tags for the target language, checked now
    stage1 = ensure_stage1(run)  # the English task model, trained once and cached
    set_seed(cfg.seed)
    adapted, tokenizer = build_model(run, stage1, data, mt_input)
    aligner = make_aligner(cfg, tokenizer, adapted.model) if method.align else None
    # state: the model's tensors as the accelerator gathered them (every process), which the adapter is saved from
    trained, state = train_adapter(cfg, adapted, tokenizer, data, aligner) if method.trains else (
        {"train_seconds": 0.0}, None)
    result = evaluate_adapted(run, adapted, tokenizer, data)
    if aligner is not None:
        result["alignment_retrieval"] = alignment_retrieval(cfg, adapted, tokenizer, aligner.layers)
    processes = run_processes()  # under accelerate launch every process trained its shard; one writes
    metrics = run_metrics(cfg, adapted, data, stage1, {**trained, **text_info}, result, processes.num_processes)
    if processes.is_main_process:
        _write_run_dir(cfg, out, metrics, adapted if method.trains else None, state)
    processes.wait_for_everyone()
    return metrics


def digest_of_test_set(data: AnyTaskData) -> str:
    """SHA-256 of what an evaluation reads: the task, its label set and the test examples, in order."""
    english = {"english": None} if hasattr(data, "english") else {}
    return content_digest(dataclasses.replace(data, train=[], valid=[], **english))


def train_adapter(cfg: RunConfig, adapted: AdaptedModel, tokenizer, data: AnyTaskData, aligner) -> tuple[dict, dict]:
    """Stage-2 training; returns what metrics.json records (its seconds and, for FLARE, the frozen English passes
    per distinct English text of the training set: 1.0 with the source-state cache, the number of epochs without)
    and the trained state (``Trained.state_dict``)."""
    if adapted.flare is not None and cfg.source_cache_gb > 0:
        adapted.flare.enable_source_cache(int(cfg.source_cache_gb * 2**30))
    method = adapted.method
    to_batch = kind_of(data, cfg).train_batches(cfg, tokenizer, adapted.model, data, method.view, adapted.source)
    plan = task_steps(data.train, to_batch, cfg.batch_size, cfg.epochs, cfg.seed, cfg.qa_windows_per_pass) \
        if method.task_loss else []
    if aligner is not None:
        plan = aligner.plan(plan, cfg.epochs)
    fit = train(adapted.model, plan, train_settings(cfg, cfg.epochs, cfg.lr), f"{cfg.method} ({cfg.target_lang})")
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
                   state: dict | None = None) -> None:
    """config.yaml, adapter/ (with its model card, from ``state`` where training gathered one) and metrics.json,
    swapped in whole (xlt.run_dir)."""
    config = cfg.to_dict()
    card = model_card(config, metrics)
    write_adapter = None if adapted is None else (lambda folder: save_adapter(adapted, folder, card, state))
    with failed_writes_named(out):
        write_run(out, config, metrics, write_adapter)


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
    return metrics if saved.with_absolute_paths().replace(show_progress=cfg.show_progress) == cfg else None


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
    run_dir = Path(run_dir)
    missing = missing_files(run_dir, trains=False)
    if missing:
        raise XltError(f"{run_dir} is not a finished run: {missing[0]} is missing")
    cfg = RunConfig.from_yaml(run_dir / CONFIG)
    missing = missing_files(run_dir, get_method(cfg.method).trains)
    if missing:
        raise XltError(f"{run_dir} is not a finished run: {missing[0]} is missing")
    saved = _read_metrics(run_dir)
    stage1 = Path(saved.get("stage1_dir", ""))
    if "stage1_dir" not in saved or not (stage1 / STAGE1_INFO).is_file():
        raise XltError(f"the run's English model {saved.get('stage1_dir')} is missing")
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
    run stored no metrics, as a merge not evaluated yet) and ``stored_differences``."""
    result = reevaluate_run(run_dir)
    differences = stored_differences(_read_metrics(Path(run_dir)), result)
    return {**result, "matches_stored": None if differences is None else not differences,
            "stored_differences": differences or []}


def differences_line(result: dict) -> str | None:
    """One line naming each metric that ``evaluate_run`` recomputed differently from metrics.json."""
    if not result.get("stored_differences"):
        return None
    parts = [f"{d['metric']} stored {d['stored']}, recomputed {d['recomputed']}" for d in result["stored_differences"]]
    return "recomputed metrics differ from the run's metrics.json: " + "; ".join(parts)
