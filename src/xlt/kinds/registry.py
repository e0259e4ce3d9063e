"""Classification, generation, tagging and extractive QA differ in four places only; each kind answers them.

- which model class to load (a classification head, a causal/seq2seq LM, a per-token head, or a span head);
- how examples become teacher-forced training batches;
- how a trained model is evaluated (argmax + accuracy/macro-F1, greedy decoding + the task's metric,
  one tag per word + entity-level P/R/F1, or the best span over a question's windows + SQuAD EM/F1);
- what the English task model is checked against.
Each evaluation also keeps its predictions, one row per test example (``Evaluation.predictions``: id, gold,
prediction and, for classification, the predicted label's probability), which a run writes to predictions.jsonl.
Each kind's ``predict`` is what its evaluation reads: the model's answers for any examples (``xlt predict`` feeds
it the user's rows; classification: the argmax label and every label's probability).
:mod:`xlt.runs.stage2` is written once against this interface.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

from xlt.config import RunConfig
from xlt.data.examples import AnyTaskData, GenTaskData, QATaskData, TagTaskData, TaskData
from xlt.data.qa_generation import is_generated_qa
from xlt.errors import XltError
from xlt.kinds.extractive_qa import labelled, load_span_model, qa_batch, read_answers
from xlt.kinds.generation import GenBatcher, decode_answers, scored_answers
from xlt.kinds.tagging import read_tags, tag_batch, words
from xlt.kinds.verbalizer import VerbalizerClassifier, make_verbalizer_batch
from xlt.models.architectures import Architecture
from xlt.models.classifier import PooledClassifier
from xlt.models.loading import load_classifier
from xlt.scoring.classification import classification_metrics
from xlt.scoring.entities import tagging_metrics
from xlt.scoring.generation import get_metric
from xlt.scoring.squad import squad_metrics
from xlt.training.batches import make_batch
from xlt.training.loop import predict


@dataclass(frozen=True)
class Evaluation:
    """The metrics of one evaluation and what they were computed from: one row per test example, in test order."""

    metrics: dict
    predictions: list[dict]


def prediction_rows(data: AnyTaskData, golds: list, preds: list, scores: list[float] | None = None) -> list[dict]:
    """One JSON-ready row per test example: its id, the gold answer and the prediction the metric read (tuples
    as lists), and the prediction's probability where the kind has one."""
    def plain(value):
        return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value

    rows = [{"id": ex.id, "gold": plain(gold), "prediction": plain(pred)}
            for ex, gold, pred in zip(data.test, golds, preds)]
    for row, score in zip(rows, scores or []):
        row["score"] = round(score, 6)
    return rows


def _label_and_probabilities(batch, logits) -> list[tuple[int, list[float]]]:
    """The argmax label of each row (as plain prediction takes it) and the softmax probability of every label."""
    best = logits.argmax(-1).tolist()
    return list(zip(best, logits.float().softmax(-1).tolist()))


def _with_row_inputs(to_batch, row_inputs, examples: list):
    batch = to_batch(examples)
    batch.inputs.update(row_inputs(examples))
    return batch


class _Kind:
    """What every kind shares: ``evaluate``, the metrics of :meth:`evaluation` (stage 1 keeps no predictions)."""

    def evaluate(self, cfg: RunConfig, model, tokenizer, data: AnyTaskData, view: str, source: str | None,
                 desc: str) -> dict:
        return self.evaluation(cfg, model, tokenizer, data, view, source, desc).metrics


@dataclass(frozen=True)
class Classification(_Kind):
    name: str = "classification"

    verbalizer: bool = False  # decoders: score label words instead of a classification head
    pooling: str | None = None  # heads: xlt.models.classifier.POOLINGS, or "eos" (mT5's own head)

    def head_modules(self, arch: Architecture) -> list[str] | None:
        """Modules trained in full next to LoRA when the English model is trained with LoRA."""
        return None if self.verbalizer else list(arch.head)

    def load_model(self, path: str, tokenizer, data: TaskData, arch: Architecture):
        if not self.verbalizer:
            if arch.family == "encoder-decoder":  # MT5ForSequenceClassification: the decoder's EOS state
                return load_classifier(path, data.labels, tokenizer.pad_token_id)
            return PooledClassifier.from_pretrained(path, data.labels, self.pooling, arch.family)
        from transformers import AutoModelForCausalLM

        if arch.family != "decoder":
            raise XltError("the verbalizer classifier is for decoder-only models")
        return VerbalizerClassifier(AutoModelForCausalLM.from_pretrained(path, trust_remote_code=False),
                                    data.num_labels)

    def train_batches(self, cfg: RunConfig, tokenizer, model, data: TaskData, view: str, source: str | None):
        if self.verbalizer:
            return partial(make_verbalizer_batch, tokenizer, labels=data.labels, view=view,
                           max_length=cfg.max_length, source=source)
        return partial(make_batch, tokenizer, view=view, max_length=cfg.max_length, source=source)

    def predict(self, cfg: RunConfig, model, tokenizer, data: TaskData, examples: list, view: str,
                source: str | None, desc: str, row_inputs=None) -> list[tuple[int, list[float]]]:
        """Per example: the argmax label and the probability of each label (in ``data.labels`` order).
        ``row_inputs(examples)``: more keyword arguments of each batch's model call, made from its examples (a
        routed bank's per-row ``adapter_names``, xlt.runs.adapter_bank)."""
        to_batch = self.train_batches(cfg, tokenizer, model, data, view, source)
        if row_inputs is not None:
            to_batch = partial(_with_row_inputs, to_batch, row_inputs)
        return predict(model, examples, to_batch, bf16=cfg.bf16, show_progress=cfg.show_progress, desc=desc,
                       read=_label_and_probabilities)

    def evaluation(self, cfg: RunConfig, model, tokenizer, data: TaskData, view: str, source: str | None,
                   desc: str) -> Evaluation:
        scored = self.predict(cfg, model, tokenizer, data, data.test, view, source, desc)
        preds, golds = [label for label, _ in scored], [ex.label for ex in data.test]
        return Evaluation(classification_metrics(preds, golds, data.num_labels),
                          prediction_rows(data, [data.labels[g] for g in golds], [data.labels[p] for p in preds],
                                          [probabilities[label] for label, probabilities in scored]))


@dataclass(frozen=True)
class Generation(_Kind):
    name: str = "generation"

    def head_modules(self, arch: Architecture) -> list[str] | None:
        return None

    @staticmethod
    def check_family(task: str, family: str) -> None:
        """Refuse encoders (run before any model loads, and again where the model loads)."""
        if family == "encoder":
            raise XltError(f"task {task!r} generates text: use a decoder or encoder-decoder model")

    def load_model(self, path: str, tokenizer, data: GenTaskData, arch: Architecture):
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

        self.check_family(data.task, arch.family)
        auto = AutoModelForSeq2SeqLM if arch.family == "encoder-decoder" else AutoModelForCausalLM
        model = auto.from_pretrained(path, trust_remote_code=False)
        model.generation_config.do_sample = False  # greedy decoding, whatever the checkpoint suggests
        return model

    def batcher(self, cfg: RunConfig, tokenizer, model, data: GenTaskData) -> GenBatcher:
        seq2seq = model.config.is_encoder_decoder
        start = getattr(model.config, "decoder_start_token_id", None)
        if is_generated_qa(data):  # QA: --qa-max-length holds the whole prompt, paragraph cut to fit
            return GenBatcher(tokenizer, seq2seq, cfg.qa_max_length, cfg.max_answer_length, data.template, start)
        return GenBatcher(tokenizer, seq2seq, cfg.max_length, cfg.max_answer_length, data.template, start,
                          instruction_extra=True)  # --max-length: the text's tokens, the instruction on top

    def train_batches(self, cfg: RunConfig, tokenizer, model, data: GenTaskData, view: str, source: str | None):
        batcher = self.batcher(cfg, tokenizer, model, data)
        return lambda examples: batcher.batch(examples, view, source, teacher_forced=True)

    def predict(self, cfg: RunConfig, model, tokenizer, data: GenTaskData, examples: list, view: str,
                source: str | None, desc: str) -> list[str]:
        """Per example: the decoded answer."""
        batcher = self.batcher(cfg, tokenizer, model, data)
        return decode_answers(model, batcher, examples, view, source, max_new_tokens=cfg.max_answer_length,
                              bf16=cfg.bf16, show_progress=cfg.show_progress, desc=desc, num_beams=cfg.num_beams)

    def evaluation(self, cfg: RunConfig, model, tokenizer, data: GenTaskData, view: str, source: str | None,
                   desc: str) -> Evaluation:
        preds = self.predict(cfg, model, tokenizer, data, data.test, view, source, desc)
        lang = data.source_lang if view == "source" else data.target_lang  # the language of the gold answers
        golds = [scored_answers(ex, view) for ex in data.test]
        return Evaluation(get_metric(data.metric, lang)(preds, golds), prediction_rows(data, golds, preds))


@dataclass(frozen=True)
class Tagging(_Kind):
    """Named-entity tagging on encoders: one IOB2 tag per word (xlt.kinds.tagging)."""

    name: str = "tagging"

    def head_modules(self, arch: Architecture) -> list[str] | None:
        return list(arch.head)

    @staticmethod
    def check_family(task: str, family: str) -> None:
        """Refuse decoders and mT5 (run before any model loads, and again where the model loads)."""
        if family != "encoder":
            raise XltError(f"task {task!r} tags words with an encoder (bert, xlm-roberta, e5-small); "
                           f"xlt has no tagging head for {family} models")

    def load_model(self, path: str, tokenizer, data: TagTaskData, arch: Architecture):
        from xlt.models.token_classifier import load_token_classifier

        self.check_family(data.task, arch.family)
        return load_token_classifier(path, data.labels)

    def train_batches(self, cfg: RunConfig, tokenizer, model, data: TagTaskData, view: str, source: str | None):
        return partial(tag_batch, tokenizer, labels=data.labels, view=view, max_length=cfg.max_length, source=source)

    def predict(self, cfg: RunConfig, model, tokenizer, data: TagTaskData, examples: list, view: str,
                source: str | None, desc: str) -> list[list[str]]:
        """Per example: one tag per word of the sentence the view reads."""
        to_batch = self.train_batches(cfg, tokenizer, model, data, view, source)
        return predict(model, examples, to_batch, bf16=cfg.bf16, show_progress=cfg.show_progress, desc=desc,
                       read=read_tags(data.labels))

    def evaluation(self, cfg: RunConfig, model, tokenizer, data: TagTaskData, view: str, source: str | None,
                   desc: str) -> Evaluation:
        """Entity-level micro P/R/F1 against the tags of the sentence the view reads (English for translate-test)."""
        preds = self.predict(cfg, model, tokenizer, data, data.test, view, source, desc)
        golds = [list(words(ex, view)[1]) for ex in data.test]
        return Evaluation(tagging_metrics(preds, golds), prediction_rows(data, golds, preds))


@dataclass(frozen=True)
class QA(_Kind):
    """Extractive question answering on encoders: a span head over question + paragraph windows (xlt.kinds.extractive_qa).
    Decoders and mT5 generate the answer instead (xlt.data.qa_generation: the set becomes GenTaskData)."""

    name: str = "qa"

    def head_modules(self, arch: Architecture) -> list[str] | None:
        return list(arch.qa_head)

    @staticmethod
    def check_family(task: str, family: str) -> None:
        """Refuse decoders and mT5 (run before any model loads, and again where the model loads)."""
        if family != "encoder":
            raise XltError(f"task {task!r} extracts answer spans with an encoder (bert, xlm-roberta, e5-small); "
                           f"xlt has no span head for {family} models")

    def load_model(self, path: str, tokenizer, data: QATaskData, arch: Architecture):
        self.check_family(data.task, arch.family)
        return load_span_model(path)

    def train_batches(self, cfg: RunConfig, tokenizer, model, data: QATaskData, view: str, source: str | None):
        return partial(qa_batch, tokenizer, view=view, max_length=cfg.qa_max_length, stride=cfg.doc_stride,
                       source=source)

    def predict(self, cfg: RunConfig, model, tokenizer, data: QATaskData, examples: list, view: str,
                source: str | None, desc: str) -> list[str]:
        """Per question: the answer text, the best span over its paragraph's windows."""
        to_batch = self.train_batches(cfg, tokenizer, model, data, view, source)
        return predict(model, examples, to_batch, batch_size=cfg.batch_size, bf16=cfg.bf16,
                       show_progress=cfg.show_progress, desc=desc, read=read_answers(cfg.max_answer_length),
                       max_rows=cfg.qa_windows_per_pass)

    def evaluation(self, cfg: RunConfig, model, tokenizer, data: QATaskData, view: str, source: str | None,
                   desc: str) -> Evaluation:
        """SQuAD v1.1 EM/F1 against the answers of the side the view reads (English for translate-test),
        normalised for that side's language."""
        preds = self.predict(cfg, model, tokenizer, data, data.test, view, source, desc)
        lang = data.source_lang if view == "source" else data.target_lang
        golds = [list(labelled(ex, view)[2]) for ex in data.test]
        return Evaluation(squad_metrics(preds, golds, lang), prediction_rows(data, golds, preds))


def task_architecture(kind, arch: Architecture) -> Architecture:
    """The architecture row whose ``head`` is the kind's head module (what ``--train-head`` and stage 1's
    LoRA ``modules_to_save`` name): ``qa_outputs`` for QA, the table's ``head`` otherwise."""
    return replace(arch, head=arch.qa_head) if isinstance(kind, QA) else arch


def kind_of(data: AnyTaskData, cfg: RunConfig | None = None) -> Classification | Generation | Tagging | QA:
    if isinstance(data, QATaskData):
        return QA()
    if isinstance(data, GenTaskData):
        return Generation()
    if isinstance(data, TagTaskData):
        return Tagging()
    if cfg is None:
        return Classification()
    return Classification(verbalizer=cfg.decoder_classifier == "verbalizer", pooling=cfg.pooling)
