"""Extractive QA data: tasks ``mlqa`` (MLQA), ``tydiqa`` (TyDiQA-GoldP) and ``custom-qa`` (the user's JSONL).

MLQA and TyDiQA come as SQuAD v1.1 JSON (``data -> paragraphs -> qas``), one file per language, and only
their dev split is at hand, so, as for UNER, each file is split in two halves by :func:`in_test`, **by
paragraph** (a hash of the paragraph text with ``SPLIT_SEED``): all questions about one paragraph fall on
the same side, so no test paragraph is ever read in training.

- ``mlqa`` (``mlqa/dev-context-<xx>-question-<xx>.json``, parallel): every target question id is also an
  English question id, the same question over the parallel English paragraph; each target example carries
  that English question, paragraph and answer. The split is decided by the *English* paragraph, so it is the
  same for every target language. Stage 2: ``train`` / ``test`` = the target questions on each side, except
  that a target paragraph whose questions pair with English paragraphs on both sides (MLQA's paragraphs differ
  in extent across languages) trains with all its questions, so no target paragraph is on both sides either.
  Stage 1 (``QATaskData.english``): the English file split the same way (about half of its 1,148 questions
  to train on, the rest to test on), one English model for every target language, which never trains on
  the English version of a target test question.
- ``tydiqa`` (``tydiqa-goldp/tydiqa.goldp.<xx>.dev.json``, not parallel): a language with a training file
  (``tydiqa-goldp/train/tydiqa.goldp.<xx>.train.json``: English, Korean and Swahili in the shared copy) trains on
  it and is tested on its whole dev file; a language without one has its dev file split by its own paragraphs.
  Stage 1 reads English the same way (3,696 training questions, the 440 dev questions to test on). No example
  has a source side, so methods that read one are refused (its row in xlt.data.registry says parallel=False).
- ``custom-qa``: JSON Lines (``--train-file``, ``--test-file``), one question per line, with
  ``target_context``, ``target_question``, ``answers`` and optionally ``source_context``,
  ``source_question``, ``source_answers`` and ``id``. An answers value is a list of SQuAD answer objects
  (``{"text": ..., "answer_start": ...}``), a list of strings or one string; an answer without a start is
  the first occurrence of its text in the paragraph. The English model (stage 1) trains and is tested on
  the source side, so a run needs the source columns on every line (one-line error where one is missing).

A question whose answer is empty or does not sit at its ``answer_start`` in the paragraph is an error naming
the file and question: a copy of a set with the answers withheld (every answer ``""`` at 0) can neither
train nor score a model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

from xlt.data.examples import QAExample, QATaskData
from xlt.data.formats.user_file import canonical_lang, check_files, check_is_file, read_jsonl, read_text, row_id
from xlt.errors import XltError, echo
from xlt.languages import canonical_code, dataset_name

TEST_FRACTION = 0.5
SPLIT_SEED = 2020
REQUIRED = ("target_context", "target_question", "answers")
OPTIONAL = ("source_context", "source_question", "source_answers", "id")


def in_test(paragraph: str, fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED) -> bool:
    """Whether the questions about ``paragraph`` are test questions: a hash of its text, so the side of a
    paragraph never depends on which other paragraphs are in the file."""
    digest = hashlib.sha256(f"{seed}:{paragraph}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def read_squad(path: Path) -> list[QAExample]:
    """The questions of one SQuAD v1.1 JSON file, checked: every answer non-empty and where it says it is."""
    check_is_file(path)
    try:
        articles = json.loads(read_text(path))["data"]
        examples, empty = [], 0
        for article in articles:
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                for qa in paragraph["qas"]:
                    answers = [(a["text"], int(a["answer_start"])) for a in qa["answers"]]
                    if not answers or any(not text.strip() for text, _ in answers):
                        empty += 1
                        continue
                    for text, start in answers:
                        if start < 0 or context[start : start + len(text)] != text:  # -3 would slice from the end
                            raise XltError(f"{path}: question {qa['id']}: answer {text!r} is not at character "
                                           f"{start} of its paragraph")
                    examples.append(QAExample(qa["question"], context, tuple(t for t, _ in answers),
                                              tuple(s for _, s in answers), id=str(qa["id"])))
    except (ValueError, KeyError, TypeError) as err:
        raise XltError(f"{path} is not SQuAD v1.1 JSON (data -> paragraphs -> qas): {type(err).__name__} {err}") from None
    if empty:
        raise XltError(f"{path}: {empty} of {empty + len(examples)} questions have an empty gold answer; this copy "
                       "of the set carries no answers to train on or score against")
    return examples


def _split(examples: list[QAExample], paragraph) -> tuple[list[QAExample], list[QAExample]]:
    """(train, test): by ``in_test`` of each example's ``paragraph(ex)``; None means train."""
    test = [in_test(p) if (p := paragraph(ex)) is not None else False for ex in examples]
    return [ex for ex, t in zip(examples, test) if not t], [ex for ex, t in zip(examples, test) if t]


def _with_source(ex: QAExample, en: QAExample) -> QAExample:
    return replace(ex, source_question=en.question, source_context=en.context, source_answers=en.answers,
                   source_answer_starts=en.answer_starts)


def _check_source(task: str, source: str) -> None:
    if source != "en":
        raise XltError(f"task {task} trains its English model on its English file; the source language must be en, "
                       f"not {source}")


def mlqa_path(root: Path, lang: str) -> Path:
    code = dataset_name("mlqa", lang)
    return root / "mlqa" / f"dev-context-{code}-question-{code}.json"


def load_mlqa(root: Path, target_lang: str, source_lang: str = "en") -> QATaskData:
    """MLQA for ``target_lang``, each question with its English version (by id), and the English data."""
    for lang in (target_lang, source_lang):
        dataset_name("mlqa", lang)  # unknown language -> XltError listing MLQA's
    target, source = canonical_code(target_lang), canonical_code(source_lang)
    _check_source("mlqa", source)
    english = read_squad(mlqa_path(root, "en"))
    by_id = {ex.id: ex for ex in english}
    rows = english if target == "en" else read_squad(mlqa_path(root, target))
    paired = []
    for ex in rows:
        if ex.id not in by_id:
            raise XltError(f"misaligned mlqa files: question {ex.id} of {mlqa_path(root, target)} is not in "
                           f"{mlqa_path(root, 'en')}")
        paired.append(_with_source(ex, by_id[ex.id]))
    en_train, en_test = _split([_with_source(ex, ex) for ex in english], lambda ex: ex.context)
    # a target paragraph may pair with English paragraphs on both sides: all its questions train then
    training = {ex.context for ex in paired if not in_test(ex.source_context)}
    train, test = _split(paired, lambda ex: ex.source_context if ex.context not in training else None)
    return QATaskData("mlqa", source, target, train, [], test,
                      english=QATaskData("mlqa", "en", "en", en_train, [], en_test))


def tydiqa_path(root: Path, lang: str, split: str = "dev") -> Path:
    folder = root / "tydiqa-goldp" / ("train" if split == "train" else "")
    return folder / f"tydiqa.goldp.{dataset_name('tydiqa', lang)}.{split}.json"


def tydiqa_splits(root: Path, lang: str) -> tuple[list[QAExample], list[QAExample]]:
    """(train, test) of one TyDiQA language: its training file and its whole dev file where it has a training
    file, else its dev file split by paragraph (:func:`in_test`)."""
    dev = read_squad(tydiqa_path(root, lang))
    train_file = tydiqa_path(root, lang, "train")
    if train_file.is_file():
        return read_squad(train_file), dev
    return _split(dev, lambda ex: ex.context)


def load_tydiqa(root: Path, target_lang: str, source_lang: str = "en") -> QATaskData:
    """TyDiQA-GoldP for ``target_lang`` (no source side) and the English data for the English model."""
    for lang in (target_lang, source_lang):
        dataset_name("tydiqa", lang)
    target, source = canonical_code(target_lang), canonical_code(source_lang)
    _check_source("tydiqa", source)
    en_train, en_test = tydiqa_splits(root, "en")
    train, test = (en_train, en_test) if target == "en" else tydiqa_splits(root, target)
    english = QATaskData("tydiqa", "en", "en", [_with_source(ex, ex) for ex in en_train], [],
                         [_with_source(ex, ex) for ex in en_test])
    return QATaskData("tydiqa", source, target, train, [], test, english=english)


# --- custom-qa -------------------------------------------------------------------------------------

def _answers(value, context: str, where: str, column: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(texts, starts) of one answers value: answer objects, strings, or one string."""
    items = [value] if isinstance(value, (str, dict)) else value
    if not isinstance(items, list) or not items:
        raise XltError(f"{where}: {column} must be a non-empty list of answers (objects with text and answer_start, "
                       f"or strings), got {json.dumps(value)[:60]}")
    texts, starts = [], []
    for item in items:
        text, start = (item.get("text"), item.get("answer_start")) if isinstance(item, dict) else (item, None)
        if not isinstance(text, str) or not text.strip():
            raise XltError(f"{where}: {column} holds an empty answer or one without text")
        if start is None:
            start = context.find(text)
            if start < 0:
                raise XltError(f"{where}: {column} answer {text!r} is not in the paragraph")
        elif not isinstance(start, int) or isinstance(start, bool) or start < 0:  # -3 would slice from the end
            raise XltError(f"{where}: {column} answer {echo(text)} has answer_start {echo(start)}; it must be the "
                           "character where the answer begins in the paragraph (>= 0)")
        elif context[start : start + len(text)] != text:
            raise XltError(f"{where}: {column} answer {text!r} is not at character {start!r} of the paragraph")
        texts.append(text)
        starts.append(start)
    return tuple(texts), tuple(starts)


def read_custom_qa(path: str | Path) -> list[QAExample]:
    """The questions of one custom-qa JSONL file, checked line by line."""
    path = Path(path)
    examples = []
    for line_no, obj in read_jsonl(path, "custom-qa", REQUIRED):
        where = f"{path}: line {line_no}"
        for column in ("target_context", "target_question", "source_context", "source_question"):
            if column in obj and (not isinstance(obj[column], str) or not obj[column].strip()):
                raise XltError(f"{where}: {column} must be non-empty text")
        has_source = [c for c in ("source_context", "source_question") if c in obj]
        if len(has_source) == 1 or ("source_answers" in obj and not has_source):
            raise XltError(f"{where}: the source side needs source_context and source_question together "
                           f"(found only {', '.join(c for c in OPTIONAL[:3] if c in obj)})")
        answers, starts = _answers(obj["answers"], obj["target_context"], where, "answers")
        source_answers = source_starts = None
        if "source_answers" in obj:
            source_answers, source_starts = _answers(obj["source_answers"], obj["source_context"], where,
                                                     "source_answers")
        examples.append(QAExample(obj["target_question"], obj["target_context"], answers, starts,
                                  obj.get("source_question"), obj.get("source_context"), source_answers,
                                  source_starts, row_id(obj.get("id"), line_no, "line")))
    if not examples:
        raise XltError(f"{path}: no rows")
    return examples


def load_custom_qa(train_file, test_file, target_lang: str, source_lang: str = "en") -> QATaskData:
    check_files("custom-qa", train_file, test_file)
    return QATaskData("custom-qa", canonical_lang(source_lang), canonical_lang(target_lang),
                      read_custom_qa(train_file), [], read_custom_qa(test_file))
