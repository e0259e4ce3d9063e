"""Stage-2 data whose text comes from machine translation (or the lexicon stand-in).

- ``translated_source``: each example's source text becomes the translation of its target text into
  the source language (translate-test with a translator, FLARE and input-fusion with
  ``--source-from mt:M`` or ``lexicon``), the setting of the FLARE paper's main tables: no gold English.
  The chrF of the translated source against the gold one is returned wherever the gold exists.
- ``translated_qa_source``: the same for extractive QA (FLARE and input-fusion with ``--source-from mt:M``):
  each question and its paragraph translated into the source language, the paragraph sentence by sentence
  (:func:`split_sentences`: MT models are trained on sentences and truncate long inputs), joined back by
  spaces. The English has no answer spans (translate-test on QA, which needs them, is refused). It gives
  TyDiQA, which has no English version of its Swahili questions, the English side FLARE reads.
- ``translated_training_set``: each training example's target text becomes the translation of its
  English text into the target language (translate-train).
- ``translated_qa_training_set``: translate-train for extractive QA: the English task training set (what
  stage 1 trains on), question and paragraph translated, each answer carried across by markers
  (xlt.mt.answer_projection); examples whose markers do not survive are dropped and counted by reason.

Every sentence goes through :func:`xlt.mt.cache.translate_cached`, so a grid of runs translates it once.
"""

from __future__ import annotations

import re
from dataclasses import replace

from xlt.data.examples import Example, QAExample, QATaskData, TaskData, source_side
from xlt.errors import XltError


def _translate_segments(rows: list[tuple[str, ...]], translator, source_lang: str, target_lang: str,
                        cache) -> list[tuple[str, ...]]:
    """Every segment of every row translated (NLI premise and hypothesis separately), rows kept."""
    from xlt.mt.cache import translate_cached

    flat = [segment for row in rows for segment in row]
    done = iter(translate_cached(translator, flat, source_lang, target_lang, cache).translations)
    return [tuple(next(done) for _ in row) for row in rows]


def _check(data) -> None:
    if not isinstance(data, TaskData):
        raise XltError(f"machine-translated text is supported for classification tasks, not {data.task!r} "
                       "(a translated prompt would not match its gold answer)")


def _score(quality: dict, split: str, pairs: list[tuple[str, str]]) -> None:
    """Adds to ``quality`` the chrF (sacreBLEU, 0-100) of ``split``'s (gold, translation) pairs, if any."""
    from xlt.mt.chrf import corpus_chrf

    if pairs:
        score = corpus_chrf([h for _, h in pairs], [r for r, _ in pairs])
        quality[split] = {"chrf": round(score.score, 2), "sentences": len(pairs)}
        quality["signature"] = score.signature


def translated_source(data: TaskData, translator, cache, splits: tuple[str, ...] = ("train", "test")
                      ) -> tuple[TaskData, dict]:
    """``data`` with the source text of ``splits`` replaced by translations of the target text, and the
    chrF (sacreBLEU, 0-100) of those translations against the gold source text, per split."""
    _check(data)
    translator.check_pair(data.target_lang, data.source_lang)
    quality, new = {}, {}
    for split in splits:
        examples: list[Example] = getattr(data, split)
        sources = _translate_segments([ex.target for ex in examples], translator, data.target_lang,
                                      data.source_lang, cache)
        _score(quality, split, [(" ".join(ex.source), " ".join(s)) for ex, s in zip(examples, sources)
                                if ex.source is not None])
        new[split] = [replace(ex, source=s) for ex, s in zip(examples, sources)]
    return replace(data, **new), quality


# a sentence ends at . ! ? (Arabic ؟, the danda । ॥ of Bengali and Hindi) and white space, or at a line break
_SENTENCE_END = re.compile(r"(?<=[.!?\u061f\u0964\u0965])\s+|\s*\n\s*")


def split_sentences(text: str) -> list[str]:
    """The sentences of a paragraph, for MT models that translate (and truncate) one sentence at a time: cut
    after sentence-final punctuation followed by white space, and at line breaks; nothing else (an abbreviation
    such as "Dr. X" is cut too, which costs a little fluency and nothing else). Empty pieces are dropped."""
    return [piece for piece in _SENTENCE_END.split(text.strip()) if piece]


def translated_qa_source(data: QATaskData, translator, cache, splits: tuple[str, ...] = ("train", "test")
                         ) -> tuple[QATaskData, dict]:
    """``data`` whose examples of ``splits`` read as their source side their own question and paragraph
    machine-translated into the source language (the paragraph sentence by sentence, joined by spaces; each
    distinct text translated once), without answer spans, and the chrF of those translations against the gold
    source text, per split, where it exists (MLQA; none for TyDiQA). Stage 1's English data stays the gold one:
    a set without its own English splits (custom-qa) gets its rows' gold English side as ``english``."""
    from xlt.mt.cache import translate_cached

    translator.check_pair(data.target_lang, data.source_lang)
    english = source_side(data)
    chosen = {split: getattr(data, split) for split in splits}
    texts = [text for examples in chosen.values() for ex in examples
             for text in (ex.question, *split_sentences(ex.context))]
    done = dict(zip(texts, translate_cached(translator, texts, data.target_lang, data.source_lang,
                                            cache).translations))

    def with_english(ex: QAExample) -> QAExample:
        return replace(ex, source_question=done[ex.question], source_answers=None, source_answer_starts=None,
                       source_context=" ".join(done[sentence] for sentence in split_sentences(ex.context)))

    quality, new = {}, {}
    for split, examples in chosen.items():
        new[split] = [with_english(ex) for ex in examples]
        _score(quality, split, [(f"{ex.source_question} {ex.source_context}", f"{t.source_question} "
                                 f"{t.source_context}") for ex, t in zip(examples, new[split]) if ex.has_source])
    return replace(data, english=english, **new), quality


def translated_training_set(data: TaskData, translator, cache) -> TaskData:
    """``data`` whose training examples are the English ones translated into the target language."""
    _check(data)
    translator.check_pair(data.source_lang, data.target_lang)
    missing = [ex.id for ex in data.train if ex.source is None]
    if missing:
        raise XltError(f"translate-train needs the English version of every training example; {len(missing)} "
                       f"have none (e.g. {missing[0]!r})")
    targets = _translate_segments([ex.source for ex in data.train], translator, data.source_lang,
                                  data.target_lang, cache)
    return replace(data, train=[replace(ex, target=t) for ex, t in zip(data.train, targets)])


def translated_qa_training_set(data: QATaskData, translator, cache, max_examples: int | None = None
                               ) -> tuple[QATaskData, dict]:
    """``data`` whose training questions are the first ``max_examples`` of the English training set, translated
    into the target language with the first gold answer projected onto the translated paragraph, and how many
    examples survived (``kept``) or were dropped, per reason (``dropped``). Each new example keeps its English
    question, paragraph and answer as its source side."""
    from xlt.mt.answer_projection import project
    from xlt.mt.cache import translate_cached

    translator.check_pair(data.source_lang, data.target_lang)
    english = source_side(data).train[:max_examples or None]

    def translate(texts: list[str]) -> list[str]:
        return translate_cached(translator, texts, data.source_lang, data.target_lang, cache).translations

    spans, dropped = project([(ex.context, ex.answer_starts[0], ex.answers[0]) for ex in english], translate)
    kept = [(ex, span) for ex, span in zip(english, spans) if span is not None]
    if not kept:
        reasons = ", ".join(f"{n} {reason}" for reason, n in dropped.most_common())
        raise XltError(f"translate-train: no answer of the {len(english)} English training questions survived "
                       f"translation into {data.target_lang} ({reasons})")
    questions = translate([ex.question for ex, _ in kept])
    train = [QAExample(question, span.context, (span.answer,), (span.answer_start,), ex.question, ex.context,
                       ex.answers, ex.answer_starts, ex.id) for (ex, span), question in zip(kept, questions)]
    return replace(data, train=train), {"kept": len(train), "dropped": dict(sorted(dropped.items()))}
