"""Predicting with a finished run on new text: ``xlt predict`` and, from Python, :class:`Predictor`.

The run's model is rebuilt as ``xlt evaluate`` rebuilds it (:mod:`xlt.runs.rebuild`), and its predictions come
from the kind's own ``predict`` (:mod:`xlt.kinds.registry`), the code its evaluation reads: the user's rows take
the place of the test split, batched the same way. Methods that read the English side of each input (flare,
input-fusion, translate-test, x-mixup) take it from the row (``source_text``, QA's ``source_question`` and
``source_context``) or from a translator (``translator=``, the same translators and cache as ``--source-from
mt:M``). One small dict per input comes back: for classification ``label``, its ``probability`` and every
label's ``probabilities``; for tagging ``tokens`` and ``tags``; for QA the ``answer``; for generation the
``generated`` text; with the row's ``id`` where it has one.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from xlt.data.examples import (AnyTaskData, Example, GenExample, GenQAExample, GenTaskData, QAExample, QATaskData,
                               TagExample, TagTaskData, TaskData)
from xlt.data.formats.user_file import canonical_lang
from xlt.data.prompts import translation_prompt
from xlt.data.registry import get_task
from xlt.errors import XltError
from xlt.io import write_text_atomic
from xlt.kinds.registry import kind_of
from xlt.runs.predict_input import (PAIR_COLUMN, TARGET_COLUMNS, check_output_path, check_rows, check_source,
                                    has_source, row_text, source_column)
from xlt.runs.rebuild import open_finished_run, rebuild_model
from xlt.runs.task_shell import from_shell, read_shell, segments_of

PROBABILITY_DIGITS = 6  # as predictions.jsonl's scores
ROUTE_COLUMNS = ("lang", "lid_confidence", "run")  # what a routed prediction adds (xlt.runs.routes.Route)


class Predictor:
    """A finished run, loaded once, that predicts on new inputs (usable in a notebook: no command line)::

        predictor = Predictor.from_run_dir("runs/flare-ace")
        predictor.predict([{"target_text": "...", "source_text": "..."}])  # or plain strings for lora

    ``predict`` takes strings (each a ``target_text``) or dicts with the columns of ``xlt predict``'s input
    files and returns one dict per input, in order."""

    def __init__(self, run_dir: Path, run, data: AnyTaskData, adapted, tokenizer, translator: str | None = None,
                 translation_cache: str | None = None, show_progress: bool = False, segments: int | None = None):
        self.run_dir, self.data, self.adapted, self.tokenizer = run_dir, data, adapted, tokenizer
        self.segments = segments if segments is not None else segments_of(data)  # texts per classification row
        self.cfg = run.cfg.replace(show_progress=show_progress)
        self.method = run.method
        self.kind = get_task(self.cfg.task).kind  # the rows' kind, as the task's files are read
        self.translator_name = translator
        self.translation_cache = translation_cache if translation_cache is not None else self.cfg.translation_cache
        self._translator = None

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, translator: str | None = None, translation_cache: str | None = None,
                     show_progress: bool = False) -> "Predictor":
        """The run in ``run_dir`` (written by ``xlt train`` or ``xlt merge``), rebuilt as ``xlt evaluate`` does.
        ``translator``: an MT model (or ``lexicon``) that writes the English side of inputs that lack it. An
        exported run reads its task from its ``task_shell.json`` (xlt.runs.task_shell): no data set is needed."""
        run_dir = Path(run_dir)
        run, _, stage1 = open_finished_run(run_dir)
        shell = read_shell(run_dir)
        # the task's data: its kind, labels and prompt template; none of its rows are read
        data = from_shell(shell) if shell is not None else run.data
        segments = shell.get("segments") if shell is not None else None
        adapted, tokenizer = rebuild_model(run_dir, run, stage1, data)
        return cls(run_dir, run, data, adapted, tokenizer, translator, translation_cache, show_progress, segments)

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The label set (tag set for tagging), None for QA and generation."""
        return getattr(self.data, "labels", None)

    @property
    def reads_source(self) -> bool:
        """Whether the run's method reads the English side of each input."""
        return self.method.reads_source

    def predict(self, inputs: list[str | dict], adapter_names: list[str] | None = None) -> list[dict]:
        """One prediction per input (a string is a ``target_text``), in order. ``adapter_names``: classification
        only, the PEFT adapter that answers each input, all in mixed batches (xlt.runs.adapter_bank)."""
        rows = [{"target_text": x} if isinstance(x, str) else dict(x) for x in inputs]
        if not rows:
            return []
        check_rows(rows, self.kind, "input")
        if self.reads_source:
            check_source(rows, self.kind, self.method.name, self.translator_name)
            self._fill_source(rows)
        examples = [self._example(row, number) for number, row in enumerate(rows, 1)]
        routed = {} if adapter_names is None else {"row_inputs": _adapter_names_of(examples, adapter_names)}
        outputs = kind_of(self.data, self.cfg).predict(self.cfg, self.adapted.model, self.tokenizer, self.data,
                                                       examples, self.method.view, self.adapted.source, "predict",
                                                       **routed)
        return [self._output(row, out) for row, out in zip(rows, outputs)]

    def _example(self, row: dict, number: int):
        """The row as an example of the run's data (gold answers empty: nothing is scored)."""
        rid = str(row.get("id") or f"row-{number}")
        if isinstance(self.data, TaskData):
            return Example(self._segments(row, "target"), self._segments(row, "source"), 0, rid)
        if isinstance(self.data, (TagTaskData, GenTaskData)) and self.kind == "tagging":
            words, english = _words(row, "target"), _words(row, "source")
            if isinstance(self.data, GenTaskData):  # JSON entities off encoders (custom-ner)
                return GenExample(" ".join(words), english and " ".join(english), "", None, rid)
            return TagExample(words, ("O",) * len(words), english, english and ("O",) * len(english), rid)
        if self.kind == "extractive-qa":
            q, c = row_text(row, "target_question"), row_text(row, "target_context")
            sq, sc = row.get("source_question") or None, row.get("source_context") or None
            if isinstance(self.data, QATaskData):
                return QAExample(q, c, ("",), (0,), sq, sc, ("",) if sq else None, (0,) if sq else None, rid)
            return GenQAExample(q, sq, "", None, rid, passage_target=c, passage_source=sc, answers=("",))
        text = row_text(row)
        if get_task(self.cfg.task).translation:  # the sentence to translate, in the run's source language
            text = translation_prompt(text, canonical_lang(self.cfg.source_lang), self.data.target_lang)
        return GenExample(text, row.get("source_text") or None, "", None, rid)

    def _segments(self, row: dict, side: str) -> tuple[str, ...] | None:
        """A classification row's text (``side`` target or source) as the task's segments: one, or a pair."""
        first = row.get(f"{side}_text")
        if not first:
            return None
        pair = row.get(source_column(PAIR_COLUMN) if side == "source" else PAIR_COLUMN)
        wanted = self.segments
        segments = (row_text(row, f"{side}_text"),) + ((str(pair),) if pair else ())
        if wanted is not None and side == "target" and len(segments) != wanted:
            need = "a sentence pair: target_text and target_text_pair" if wanted == 2 else "one text per row"
            raise XltError(f"task {self.cfg.task} reads {need}")
        return segments

    def _output(self, row: dict, out) -> dict:
        """The small dict of one prediction."""
        head = {"id": str(row["id"])} if row.get("id") not in (None, "") else {}
        if self.kind == "classification":
            label, probabilities = out
            text = row_text(row) if not row.get(PAIR_COLUMN) else [row_text(row), row_text(row, PAIR_COLUMN)]
            rounded = {name: round(p, PROBABILITY_DIGITS) for name, p in zip(self.labels, probabilities)}
            return {**head, "text": text, "label": self.labels[label], "probability": rounded[self.labels[label]],
                    "probabilities": rounded}
        if self.kind == "tagging":  # translate-test tags the English words
            words = list(_words(row, "source" if self.method.view == "source" else "target"))
            return {**head, "tokens": words, "tags": list(out)} if isinstance(out, list) else \
                {**head, "tokens": words, "generated": out}
        if self.kind == "extractive-qa":
            return {**head, "question": row_text(row, "target_question"), "answer": out}
        return {**head, "text": row_text(row), "generated": out}

    def _fill_source(self, rows: list[dict]) -> None:
        """The English side of rows that lack it, machine-translated (each distinct text once, through the
        translation cache); paragraphs sentence by sentence, as ``--source-from mt:M`` translates them."""
        lacking = [row for row in rows if not has_source(row, self.kind)]
        if not lacking:
            return
        from xlt.mt.cache import TranslationCache, translate_cached
        from xlt.mt.translated_data import split_sentences

        texts = [_texts(row, self.kind) for row in lacking]
        pieces = {(i, column): split_sentences(text) if column == "target_context" else [text]
                  for i, row_texts in enumerate(texts) for column, text in row_texts.items()}
        cache = TranslationCache(self.translation_cache)
        try:
            done = iter(translate_cached(self._loaded_translator(), [p for parts in pieces.values() for p in parts],
                                         self.cfg.target_lang, self.cfg.source_text_lang, cache).translations)
        finally:
            cache.close()
        for (i, column), parts in pieces.items():
            english = " ".join(next(done) for _ in parts)
            if column == "target_tokens":
                lacking[i]["source_tokens"] = english.split()
            else:
                lacking[i][source_column(column)] = english

    def _loaded_translator(self):
        """The translator, loaded on first use with its language pair checked."""
        from xlt.mt.factory import load_translator

        if self._translator is None:
            cfg = self.cfg
            self._translator = load_translator(self.translator_name, data_dir=cfg.data_dir,
                                               batch_size=cfg.mt_batch_size, num_beams=cfg.mt_beams)
            self._translator.check_pair(cfg.target_lang, cfg.source_text_lang)
        return self._translator


def _adapter_names_of(examples: list, names: list[str]):
    """``row_inputs`` for the kind's predict: the adapter of each example of a batch (examples are told apart by
    identity: the user's ids need not be unique)."""
    if len(names) != len(examples):
        raise ValueError(f"{len(names)} adapter names for {len(examples)} inputs")
    by_example = {id(example): name for example, name in zip(examples, names)}
    return lambda batch: {"adapter_names": [by_example[id(example)] for example in batch]}


def _texts(row: dict, kind: str) -> dict[str, str]:
    """The target texts of a row that a translation gives an English side to, by column (a tagging row's words
    joined by spaces)."""
    if kind == "tagging" and isinstance(row.get("target_tokens"), list):
        return {"target_tokens": " ".join(map(str, row["target_tokens"]))}
    return {column: row_text(row, column) for column in TARGET_COLUMNS[kind] + (PAIR_COLUMN,) if row.get(column)}


def _words(row: dict, side: str) -> tuple[str, ...] | None:
    """A tagging row's words (``side`` target or source): its ``*_tokens`` list, else its text split on white
    space."""
    tokens = row.get(f"{side}_tokens")
    if isinstance(tokens, list):
        return tuple(str(t) for t in tokens) or None
    text = row.get(f"{side}_text")
    return tuple(str(text).split()) or None if text else None


def write_predictions_file(path: str | Path, rows: list[dict], overwrite: bool = False) -> None:
    """The predictions as JSON Lines, or (classification, ``.csv``) one column per label's probability; written
    atomically, and never over an existing file unless ``overwrite``."""
    path = check_output_path(path, overwrite)
    if path.suffix.lower() == ".csv":
        if not rows or "probabilities" not in rows[0]:
            raise XltError(f"{path}: CSV output is for classification; write .jsonl")
        write_text_atomic(path, _csv_text(rows))
    else:
        write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _csv_text(rows: list[dict]) -> str:
    labels = list(rows[0]["probabilities"])
    routed = [column for column in ROUTE_COLUMNS if any(column in row for row in rows)]  # xlt.runs.routing's
    columns = (["id"] if "id" in rows[0] else []) + ["text", "label", "probability"] + \
        [f"probability_{label}" for label in labels] + routed
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        text = row["text"] if isinstance(row["text"], str) else " ||| ".join(row["text"])
        writer.writerow(([row["id"]] if "id" in row else []) + [text, row["label"], row["probability"]] +
                        [row["probabilities"][label] for label in labels] + [row.get(c, "") for c in routed])
    return out.getvalue()
