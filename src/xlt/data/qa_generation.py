"""Extractive QA (``mlqa``, ``tydiqa``, ``custom-qa``) as answer generation, for decoders and mT5.

Models without a span head (xlt.kinds.extractive_qa) write the answer instead: the same questions, splits and English
data as :mod:`xlt.data.sets.question_answering`, each question a :class:`~xlt.data.examples.GenQAExample` whose prompt reads the
paragraph (cut to a window that fits ``--qa-max-length``, xlt.kinds.passages) and the question, trained
towards the first gold answer and scored by SQuAD v1.1 EM/F1 against the best of all of them (template and
metric ``qa``, xlt.scoring.generation). MLQA's examples keep their English question, paragraph and answers
(translate-test, input-fusion and FLARE read them); TyDiQA's have none. Stage 1 reads the set's English
halves (``QATaskData.english``), or for ``custom-qa`` each row's English side.
"""

from __future__ import annotations

from xlt.data.examples import GenQAExample, GenTaskData, QAExample, QATaskData, source_side

TEMPLATE = "qa"  # xlt.scoring.generation: the prompt and the metric of generated answers


def is_generated_qa(data) -> bool:
    """Whether ``data`` is a QA set converted here (it reads ``--qa-max-length`` for its prompts)."""
    return isinstance(data, GenTaskData) and data.template == TEMPLATE


def _first(values: tuple | None):
    return values[0] if values else None


def _example(ex: QAExample) -> GenQAExample:
    return GenQAExample(ex.question, ex.source_question, ex.answers[0], _first(ex.source_answers), ex.id,
                        passage_target=ex.context, passage_source=ex.source_context,
                        answer_start=ex.answer_starts[0], answer_start_source=_first(ex.source_answer_starts),
                        answers=ex.answers, answers_source=ex.source_answers)


def _converted(data: QATaskData, english: GenTaskData | None = None) -> GenTaskData:
    return GenTaskData(data.task, data.source_lang, data.target_lang, [_example(ex) for ex in data.train],
                       [_example(ex) for ex in data.valid], [_example(ex) for ex in data.test], TEMPLATE,
                       TEMPLATE, english=english)


def as_generation(data: QATaskData) -> GenTaskData:
    """A QA set as answer-generation data, with its English splits for stage 1 (which a set without them,
    ``custom-qa``, takes from each row's English side: a row without one is a one-line error here)."""
    return _converted(data, english=_converted(source_side(data)))
