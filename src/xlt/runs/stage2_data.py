"""Stage 2's data: the task's target-side data as the run reads it, with its source text machine-translated
(``--source-from mt:M``/``lexicon``; for extractive QA each question and paragraph) or its training set translated
into the target (translate-train), and what metrics.json records about that text (chrF of a translated or pivot
source, the answers a QA projection kept)."""

from __future__ import annotations

import contextlib
import dataclasses

from xlt.config import RunConfig
from xlt.data.examples import AnyTaskData, TaskData, content_digest
from xlt.data.registry import get_task
from xlt.runs.recipe import Run, as_written_for, load_data


def stage2_data(run: Run) -> tuple[AnyTaskData, dict]:
    """The data stage 2 trains and is tested on, and what metrics.json records about its text: the
    gold task data, with the source text machine-translated (``--source-from mt:M``/``lexicon``, and its
    chrF against the gold) or the training set translated into the target language (translate-train)."""
    cfg, method = run.cfg, run.method
    if method.translated_train and get_task(cfg.task).kind == "extractive-qa":
        return _translated_qa(run)
    if cfg.source_translator is not None and get_task(cfg.task).kind == "extractive-qa":
        return _qa_translated_source(run)
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


def _qa_translated_source(run: Run) -> tuple[AnyTaskData, dict]:
    """QA with ``--source-from mt:M`` (FLARE, input-fusion): each question and paragraph machine-translated into
    English (as read, then converted for decoders and mT5), and the chrF against the gold English where the set
    has one (MLQA)."""
    from xlt.mt.translated_data import translated_qa_source

    cfg = run.cfg
    splits = ("train", "test") if run.method.trains else ("test",)
    with _translator(cfg, cfg.source_translator) as (translator, cache):
        data, quality = translated_qa_source(load_data(run, as_read=True), translator, cache, splits)
    return as_written_for(run, data), {"translator": cfg.source_translator, **({"source_chrf": quality} if quality
                                                                              else {})}


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


def digest_of_test_set(data: AnyTaskData) -> str:
    """SHA-256 of what an evaluation reads: the task, its label set and the test examples, in order."""
    english = {"english": None} if hasattr(data, "english") else {}
    return content_digest(dataclasses.replace(data, train=[], valid=[], **english))
