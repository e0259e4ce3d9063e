"""The in-memory form every task loader returns, so training code never sees file formats.

Classification tasks return :class:`TaskData` of :class:`Example`; generation tasks (slot filling,
later MT and JSON NER) return :class:`GenTaskData` of :class:`GenExample`, which names the prompt
template and metric to use (xlt.scoring.generation) so the trainer needs no per-task code; tagging
tasks (NER on encoders) return :class:`TagTaskData` of :class:`TagExample`; extractive QA tasks
return :class:`QATaskData` of :class:`QAExample`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xlt.errors import XltError

if TYPE_CHECKING:
    from xlt.data.prompts import Template


@dataclass(frozen=True)
class Example:
    """One labelled example; ``source`` is the same example in the source language when known,
    which is what translation-based and alignment methods need."""

    target: tuple[str, ...]  # the example in the target language: 1 segment, or (premise, hypothesis)
    source: tuple[str, ...] | None  # the same example in the source language (English), None if unknown
    label: int
    id: str = ""


@dataclass
class TaskData:
    """All splits of one task for one (source, target) language pair."""

    task: str
    labels: tuple[str, ...]  # index = label id
    source_lang: str  # canonical codes (xlt.languages)
    target_lang: str
    train: list[Example]
    valid: list[Example]
    test: list[Example]

    @property
    def num_labels(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class GenExample:
    """One input/output pair for a generation task; the ``*_source`` fields are the same example
    in the source language (English), None if unknown, for translation-based and alignment methods."""

    prompt_target: str  # target-language input text (e.g. the utterance), before templating
    prompt_source: str | None  # the same input in the source language
    answer: str  # gold output in the target language
    answer_source: str | None  # gold output of the source-language example
    id: str = ""


@dataclass(frozen=True)
class GenQAExample(GenExample):
    """An extractive question as a generation example (decoders and mT5, xlt.data.qa_generation):
    ``prompt_*`` hold the question and ``answer*`` its first gold answer, what teacher forcing trains
    towards; ``passage_*`` hold the paragraph, which the prompt reads through a window that fits the
    length limit (xlt.kinds.passages), placed over the first answer (``answer_start*``: its character)
    in training; ``answers*`` hold every gold answer, the best of which scores. A subclass, so the other
    generation examples, and the stage-1 cache keys made from their repr, stay as they were."""

    passage_target: str = ""
    passage_source: str | None = None
    answer_start: int = 0
    answer_start_source: int | None = None
    answers: tuple[str, ...] = ()
    answers_source: tuple[str, ...] | None = None


@dataclass
class GenTaskData:
    """All splits of one generation task for one (source, target) language pair."""

    task: str
    source_lang: str  # canonical codes (xlt.languages)
    target_lang: str
    train: list[GenExample]
    valid: list[GenExample]
    test: list[GenExample]
    template: str | Template  # key of xlt.data.prompts.TEMPLATES, or one built for this set (custom-ner)
    metric: str  # key of xlt.scoring.generation.GEN_METRICS
    english: GenTaskData | None = None  # the set's own source-language splits for stage 1 (as TagTaskData's)


@dataclass(frozen=True)
class TagExample:
    """One sentence as words with one IOB2 tag each; ``source_*`` is the same sentence in the source
    language (English) with its own words and tags when the set is parallel, else None."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    source_tokens: tuple[str, ...] | None = None
    source_tags: tuple[str, ...] | None = None
    id: str = ""


@dataclass
class TagTaskData:
    """All splits of one tagging task for one (source, target) language pair.

    ``english`` holds the set's own source-language splits when stage 1 must not be built from the
    examples' source side: a set that is not parallel (PAN-X) has none, and UNER trains its English
    model on another English treebank. :func:`source_side` returns it, and :func:`content_digest`
    covers it, so the stage-1 cache key follows the English files.
    """

    task: str
    labels: tuple[str, ...]  # the tag set, index = label id
    source_lang: str  # canonical codes (xlt.languages)
    target_lang: str
    train: list[TagExample]
    valid: list[TagExample]
    test: list[TagExample]
    english: TagTaskData | None = None

    @property
    def num_labels(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class QAExample:
    """One extractive question: a question, the paragraph it is asked about and the gold answers (each a span
    of ``context``: its text and character start). ``source_*`` is the same question over the parallel
    paragraph in the source language (English) with its own answers when the set is parallel, else None."""

    question: str
    context: str
    answers: tuple[str, ...]
    answer_starts: tuple[int, ...]
    source_question: str | None = None
    source_context: str | None = None
    source_answers: tuple[str, ...] | None = None
    source_answer_starts: tuple[int, ...] | None = None
    id: str = ""

    @property
    def has_source(self) -> bool:
        return self.source_question is not None and self.source_context is not None

    def english(self) -> "QAExample":
        """The source side as an example of its own (what the English model trains and is tested on)."""
        if not self.has_source or not self.source_answers:
            raise XltError(f"example {self.id or '?'} has no source-language text, which this method needs")
        return QAExample(self.source_question, self.source_context, self.source_answers, self.source_answer_starts,
                         self.source_question, self.source_context, self.source_answers, self.source_answer_starts,
                         self.id)


@dataclass
class QATaskData:
    """All splits of one extractive QA task for one (source, target) language pair; ``english`` as for
    :class:`TagTaskData`: the set's own source-language splits, which stage 1 trains and is tested on."""

    task: str
    source_lang: str  # canonical codes (xlt.languages)
    target_lang: str
    train: list[QAExample]
    valid: list[QAExample]
    test: list[QAExample]
    english: QATaskData | None = None


AnyTaskData = TaskData | GenTaskData | TagTaskData | QATaskData


def source_side(data: AnyTaskData) -> AnyTaskData:
    """The same task read entirely in the source language: what the English (stage-1) model trains and
    is tested on. Built from each example's own source side, so a loader can never hand stage 1 the
    target-language text (task ``custom`` once trained its "English" model on ``target_text``); a
    tagging set with its own English splits (``TagTaskData.english``) returns those, which must be in
    the source language."""
    from dataclasses import replace

    if isinstance(data, (TagTaskData, GenTaskData, QATaskData)) and data.english is not None:
        if data.english.target_lang != data.source_lang:
            raise XltError(f"task {data.task} trains its English model on {data.english.target_lang} files; "
                           f"the source language must be {data.english.target_lang}, not {data.source_lang}")
        return data.english

    def english(ex):
        if isinstance(ex, QAExample):
            return ex.english()
        if isinstance(ex, TagExample):
            if ex.source_tokens is None or ex.source_tags is None:
                raise XltError(f"{data.task}: example {ex.id or '?'} has no source-language text for the English model")
            return TagExample(ex.source_tokens, ex.source_tags, ex.source_tokens, ex.source_tags, ex.id)
        if isinstance(ex, Example):
            if ex.source is None:
                raise XltError(f"{data.task}: example {ex.id or '?'} has no source-language text for the English model")
            return Example(ex.source, ex.source, ex.label, ex.id)
        if ex.prompt_source is None or ex.answer_source is None:
            raise XltError(f"{data.task}: example {ex.id or '?'} has no source-language text for the English model")
        return GenExample(ex.prompt_source, ex.prompt_source, ex.answer_source, ex.answer_source, ex.id)

    return replace(data, target_lang=data.source_lang, train=[english(ex) for ex in data.train],
                   valid=[english(ex) for ex in data.valid], test=[english(ex) for ex in data.test])


def content_digest(data: AnyTaskData) -> str:
    """SHA-256 of everything a model trained on ``data`` depends on: the label set, every example of
    every split, in order, and a tagging set's own English splits. Cache keys use it instead of file
    paths, so an edited file is a new key."""
    digest = hashlib.sha256()
    digest.update(repr((data.task, getattr(data, "labels", None), getattr(data, "template", None))).encode())
    for split in (data.train, data.valid, data.test):
        digest.update(b"\x00split")
        for ex in split:
            digest.update(repr(ex).encode())
    english = getattr(data, "english", None)
    if english is not None:
        digest.update(b"\x00english" + content_digest(english).encode())
    return digest.hexdigest()


def heldout_split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(n)`` into sorted (train, held-out) index lists, ``round(n * fraction)`` held out.

    Rows are ranked by SHA-256 of ``"{seed}:{index}"``, so the split depends only on (n, fraction,
    seed): it is the same on every machine and Python version, and the same index set for every
    language of a parallel data set.
    """
    ranked = sorted(range(n), key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).digest())
    held = sorted(ranked[: round(n * fraction)])
    held_set = set(held)
    return [i for i in range(n) if i not in held_set], held
