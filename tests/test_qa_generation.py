"""Extractive QA on decoders and mT5 as answer generation: the conversion of QA sets, prompts that keep the
question and the cue whatever the paragraph's length, SQuAD EM/F1 of generated answers, a training step,
runs from the CLI and what is still refused."""

import json
from types import SimpleNamespace

import pytest
import torch
from helpers import cli_error

from xlt.cli import main
from xlt.config import RunConfig
from xlt.data.examples import GenQAExample, GenTaskData, QAExample, QATaskData, source_side
from xlt.data.qa_generation import as_generation
from xlt.data.registry import load_task
from xlt.errors import XltError
from xlt.kinds.generation import IGNORE, GenBatcher
from xlt.kinds.passages import shares, window
from xlt.kinds.registry import Generation, kind_of, task_architecture
from xlt.methods.adapters import AdapterSettings, attach
from xlt.methods.table import get_method
from xlt.models.loading import load_tokenizer, resolve_model
from xlt.runs.recipe import architecture_of, load_data
from xlt.runs.stage1 import stage1_dir
from xlt.scoring.generation import get_metric
from xlt.training.loop import TrainSettings, task_steps, train


@pytest.fixture(scope="module")
def e5_tokenizer():
    return load_tokenizer(resolve_model("e5-small"))  # real sentencepiece pieces, so decoded prompts read as text


# --- the conversion ---------------------------------------------------------------------------------

def test_mlqa_becomes_generation_with_the_english_side_of_each_question_and_stage1_halves(data_dir):
    qa = load_task("mlqa", "de", data_dir=data_dir)
    gen = as_generation(qa)
    assert (gen.task, gen.template, gen.metric, gen.source_lang, gen.target_lang) == ("mlqa", "qa", "qa", "en", "de")
    assert [ex.id for ex in gen.train] == [ex.id for ex in qa.train] and len(gen.test) == len(qa.test) > 0
    for q, g in zip(qa.train[:30], gen.train[:30]):
        assert (g.prompt_target, g.passage_target, g.answer, g.answers) == (q.question, q.context, q.answers[0],
                                                                            q.answers)
        assert (g.prompt_source, g.passage_source, g.answer_source, g.answers_source) == (
            q.source_question, q.source_context, q.source_answers[0], q.source_answers)
        assert g.passage_target[g.answer_start:].startswith(g.answer)
        assert g.passage_source[g.answer_start_source:].startswith(g.answer_source)
    english = source_side(gen)  # stage 1: the English file's halves, as for the span head
    assert english.target_lang == "en" and [ex.id for ex in english.train] == [ex.id for ex in qa.english.train]
    assert english.test[0].prompt_target == qa.english.test[0].question


def test_a_set_without_english_splits_takes_each_rows_english_side_and_a_row_without_one_is_refused():
    with_source = QAExample("Wo?", "Paris ist hier.", ("Paris",), (0,), "Where?", "It is Paris.", ("Paris",), (6,), "a")
    custom = as_generation(QATaskData("custom-qa", "en", "de", [with_source], [], [with_source]))
    english = source_side(custom)
    assert english.train[0].prompt_target == "Where?" and english.train[0].passage_target == "It is Paris."
    assert english.train[0].answer_start == 6
    without = QAExample("Wann?", "Er kam 1890.", ("1890",), (7,), id="q7")
    with pytest.raises(XltError, match="example q7 has no source-language text"):
        as_generation(QATaskData("custom-qa", "en", "de", [without], [], [without]))


def test_the_data_a_run_reads_is_generation_for_decoders_and_mt5_and_spans_for_encoders(data_dir):
    cfg = RunConfig(task="mlqa", target_lang="de", max_eval_examples=3, max_train_examples=2)
    assert isinstance(load_data(cfg.replace(model="tiny-random/bert")), QATaskData)
    for model in ("tiny-random/llama", "tiny-random/mt5"):
        data = load_data(cfg.replace(model=model))
        assert isinstance(data, GenTaskData) and data.template == "qa" and (len(data.train), len(data.test)) == (2, 3)
        assert isinstance(kind_of(data), Generation)
    llama = cfg.replace(model="tiny-random/llama")  # the prompt limit changes the English model: part of its key
    assert stage1_dir(llama) != stage1_dir(llama.replace(qa_max_length=128))


# --- prompts around a long paragraph --------------------------------------------------------------------

def test_windows_share_the_room_and_hold_the_answer_when_training():
    assert shares([10, 100], 60) == [10, 50] and shares([100, 100], 61) == [30, 31] and shares([5], -3) == [0]
    text = "abcdefghij"
    offsets = [(i, i + 1) for i in range(10)]
    assert window(text, offsets, 4, None) == "abcd"  # test time: the beginning
    assert window(text, offsets, 4, (1, 3)) == "abcd"  # the answer lies in the first window
    assert window(text, offsets, 4, (7, 9)) == "fghi"  # centred on the answer
    assert window(text, offsets, 4, (8, 10)) == "ghij"  # clamped to the end
    assert window(text, offsets, 10, (8, 10)) == text and window(text, offsets, 0, None) == ""


FILLER = "Filler words come first here. " * 150
CONTEXT = FILLER + "The Eiffel Tower stands in Paris. " + "More filler follows after it. " * 150
EN_CONTEXT = "Opening words. " * 100 + "The tower is the Eiffel Tower. " + "Closing words. " * 100
LONG = GenQAExample("Which tower stands in Paris?", "Which tower?", "Eiffel Tower", "Eiffel Tower", "long",
                    passage_target=CONTEXT, passage_source=EN_CONTEXT, answer_start=CONTEXT.index("Eiffel Tower"),
                    answer_start_source=EN_CONTEXT.index("Eiffel Tower"), answers=("Eiffel Tower",),
                    answers_source=("Eiffel Tower",))


def _text(tokenizer, ids) -> str:
    return " ".join(tokenizer.decode(ids, skip_special_tokens=True).split())


def test_a_long_paragraph_is_cut_and_the_question_and_cue_are_kept(e5_tokenizer):
    batcher = GenBatcher(e5_tokenizer, False, 64, 8, "qa")
    train_ids, test_ids = batcher.prompt_ids([LONG], "target", True)[0], batcher.prompt_ids([LONG], "target", False)[0]
    for ids in (train_ids, test_ids):
        assert 58 <= len(ids) <= 64  # the limit, nearly all of it used
        assert _text(e5_tokenizer, ids).endswith("Question: Which tower stands in Paris? Answer:")
    assert "Eiffel Tower" in _text(e5_tokenizer, train_ids)  # training: a window over the answer
    test_text = _text(e5_tokenizer, test_ids)  # test time: the paragraph's beginning
    assert "Paragraph: Filler words come first here." in test_text and "Eiffel" not in test_text
    # teacher forcing: the loss is on the answer (and EOS) after the prompt
    batch = batcher.batch([LONG], "target", None, teacher_forced=True)
    assert _text(e5_tokenizer, batch.labels[batch.labels != IGNORE].tolist()) == "Eiffel Tower"
    assert batch.inputs["input_ids"].shape[1] == len(train_ids) + batch.labels.ne(IGNORE).sum().item()


def test_input_fusion_shares_the_limit_and_flare_reads_the_english_prompt(e5_tokenizer):
    batcher = GenBatcher(e5_tokenizer, False, 96, 8, "qa")
    fused = batcher.prompt_ids([LONG], "concat", True)[0]
    text = _text(e5_tokenizer, fused)
    assert len(fused) <= 96 and text.endswith("Question: Which tower? Which tower stands in Paris? Answer:")
    assert text.count("Eiffel Tower") == 2  # both windows over their answers in training
    assert text.index("Opening") < text.index("Filler") < text.index("Question:")  # English paragraph first
    flare = batcher.batch([LONG], "target", "text", teacher_forced=False)
    english = flare.inputs["source_input_ids"][0][flare.inputs["source_attention_mask"][0].bool()].tolist()
    assert _text(e5_tokenizer, english).endswith("Question: Which tower? Answer:") and len(english) <= 96


def test_a_question_longer_than_the_limit_is_never_cut(e5_tokenizer):
    question = "Which of the many towers that stand in the old city is the one that people call tall? " * 3
    ex = GenQAExample(question, None, "Eiffel Tower", None, "q", passage_target=CONTEXT,
                      answer_start=LONG.answer_start, answers=("Eiffel Tower",))
    ids = GenBatcher(e5_tokenizer, False, 32, 8, "qa").prompt_ids([ex], "target", True)[0]
    text = _text(e5_tokenizer, ids)
    assert len(ids) > 32 and text.endswith(f"Paragraph: Question: {question.strip()} Answer:")


def test_an_mt5_prompt_fits_with_its_eos(data_dir):
    tokenizer = load_tokenizer(resolve_model("tiny-random/mt5"))
    examples = as_generation(load_task("mlqa", "de", data_dir=data_dir)).test[:8]
    prompts = GenBatcher(tokenizer, True, 240, 8, "qa").prompt_ids(examples, "target", False)
    assert all(len(p) <= 240 and p[-1] == tokenizer.eos_token_id for p in prompts)
    assert max(map(len, prompts)) == 240  # MLQA paragraphs are longer than the room: cut to it


# --- the metric -------------------------------------------------------------------------------------------

def test_the_metric_is_squad_em_and_f1_against_the_best_gold_answer():
    metric = get_metric("qa", "en")
    assert metric(["the Eiffel Tower"], [("Eiffel Tower",)]) == {"exact_match": 1.0, "f1": 1.0}
    scores = metric(["Eiffel Tower in Paris"], [("Eiffel Tower",)])  # P 2/4, R 2/2
    assert scores["exact_match"] == 0.0 and scores["f1"] == pytest.approx(2 / 3)
    assert metric(["Paris"], [("the city", "Paris")]) == {"exact_match": 1.0, "f1": 1.0}
    assert metric(["Turm"], [("der Turm",)])["exact_match"] == 0.0  # "der" is no English article
    assert get_metric("qa", "de")(["Turm"], [("der Turm",)]) == {"exact_match": 1.0, "f1": 1.0}
    with pytest.raises(ValueError, match="2 predictions for 1 gold answers"):
        metric(["a", "b"], [("a",)])


def test_evaluation_scores_the_side_the_view_reads_in_its_language(monkeypatch):
    def ex(i, answers, answers_source):
        return GenQAExample("Wo?", "Where?", answers[0], answers_source[0], i, passage_target=" ".join(answers),
                            passage_source=" ".join(answers_source), answer_start=0, answer_start_source=0,
                            answers=answers, answers_source=answers_source)

    data = GenTaskData("mlqa", "en", "de", [], [], [ex("a", ("der Turm", "Turm"), ("the tower",)),
                                                    ex("b", ("Eiffelturm",), ("the Eiffel Tower",))], "qa", "qa")
    model = SimpleNamespace(config=SimpleNamespace(is_encoder_decoder=False))
    tokenizer = load_tokenizer(resolve_model("tiny-random/llama"))
    cfg = RunConfig(task="mlqa", target_lang="de")
    outputs = {"target": ["Turm", "Eiffelturm in Paris"], "source": ["The Tower", "Eiffel"]}
    monkeypatch.setattr("xlt.kinds.registry.decode_answers", lambda model, batcher, examples, view, *a, **k: outputs[view])
    target = Generation().evaluate(cfg, model, tokenizer, data, "target", None, "test")
    assert target["exact_match"] == 0.5 and target["f1"] == pytest.approx((1 + 0.5) / 2)  # b: P 1/3, R 1
    source = Generation().evaluate(cfg, model, tokenizer, data, "source", None, "test")  # translate-test
    assert source["exact_match"] == 0.5 and source["f1"] == pytest.approx((1 + 2 / 3) / 2)  # b: P 1, R 1/2


# --- training --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model_name", ["tiny-random/llama", "tiny-random/mt5"])
def test_a_flare_training_step_changes_only_the_adapter(data_dir, model_name):
    path = resolve_model(model_name)
    tokenizer = load_tokenizer(path)
    data = as_generation(load_task("mlqa", "de", data_dir=data_dir))
    data.train = data.train[:4]
    kind = kind_of(data)
    arch = task_architecture(kind, architecture_of(path))
    adapted = attach(kind.load_model(path, tokenizer, data, arch), get_method("flare"), arch,
                     AdapterSettings(r=4, alpha=8, dropout=0.0, fusion="add"))
    before = {n: p.detach().clone() for n, p in adapted.model.named_parameters()}
    to_batch = kind.train_batches(RunConfig(task="mlqa", qa_max_length=240, max_answer_length=8), tokenizer,
                                  adapted.model, data, "target", "text")
    batch = to_batch(data.train[:2])
    answer_tokens = 8 if arch.family == "decoder" else 0  # a decoder's row is the prompt and the answer
    assert batch.inputs["attention_mask"].sum(1).max() <= 240 + answer_tokens
    assert batch.inputs["source_attention_mask"].sum(1).max() <= 240
    train(adapted.model, task_steps(data.train, to_batch, 2, 1, seed=0),
          TrainSettings(epochs=1, lr=1e-2, batch_size=2, show_progress=False))
    changed = {n for n, p in adapted.model.named_parameters() if not torch.equal(p, before[n])}
    assert any("lora_B" in n for n in changed) and all("lora_" in n for n in changed)


# --- runs from the CLI -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stage1_root(tmp_path_factory):
    return tmp_path_factory.mktemp("qagen-stage1")  # one English model per base model for the runs below


def _train(tmp_path, stage1_root, model: str, method: str, *extra: str) -> list[str]:
    return ["train", "--task", "mlqa", "--target-lang", "de", "--method", method, "--model", model,
            "--max-train-examples", "4", "--max-eval-examples", "4", "--stage1-max-train-examples", "8",
            "--epochs", "1", "--stage1-epochs", "1", "--qa-max-length", "240", "--max-answer-length", "8",
            "--batch-size", "4", "--lora-r", "4", "--no-show-progress", "--stage1-dir", str(stage1_root),
            "--output-dir", str(tmp_path / method), *extra]


@pytest.mark.parametrize("model, method", [("tiny-random/llama", "flare"), ("tiny-random/llama", "translate-test"),
                                           ("tiny-random/mt5", "flare"), ("tiny-random/qwen2", "input-fusion")])
def test_mlqa_runs_on_decoders_and_mt5_and_evaluate_reproduces_it(tmp_path, stage1_root, capsys, model, method):
    assert main(_train(tmp_path, stage1_root, model, method)) == 0
    metrics = json.loads((tmp_path / method / "metrics.json").read_text())
    assert set(metrics["metrics"]) == set(metrics["source_metrics"]) == {"exact_match", "f1"}
    assert all(0.0 <= v <= 1.0 for v in metrics["metrics"].values())
    assert metrics["test_examples"] == 4 and metrics["stage1_examples"] == {"train": 8, "test": 4}
    assert metrics["train_examples"] == (0 if method == "translate-test" else 4)
    if method == "flare":
        assert set(metrics["metrics_zero_source"]) == {"exact_match", "f1"}
        assert metrics["source_passes_per_example"] == 1.0
    capsys.readouterr()
    assert main(["evaluate", "--run-dir", str(tmp_path / method)]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["matches_stored"] is True and again["metrics"] == metrics["metrics"]


def test_custom_qa_trains_lora_on_a_decoder_from_files(tmp_path, stage1_root):
    row = {"target_context": "Paris ist die Hauptstadt.", "target_question": "Was ist die Hauptstadt?",
           "answers": [{"text": "Paris", "answer_start": 0}], "source_context": "The capital is Paris.",
           "source_question": "What is the capital?", "source_answers": ["Paris"]}
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(dict(row, id=f"r{i}")) + "\n" for i in range(3)))
    args = _train(tmp_path, stage1_root, "tiny-random/llama", "lora")
    args[args.index("mlqa")] = "custom-qa"
    assert main(args + ["--train-file", str(path), "--test-file", str(path)]) == 0
    metrics = json.loads((tmp_path / "lora" / "metrics.json").read_text())
    assert (metrics["task"], metrics["train_examples"], metrics["test_examples"]) == ("custom-qa", 3, 3)
    assert set(metrics["metrics"]) == {"exact_match", "f1"}


@pytest.mark.parametrize("method, extra, message", [
    ("x-mixup", (), "x-mixup is for sentence classification tasks (custom, nusax, xnli), not 'mlqa'"),
    ("lora", ("--doc-stride", "16"), "--doc-stride slides encoders' windows over a paragraph; decoder models read "
                                     "one window of it, set by --qa-max-length"),
])
def test_a_decoder_is_refused_in_one_line_before_any_model_loads(tmp_path, capsys, method, extra, message):
    assert main(_train(tmp_path, tmp_path / "s1", "tiny-random/llama", method, *extra)) == 2
    assert cli_error(capsys) == message
    assert not (tmp_path / "s1").exists() and not (tmp_path / method).exists()
