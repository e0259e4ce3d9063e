"""Extractive QA (tasks mlqa, tydiqa, custom-qa) on encoders: windows and span labels, the best span read
back to characters, the readers on the real files, custom-qa's checks, and runs of every method. Decoders
and mT5 (answer generation): tests/test_qa_generation.py."""

import json
from functools import partial

import pytest
import torch
from accelerate import Accelerator
from helpers import cli_error
from transformers import AutoModelForQuestionAnswering

from xlt.cli import main
from xlt.config import RunConfig
from xlt.data.examples import QAExample, QATaskData, source_side
from xlt.data.registry import load_task
from xlt.data.sets.question_answering import in_test, read_custom_qa
from xlt.errors import XltError
from xlt.kinds.extractive_qa import answer_tokens, best_spans, qa_batch, question_cap, read_answers, window_stride
from xlt.kinds.registry import QA, kind_of, task_architecture
from xlt.methods.adapters import AdapterSettings, attach
from xlt.methods.table import get_method
from xlt.models.architectures import architecture_for
from xlt.models.loading import load_tokenizer, resolve_model
from xlt.training.loop import TaskStep, TrainSettings, backward, predict, task_steps, train


@pytest.fixture(scope="module")
def bert():
    path = resolve_model("tiny-random/bert")
    return path, load_tokenizer(path)


# --- windows and span labels ------------------------------------------------------------------
# tiny bert's vocab is characters (spaces dropped): "[CLS] w h o ? [SEP]" puts the paragraph at token 6, and a
# 24-token window holds 17 paragraph characters; question_cap 10, stride 4 (at most half the room of 11, - 1)

CONTEXT = "alpha beta gamma delta epsilon zeta"  # window 0: chars 0-20 ("alphabetagammadel"), window 1: 15-35


def _one(answer: str) -> QAExample:
    return QAExample("who?", CONTEXT, (answer,), (CONTEXT.index(answer),), id=answer)


def _span_text(batch, w: int) -> str:
    s, e = batch.labels[w].tolist()
    return batch.contexts[batch.samples[w]][batch.offsets[w][s][0]: batch.offsets[w][e][1]]


def test_windows_label_answers_at_the_start_the_end_and_across_a_window_edge(bert):
    _, tokenizer = bert
    assert (question_cap(tokenizer, 24), window_stride(tokenizer, 24, 4), window_stride(tokenizer, 24, 99)) == (10, 4, 4)
    batch = qa_batch(tokenizer, [_one("alpha"), _one("delta"), _one("zeta")], "target", max_length=24, stride=4)
    assert batch.samples == [0, 0, 1, 1, 2, 2] and batch.inputs["input_ids"].shape == (6, 24)
    assert [batch.offsets[w][6][0] for w in range(2)] == [0, 15]  # the chunks start at a and at gamm[a]
    assert batch.context_mask[0].nonzero().flatten().tolist() == list(range(6, 23))
    # alpha: tokens 6-10 of window 0; window 1 does not hold it: CLS (0)
    assert batch.labels[:2].tolist() == [[6, 10], [0, 0]] and _span_text(batch, 0) == "alpha"
    # delta straddles window 0's end (it holds "del"): learned from window 1, which holds it whole
    assert batch.labels[2:4].tolist() == [[0, 0], [7, 11]] and _span_text(batch, 3) == "delta"
    # zeta ends the paragraph: the last paragraph tokens of window 1
    assert batch.labels[4:].tolist() == [[0, 0], [19, 22]] and _span_text(batch, 5) == "zeta"


def test_an_answer_no_window_holds_whole_labels_cls_everywhere(bert):
    _, tokenizer = bert
    batch = qa_batch(tokenizer, [_one("beta gamma delta epsilon")], "target", max_length=24, stride=4)
    assert batch.labels.tolist() == [[0, 0]] * 2  # 21 characters, longer than a window's 17
    offsets = [(0, 0)] * 6 + [(i, i + 1) for i in range(10)]  # a window of paragraph chars 0-9
    context = list(range(6, 16))
    assert answer_tokens(offsets, context, 12, 15) is None  # beyond the window
    assert answer_tokens(offsets, context, 8, 12) is None  # across its end
    assert answer_tokens(offsets, context, 2, 5) == (8, 10)


def test_the_e5_tokenizer_maps_a_span_back_to_the_exact_characters():
    tokenizer = load_tokenizer(resolve_model("e5-small"))  # pieces carry their leading space: read back stripped
    context = "The city Paris lies on the Seine."
    ex = QAExample("Which river?", context, ("Seine",), (27,))
    batch = qa_batch(tokenizer, [ex, QAExample("Which city?", context, ("Paris",), (9,))], "target", 384, 128)
    assert batch.samples == [0, 1]
    assert [_span_text(batch, w).strip() for w in range(2)] == ["Seine", "Paris"]
    s, e = batch.labels[1].tolist()
    logits = torch.zeros(2, batch.inputs["input_ids"].shape[1], 2)
    logits[1, s, 0] = logits[1, e, 1] = 5.0
    assert read_answers(30)(batch, logits)[1] == "Paris"


def test_prediction_takes_the_best_valid_span_over_all_windows(bert):
    _, tokenizer = bert
    batch = qa_batch(tokenizer, [_one("alpha")], "target", max_length=24, stride=4)
    logits = torch.full((2, 24, 2), -100.0)
    logits[:, 1, :] = 1000.0  # a question token (not paragraph): never a span
    logits[:, 0, :] = 900.0  # CLS: never a span
    logits[0, 6, 0], logits[0, 10, 1] = 60.0, 60.0  # "alpha" in window 0: 120
    logits[1, 19, 0], logits[1, 22, 1] = 70.0, 70.0  # "zeta" in window 1: 140, the best valid span
    logits[1, 6, 0] = 80.0  # with zeta's end: 150, but 17 tokens, longer than a 10-token cap
    assert read_answers(10)(batch, logits) == ["zeta"]
    assert read_answers(17)(batch, logits) == ["a delta epsilon zeta"]  # allowed now: chars 15-35
    score, start, end = best_spans(logits[..., 0], logits[..., 1], batch.context_mask, 10)
    assert score.tolist() == [120.0, 140.0] and start.tolist() == [6, 19] and end.tolist() == [10, 22]
    # an end before its start is no span: (2, 1) would score 18, the best valid one is (2, 3)
    score, start, end = best_spans(torch.tensor([[-5.0, -5, 9, -5]]), torch.tensor([[-5.0, 9, -5, 1]]),
                                   torch.ones(1, 4, dtype=torch.bool), 4)
    assert (score.item(), start.item(), end.item()) == (10.0, 2, 3)
    empty = torch.zeros(1, 4, dtype=torch.bool)  # a window without paragraph tokens has no span
    assert best_spans(torch.ones(1, 4), torch.ones(1, 4), empty, 3)[0].tolist() == [float("-inf")]


def test_views_translate_test_input_fusion_and_the_flare_source(bert):
    _, tokenizer = bert
    ex = QAExample("wer?", "Xaver kam. " * 6, ("Xaver",), (0,), "who?", CONTEXT, ("zeta",), (31,), "p1")
    english = qa_batch(tokenizer, [ex], "source", max_length=24, stride=4)  # English question over English text
    assert batch_text(tokenizer, english, 0).startswith("[CLS]who?[SEP]alphabeta")
    assert english.labels.tolist() == [[0, 0], [19, 22]] and _span_text(english, 1) == "zeta"
    fused = qa_batch(tokenizer, [ex], "concat", max_length=24, stride=4)  # 48 tokens: English | target paragraph
    assert fused.inputs["input_ids"].shape[1] == 48
    text = batch_text(tokenizer, fused, 0)
    assert text.startswith("[CLS]who?[SEP]alpha") and "[SEP]wer?[SEP]xaverkam" in text
    first = fused.context_mask[0].nonzero().flatten().tolist()
    assert _span_text(fused, 0) == "Xaver" and fused.labels[0, 0].item() == first[0]  # on the target paragraph
    flare = qa_batch(tokenizer, [ex], "target", max_length=24, stride=4, source="text")
    windows = flare.inputs["input_ids"].shape[0]
    assert windows > 1 and flare.inputs["source_input_ids"].shape == (windows, 24)
    first_english = tokenizer("who?", CONTEXT, truncation="only_second", max_length=24)["input_ids"]
    assert all(row.tolist() == first_english for row in flare.inputs["source_input_ids"])  # each window: the first
    with pytest.raises(XltError, match="example p2 has no source-language text, which this method needs"):
        qa_batch(tokenizer, [QAExample("q", "c d", ("c",), (0,), id="p2")], "concat", 24, 4)


def batch_text(tokenizer, batch, w: int) -> str:
    ids = batch.inputs["input_ids"][w][batch.inputs["attention_mask"][w].bool()].tolist()
    return "".join(t.removeprefix("##") for t in tokenizer.convert_ids_to_tokens(ids))


# --- the readers -------------------------------------------------------------------------------

def test_mlqa_pairs_each_question_with_its_english_version_and_splits_by_paragraph(data_dir):
    data = load_task("mlqa", "german", data_dir=data_dir)
    assert isinstance(data, QATaskData) and (data.source_lang, data.target_lang) == ("en", "de")
    assert (len(data.train), len(data.valid), len(data.test)) == (261, 0, 251)  # 512 questions
    english = source_side(data)
    assert english is data.english and (len(english.train), len(english.test)) == (578, 570)  # 1,148
    ex = next(ex for ex in data.test if ex.id == "eddfee613aab9842d7d58f7156b8364af993d069")
    assert ex.question == "Wen hat Prinzessin Viktoria am Ende geheiratet?"
    assert ex.answers == ("Prinz Adolf zu Schaumburg-Lippe.",) and ex.context[390:422] == ex.answers[0]
    assert ex.source_question == "Who did Princess Viktoria wind up marryingn?"
    assert ex.source_answers == ("Prince Adolf of Schaumburg-Lippe",) and ex.source_answer_starts == (266,)
    by_id = {e.id: e for e in english.train + english.test}
    assert all((e.source_question, e.source_context) == (by_id[e.id].question, by_id[e.id].context)
               for e in data.train + data.test)
    # by paragraph: none on both sides, and the English version of a test question is never a stage-1 question
    assert not {e.context for e in data.train} & {e.context for e in data.test}
    assert not {e.context for e in english.train} & {e.context for e in english.test}
    english_test = {e.id for e in english.test}
    spanish = load_task("mlqa", "es", data_dir=data_dir)
    assert all(e.id in english_test for e in data.test + spanish.test)
    assert all(in_test(e.source_context) for e in data.test)
    assert load_task("mlqa", "zh", data_dir=data_dir).target_lang == "zh"
    with pytest.raises(XltError, match="task mlqa has no language 'fi'"):
        load_task("mlqa", "fi", data_dir=data_dir)


def test_tydiqa_trains_on_the_training_files_and_tests_on_the_whole_dev_file(data_dir):
    data = load_task("tydiqa", "sw", data_dir=data_dir)
    assert (len(data.train), len(data.test)) == (2755, 499)  # train/…sw.train.json; the whole sw dev file
    assert all(ex.id.startswith("swahili-") and not ex.has_source for ex in data.train + data.test)
    ex = data.test[0]
    assert ex.answers[0] and ex.context[ex.answer_starts[0]:].startswith(ex.answers[0])
    english = source_side(data)
    assert (len(english.train), len(english.test)) == (3696, 440)
    assert all(ex.id.startswith("english-") for ex in english.train + english.test)
    assert not {ex.id for ex in english.train} & {ex.id for ex in english.test}
    # Finnish has no training file: its dev file is split by paragraph, as before
    finnish = load_task("tydiqa", "fi", data_dir=data_dir)
    assert len(finnish.train) + len(finnish.test) == 782 and finnish.train and finnish.test
    assert not {ex.context for ex in finnish.train} & {ex.context for ex in finnish.test}
    assert source_side(finnish).train == english.train


def test_a_squad_copy_with_its_answers_withheld_is_refused(tmp_path):
    root = _tydiqa(tmp_path)
    path = root / "tydiqa-goldp" / "tydiqa.goldp.en.dev.json"
    blank = json.loads(path.read_text())
    for article in blank["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                qa["answers"] = [{"text": "", "answer_start": 0}]
    path.write_text(json.dumps(blank))
    with pytest.raises(XltError, match=r"tydiqa.goldp.en.dev.json: 12 of 12 questions have an empty gold answer; "
                                       "this copy of the set carries no answers"):
        load_task("tydiqa", "sw", data_dir=root)


def _squad(paragraphs: list[tuple[str, list[tuple[str, str, str]]]]) -> dict:
    """SQuAD v1.1 JSON of (context, [(id, question, answer)]) paragraphs."""
    return {"version": "1.1", "data": [{"paragraphs": [
        {"context": c, "qas": [{"id": i, "question": q, "answers": [{"text": a, "answer_start": c.index(a)}]}
                               for i, q, a in qas]} for c, qas in paragraphs]}]}


def _tydiqa(root, langs=("en", "sw"), paragraphs: int = 12):
    (root / "tydiqa-goldp").mkdir(parents=True, exist_ok=True)
    for lang in langs:
        rows = [(f"{lang} paragraph {k}: the answer is word{k} here.", [(f"{lang}-{k}", f"what is {k}?", f"word{k}")])
                for k in range(paragraphs)]
        (root / "tydiqa-goldp" / f"tydiqa.goldp.{lang}.dev.json").write_text(json.dumps(_squad(rows)))
    return root


def test_tydiqa_reads_a_language_without_source_side_and_english_for_stage1(tmp_path):
    data = load_task("tydiqa", "swahili", data_dir=_tydiqa(tmp_path))
    assert (data.task, data.source_lang, data.target_lang) == ("tydiqa", "en", "sw")
    assert len(data.train) + len(data.test) == 12 and data.train and data.test
    assert all(ex.id.startswith("sw-") and not ex.has_source for ex in data.train + data.test)
    assert all(in_test(ex.context) for ex in data.test) and not any(in_test(ex.context) for ex in data.train)
    english = source_side(data)
    assert english.target_lang == "en" and all(ex.id.startswith("en-") for ex in english.train + english.test)
    ex = english.train[0]
    assert ex.context[ex.answer_starts[0]:].startswith(ex.answers[0]) and ex.answers[0].startswith("word")


# --- custom-qa ---------------------------------------------------------------------------------

def _jsonl(path, rows: list[dict]):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


GOOD = {"target_context": "Paris ist die Hauptstadt.", "target_question": "Was ist die Hauptstadt?",
        "answers": [{"text": "Paris", "answer_start": 0}], "source_context": "The capital is Paris.",
        "source_question": "What is the capital?", "source_answers": ["Paris"]}


def test_custom_qa_reads_answer_objects_strings_and_the_source_side(tmp_path):
    rows = [GOOD, {"target_context": "Er kam 1890 an.", "target_question": "Wann?", "answers": "1890", "id": "q7"}]
    examples = read_custom_qa(_jsonl(tmp_path / "train.jsonl", rows))
    assert examples[0] == QAExample("Was ist die Hauptstadt?", "Paris ist die Hauptstadt.", ("Paris",), (0,),
                                    "What is the capital?", "The capital is Paris.", ("Paris",), (15,), "line-1")
    assert examples[1] == QAExample("Wann?", "Er kam 1890 an.", ("1890",), (7,), id="q7")
    data = load_task("custom-qa", "de", train_file=tmp_path / "train.jsonl", test_file=tmp_path / "train.jsonl")
    assert isinstance(data, QATaskData) and data.target_lang == "de" and len(data.test) == 2
    with pytest.raises(XltError, match="example q7 has no source-language text"):
        source_side(data)  # the English model needs the source side of every row


@pytest.mark.parametrize("row, message", [
    ({k: v for k, v in GOOD.items() if k != "answers"},
     "line 1 has no column 'answers' (custom-qa needs target_context, target_question, answers)"),
    ({k: v for k, v in GOOD.items() if k != "target_question"}, "line 1 has no column 'target_question'"),
    ({**GOOD, "answers": [{"text": "Paris", "answer_start": 3}]},
     "line 1: answers answer 'Paris' is not at character 3 of the paragraph"),
    ({**GOOD, "answers": ["Rom"]}, "line 1: answers answer 'Rom' is not in the paragraph"),
    ({**GOOD, "answers": []}, "line 1: answers must be a non-empty list of answers"),
    ({**GOOD, "answers": [""]}, "line 1: answers holds an empty answer"),
    ({k: v for k, v in GOOD.items() if k != "source_question"},
     "line 1: the source side needs source_context and source_question together"),
    ({**GOOD, "source_answers": ["Berlin"]}, "line 1: source_answers answer 'Berlin' is not in the paragraph"),
    ({**GOOD, "target_context": 5}, "line 1: target_context must be non-empty text"),
])
def test_custom_qa_errors_name_the_file_line_and_column(tmp_path, row, message):
    path = _jsonl(tmp_path / "t.jsonl", [row])
    with pytest.raises(XltError, match=f"t.jsonl: {message}".replace("(", r"\(").replace(")", r"\)")):
        read_custom_qa(path)


def test_custom_qa_refuses_csv_and_empty_files(tmp_path):
    (tmp_path / "t.csv").write_text("target_context\n")
    with pytest.raises(XltError, match=r"t.csv: task custom-qa reads JSON Lines \(.jsonl\), not '.csv'"):
        read_custom_qa(tmp_path / "t.csv")
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(XltError, match="e.jsonl: no rows"):
        read_custom_qa(tmp_path / "e.jsonl")


# --- the model and its head ----------------------------------------------------------------------

def test_the_span_head_is_what_train_head_and_a_training_step_reach(bert):
    path, tokenizer = bert
    ex = QAExample("who?", CONTEXT, ("zeta",), (31,), "who?", CONTEXT, ("zeta",), (31,), "z")
    data = QATaskData("mlqa", "en", "de", [ex] * 4, [], [ex])
    kind = kind_of(data)
    arch = task_architecture(kind, architecture_for("bert"))
    assert isinstance(kind, QA) and arch.head == ("qa_outputs",) and kind.head_modules(arch) == ["qa_outputs"]
    model = kind.load_model(path, tokenizer, data, arch)
    assert type(model).__name__ == "BertForQuestionAnswering" and model.qa_outputs.out_features == 2
    adapted = attach(model, get_method("flare"), arch, AdapterSettings(r=4, alpha=8, dropout=0.0, fusion="add",
                                                                     train_head=True))
    before = {n: p.detach().clone() for n, p in adapted.model.named_parameters()}
    to_batch = kind.train_batches(RunConfig(task="mlqa", qa_max_length=24, doc_stride=4), tokenizer, adapted.model,
                                  data, "target", "text")
    train(adapted.model, task_steps(data.train, to_batch, 2, 1, seed=0),
          TrainSettings(epochs=1, lr=1e-2, batch_size=2, show_progress=False))
    changed = {n for n, p in adapted.model.named_parameters() if not torch.equal(p, before[n])}
    assert any("qa_outputs" in n and "modules_to_save" in n for n in changed)
    assert all("lora_" in n or "modules_to_save" in n for n in changed)


def test_a_batch_of_many_windows_runs_in_passes_with_the_loss_gradient_and_logits_of_one_call(bert):
    path, tokenizer = bert
    examples = [QAExample("who?", CONTEXT, (a,), (CONTEXT.index(a),), "who?", CONTEXT, (a,), (CONTEXT.index(a),), a)
                for a in ("alpha", "delta", "zeta")]  # 2 windows each, an English side for FLARE's source
    to_batch = partial(qa_batch, tokenizer, view="target", max_length=24, stride=4)
    batch = qa_batch(tokenizer, examples, "target", max_length=24, stride=4, source="text")
    passes = batch.passes(4)
    assert [p.samples for p, _ in passes] == [[0, 0, 1, 1], [2, 2]] and [w for _, w in passes] == [4 / 6, 2 / 6]
    for key, value in batch.inputs.items():  # source_* rows are cut with their windows
        assert torch.equal(torch.cat([p.inputs[key] for p, _ in passes]), value), key
    assert torch.equal(torch.cat([p.labels for p, _ in passes]), batch.labels)
    assert batch.passes(6) == [(batch, 1.0)] and batch.passes(None) == [(batch, 1.0)]
    zero = qa_batch(tokenizer, examples, "target", max_length=24, stride=4, source="zero")
    assert [p.inputs["zero_source"] for p, _ in zero.passes(5)] == [True, True]

    # no dropout: a step in passes has the gradient of one call (each pass weighted by its windows)
    model = AutoModelForQuestionAnswering.from_pretrained(path, hidden_dropout_prob=0.0,
                                                          attention_probs_dropout_prob=0.0)
    accelerator, results = Accelerator(cpu=True), {}
    for max_rows in (None, 1, 4):
        model.zero_grad()
        step = TaskStep([0, 1, 2], examples, to_batch, max_rows)(model, accelerator)
        assert len(step) == {None: 1, 1: 6, 4: 2}[max_rows]
        loss = backward(step, model, accelerator)
        results[max_rows] = loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    loss, grads = results[None]
    assert loss.item() > 0 and len(grads) == len(list(model.parameters()))
    for max_rows in (1, 4):
        assert torch.allclose(results[max_rows][0], loss, atol=1e-6)
        for name, grad in grads.items():
            assert torch.allclose(results[max_rows][1][name], grad, atol=1e-6, rtol=1e-4), (max_rows, name)

    def window_logits(b, logits):  # per question, the logits of its windows
        return [logits[[w for w, s in enumerate(b.samples) if s == q]] for q in range(b.questions)]

    whole = predict(model, examples, to_batch, show_progress=False, read=window_logits)
    cut = predict(model, examples, to_batch, show_progress=False, read=window_logits, max_rows=1)
    assert [x.shape for x in whole] == [(2, 24, 2)] * 3
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(whole, cut))


# --- runs from the CLI -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stage1_root(tmp_path_factory):
    return tmp_path_factory.mktemp("qa-stage1")  # one English model shared by the runs below


def _train(tmp_path, stage1_root, task: str, target: str, method: str, model: str = "tiny-random/bert",
           *extra: str) -> list[str]:
    return ["train", "--task", task, "--target-lang", target, "--method", method, "--model", model,
            "--max-train-examples", "4", "--max-eval-examples", "4", "--stage1-max-train-examples", "6",
            "--epochs", "1", "--stage1-epochs", "1", "--stage1-lr", "1e-3", "--lr", "1e-2",
            "--qa-max-length", "256", "--doc-stride", "16", "--batch-size", "4", "--lora-r", "4",
            "--lora-alpha", "8", "--no-show-progress", "--stage1-dir", str(stage1_root),
            "--output-dir", str(tmp_path / method), *extra]


@pytest.mark.parametrize("method", ["zero-shot", "translate-test", "lora", "input-fusion", "flare"])
def test_every_method_runs_on_mlqa_from_the_cli(tmp_path, stage1_root, capsys, method):
    assert main(_train(tmp_path, stage1_root, "mlqa", "de", method)) == 0
    metrics = json.loads((tmp_path / method / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"exact_match", "f1"}
    assert all(0.0 <= v <= 1.0 for v in metrics["metrics"].values())
    assert metrics["test_examples"] == 4 and metrics["stage1_examples"] == {"train": 6, "test": 4}
    trains = method in ("lora", "input-fusion", "flare")
    assert metrics["train_examples"] == (4 if trains else 0)
    assert metrics["trainable_params"] == (2 * 2 * 4 * (32 + 32) if trains else 0)  # r=4 on q, v of 2 layers
    if method == "flare":
        assert set(metrics["metrics_zero_source"]) == {"exact_match", "f1"}
        assert metrics["source_passes_per_example"] == 1.0  # one English window per question, cached
    if trains:
        capsys.readouterr()
        assert main(["evaluate", "--run-dir", str(tmp_path / method)]) == 0
        again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert again["matches_stored"] is True and again["metrics"] == metrics["metrics"]


def test_tydiqa_runs_lora_and_its_english_model_is_cached_with_the_window_settings(tmp_path, stage1_root):
    root = _tydiqa(tmp_path / "data")
    assert main(_train(tmp_path, stage1_root, "tydiqa", "sw", "lora", "tiny-random/bert", "--data-dir",
                       str(root))) == 0
    metrics = json.loads((tmp_path / "lora" / "metrics.json").read_text())
    assert metrics["task"] == "tydiqa" and metrics["target_lang"] == "sw" and set(metrics["metrics"]) == {
        "exact_match", "f1"}
    from xlt.runs.stage1 import stage1_dir

    cfg = RunConfig(task="tydiqa", target_lang="sw", model="tiny-random/bert", data_dir=str(root),
                    stage1_dir=str(stage1_root))
    assert stage1_dir(cfg) != stage1_dir(cfg.replace(doc_stride=64)) != stage1_dir(cfg.replace(qa_max_length=128))
    assert stage1_dir(cfg) != stage1_dir(cfg.replace(qa_windows_per_pass=4))  # other dropout draws
    assert stage1_dir(cfg) == stage1_dir(cfg.replace(target_lang="en"))  # one English model for every language


@pytest.mark.parametrize("method", ["translate-test", "input-fusion", "flare"])
def test_tydiqa_refuses_methods_that_need_the_english_version(tmp_path, capsys, method):
    assert main(["train", "--task", "tydiqa", "--target-lang", "sw", "--method", method,
                 "--output-dir", str(tmp_path / "run"), "--stage1-dir", str(tmp_path / "s1")]) == 2
    # input-fusion and flare read a machine-translated English side (tests/test_qa_translated_source.py)
    instead = "use zero-shot or lora" if method == "translate-test" else (
        "give it one with --source-from mt:MODEL (the question and paragraph machine-translated into English), "
        "or use zero-shot or lora")
    assert cli_error(capsys) == (f"method {method} needs the English version of each example, and task tydiqa is not "
                              f"parallel; {instead}")
    assert not (tmp_path / "s1").exists() and not (tmp_path / "run").exists()


class MarkerKeepingTranslator:
    """A stand-in MT model: "translates" English by upper-casing it; a paragraph mentioning Zurich comes back
    without its answer markers, as real MT sometimes returns them."""

    fingerprint = {"model": "upper-case"}
    calls: list[list[str]] = []

    def check_pair(self, source_lang, target_lang):
        assert (source_lang, target_lang) == ("en", "de")

    def translate(self, texts, source_lang, target_lang):
        self.calls.append(list(texts))
        return [t.upper().replace("[", "").replace("]", "") if "Zurich" in t else t.upper() for t in texts]


def test_qa_translate_train_projects_answers_and_counts_what_it_drops(tmp_path):
    from xlt.mt.cache import TranslationCache
    from xlt.mt.translated_data import translated_qa_training_set

    english = [QAExample("Who came?", "Anna came to Berlin.", ("Anna",), (0,), id="a"),
               QAExample("Where?", "She lives in Zurich now.", ("Zurich",), (13,), id="z"),
               QAExample("What [sic]?", "A [bracket] here: yes.", ("yes",), (18,), id="b"),
               QAExample("When?", "It ended in 1990.", ("1990",), (12,), id="e")]
    data = QATaskData("mlqa", "en", "de", [QAExample("Wer?", "Anna kam.", ("Anna",), (0,), id="t")], [], [],
                      english=QATaskData("mlqa", "en", "en", english, [], []))
    cache = TranslationCache(tmp_path / "cache.sqlite")
    translated, info = translated_qa_training_set(data, MarkerKeepingTranslator(), cache)
    assert info == {"kept": 2, "dropped": {"markers lost in translation": 1, "paragraph holds a marker": 1}}
    first, last = translated.train
    assert (first.question, first.context, first.answers, first.answer_starts) == (
        "WHO CAME?", "ANNA CAME TO BERLIN.", ("ANNA",), (0,))
    assert last.context[last.answer_starts[0]:][:4] == last.answers[0] == "1990"
    # the English side is kept: what input-fusion or a later look at the pair would read
    assert (last.source_question, last.source_context, last.source_answers) == ("When?", "It ended in 1990.", ("1990",))
    assert translated.test == data.test and translated.english is data.english
    # --max-train-examples caps the English questions translated; a second run is served by the cache
    MarkerKeepingTranslator.calls.clear()
    capped, info = translated_qa_training_set(data, MarkerKeepingTranslator(), cache, max_examples=1)
    assert [ex.id for ex in capped.train] == ["a"] and info == {"kept": 1, "dropped": {}}
    assert MarkerKeepingTranslator.calls == []
    cache.close()
    with pytest.raises(XltError, match=r"translate-train: no answer of the 1 English training questions survived "
                                       r"translation into de \(1 markers lost in translation\)"):
        translated_qa_training_set(QATaskData("mlqa", "en", "de", [], [], [], english=QATaskData(
            "mlqa", "en", "en", english[1:2], [], [])), MarkerKeepingTranslator(), None)


@pytest.mark.parametrize("model", ["tiny-random/bert", "tiny-random/llama"])  # span head; answer generation
def test_qa_translate_train_runs_from_the_cli_and_records_the_projection(tmp_path, capsys, monkeypatch, model):
    import xlt.mt.factory

    monkeypatch.setattr(xlt.mt.factory, "load_translator", lambda *a, **k: MarkerKeepingTranslator())
    args = _train(tmp_path, tmp_path / "s1", "mlqa", "de", "translate-train", model,
                  "--translator", "upper-case", "--translation-cache", str(tmp_path / "mt.sqlite"))
    if model != "tiny-random/bert":  # decoders read one window: --doc-stride is refused
        stride = args.index("--doc-stride")
        del args[stride:stride + 2]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "translate-train" / "metrics.json").read_text())
    assert metrics["translator"] == "upper-case" and metrics["train_examples"] == metrics["answer_projection"]["kept"]
    assert 1 <= metrics["answer_projection"]["kept"] <= 4 and set(metrics["metrics"]) == {"exact_match", "f1"}


def test_qa_refuses_a_translator_without_the_pair_and_a_pivot_before_any_model_loads(tmp_path, capsys):
    assert main(_train(tmp_path, tmp_path / "s1", "mlqa", "de", "translate-train", "tiny-random/bert",
                       "--translator", "lexicon")) == 2
    assert cli_error(capsys).startswith("the lexicon translator has no word list for English (en); it translates "
                                     "from Acehnese (ace), Balinese (ban),")
    assert main(_train(tmp_path, tmp_path / "s1", "mlqa", "de", "flare", "tiny-random/bert",
                       "--source-from", "pivot:es")) == 2
    assert cli_error(capsys) == ("task mlqa reads the gold English side or its machine translation (--source-from "
                                 "mt:MODEL); --source-from pivot:es is not available for QA")
    assert not (tmp_path / "s1").exists()


def test_custom_qa_runs_zero_shot_from_files(tmp_path, stage1_root):
    rows = [dict(GOOD, id=f"r{i}") for i in range(3)]
    train_file, test_file = _jsonl(tmp_path / "train.jsonl", rows), _jsonl(tmp_path / "test.jsonl", rows)
    args = _train(tmp_path, stage1_root, "custom-qa", "de", "zero-shot")
    assert main(args + ["--train-file", str(train_file), "--test-file", str(test_file)]) == 0
    metrics = json.loads((tmp_path / "zero-shot" / "metrics.json").read_text())
    assert metrics["test_examples"] == 3 and set(metrics["source_metrics"]) == {"exact_match", "f1"}


def test_input_fusion_fits_the_models_positions_and_a_window_longer_than_them_is_refused(bert):
    _, tokenizer = bert  # 512 positions: twice 384 would not fit
    ex = QAExample("wer?", "Xaver kam. " * 80, ("Xaver",), (0,), "who?", "a b c " * 200, ("b",), (2,), "p")
    fused = qa_batch(tokenizer, [ex], "concat", max_length=384, stride=128)
    assert fused.inputs["input_ids"].shape[1] == 512
    english = fused.inputs["input_ids"][0].tolist().index(tokenizer.sep_token_id)
    assert english == 5 and batch_text(tokenizer, fused, 0).count("abc") == (256 - 64 - 4 - 5) // 3
    first = fused.context_mask[0].nonzero().flatten().tolist()
    assert len(first) >= 256 - 4 and _span_text(fused, 0) == "Xaver"
    with pytest.raises(XltError, match="qa_max_length 600 is more than the model's 512 positions"):
        qa_batch(tokenizer, [ex], "target", max_length=600, stride=128)
