"""Task uner-json: UNER entities written as JSON by decoders and mT5, scored over (type, text) pairs."""

import json

import pytest

from xlt.cli import main
from xlt.data.examples import GenTaskData, source_side
from xlt.data.prompts import get_template
from xlt.data.registry import load_task
from xlt.data.sets.uner_json import entities_json
from xlt.scoring.entities import entity_spans
from xlt.scoring.generation import get_metric


def test_the_answer_lists_every_entity_in_order_adjacent_ones_apart():
    tokens = ("Angela", "Merkel", "met", "Obama", "Putin", "in", "New", "York", "at", "the", "UN")
    tags = ("B-PER", "I-PER", "O", "B-PER", "B-PER", "O", "B-LOC", "I-LOC", "O", "O", "B-ORG")
    assert json.loads(entities_json(tokens, tags)) == [
        {"type": "PER", "text": "Angela Merkel"}, {"type": "PER", "text": "Obama"},
        {"type": "PER", "text": "Putin"}, {"type": "LOC", "text": "New York"}, {"type": "ORG", "text": "UN"}]
    assert entities_json(("nothing", "here"), ("O", "O")) == "[]"
    assert json.loads(entities_json(("Zürich",), ("B-LOC",))) == [{"type": "LOC", "text": "Zürich"}]
    assert "Zürich" in entities_json(("Zürich",), ("B-LOC",))  # written as is, not \\u-escaped


def test_uner_json_is_uner_as_generation_with_the_same_rows_and_english_model_data():
    tagged, generated = load_task("uner", "de"), load_task("uner-json", "de")
    assert isinstance(generated, GenTaskData) and generated.template == generated.metric == "json_ner"
    assert [ex.id for ex in generated.test] == [ex.id for ex in tagged.test] and len(generated.test) == 500
    for tag_ex, gen_ex in zip(tagged.test[:50], generated.test[:50]):
        assert gen_ex.prompt_target == " ".join(tag_ex.tokens)
        assert gen_ex.prompt_source == " ".join(tag_ex.source_tokens)
        spans = entity_spans(list(tag_ex.tags))
        assert [(e["type"], e["text"]) for e in json.loads(gen_ex.answer)] == [
            (kind, " ".join(tag_ex.tokens[s:e])) for kind, s, e in spans]
    # stage 1 reads English-EWT as JSON, like the tagging task's English model
    english = source_side(generated)
    assert english.target_lang == "en" and len(english.train) == len(tagged.english.train)
    assert english.train[0].prompt_target == " ".join(tagged.english.train[0].tokens)
    assert "Entities:" in get_template("json_ner").prompt(generated.test[0].prompt_target)


def test_the_metric_counts_pairs_and_invalid_outputs():
    metric = get_metric("json_ner")
    gold = ['[{"type": "PER", "text": "Obama"}, {"type": "LOC", "text": "New York"}]', "[]"]
    assert metric(gold, gold) == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "invalid_outputs": 0}
    # one right pair, one wrong type, one invalid output (scored as no entities)
    preds = ['[{"type": "PER", "text": "Obama"}, {"type": "ORG", "text": "New  York"}]', "Obama is PER"]
    scores = metric(preds, gold)
    assert scores["invalid_outputs"] == 1
    assert (scores["precision"], scores["recall"]) == (0.5, 0.5) and scores["f1"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="gold answer is not a JSON entity list"):
        metric(["[]"], ["PER: Obama"])


def _args(tmp_path, model, method):
    return ["train", "--task", "uner-json", "--target-lang", "de", "--method", method, "--model", model,
            "--max-train-examples", "8", "--max-eval-examples", "6", "--stage1-max-train-examples", "8",
            "--epochs", "1", "--stage1-epochs", "1", "--batch-size", "4", "--max-answer-length", "12",
            "--lora-r", "4", "--no-show-progress", "--stage1-dir", str(tmp_path / "stage1"),
            "--output-dir", str(tmp_path / method)]


@pytest.mark.parametrize("model, method", [("tiny-random/llama", "lora"), ("tiny-random/llama", "flare"),
                                           ("tiny-random/mt5", "lora"), ("tiny-random/qwen2", "input-fusion")])
def test_uner_json_trains_evaluates_and_reloads(tmp_path, capsys, model, method):
    assert main(_args(tmp_path, model, method)) == 0
    metrics = json.loads((tmp_path / method / "metrics.json").read_text())
    assert set(metrics["metrics"]) >= {"precision", "recall", "f1", "invalid_outputs"}
    assert metrics["test_examples"] == 6 and 0 <= metrics["metrics"]["invalid_outputs"] <= 6
    capsys.readouterr()
    assert main(["evaluate", "--run-dir", str(tmp_path / method)]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["matches_stored"] is True and again["metrics"] == metrics["metrics"]


def test_uner_json_refuses_an_encoder_in_one_line(tmp_path, capsys):
    assert main(_args(tmp_path, "tiny-random/bert", "lora")) == 2
    err = capsys.readouterr().err.strip()
    assert "generates text: use a decoder or encoder-decoder model" in err and len(err.splitlines()) == 1
