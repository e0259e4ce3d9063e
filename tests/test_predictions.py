"""Every evaluation keeps its predictions: predictions.jsonl beside metrics.json, one row per test example (id,
gold, prediction; the predicted label's probability for classification), which the metrics are recomputable from
and ``xlt evaluate`` checks."""

import json

import pytest

from xlt.cli.main import main
from xlt.data.registry import load_task
from xlt.run_dir import PREDICTIONS, read_predictions
from xlt.runs.evaluate import changed_predictions, differences_line
from xlt.scoring.classification import accuracy
from xlt.scoring.generation import get_metric

QUICK = ["--task", "nusax", "--target-lang", "jv", "--max-train-examples", "24", "--max-eval-examples", "20",
         "--epochs", "1", "--stage1-epochs", "1", "--stage1-max-train-examples", "24", "--lora-r", "4",
         "--lora-alpha", "8", "--batch-size", "8", "--no-show-progress"]


def _train(tmp_path, *argv) -> tuple:
    out = tmp_path / "run"
    assert main(["train", *QUICK, *argv, "--output-dir", str(out)]) == 0
    return out, json.loads((out / "metrics.json").read_text())


def test_a_classification_run_keeps_one_row_per_test_example_that_the_metric_reads(tmp_path, data_dir, capsys):
    out, metrics = _train(tmp_path, "--model", "tiny-random/bert", "--method", "flare")
    rows = read_predictions(out)
    test = load_task("nusax", "jv", data_dir=data_dir).test[:20]
    assert [row["id"] for row in rows] == [ex.id for ex in test]
    labels = ("negative", "neutral", "positive")
    assert [row["gold"] for row in rows] == [labels[ex.label] for ex in test]
    assert {row["prediction"] for row in rows} <= set(labels)
    assert all(0 < row["score"] <= 1 for row in rows)  # the argmax label's softmax probability: at least 1/3
    assert min(row["score"] for row in rows) >= 1 / 3 - 1e-6
    recomputed = accuracy([labels.index(r["prediction"]) for r in rows], [labels.index(r["gold"]) for r in rows])
    assert recomputed == pytest.approx(metrics["metrics"]["accuracy"])
    capsys.readouterr()
    assert main(["evaluate", "--run-dir", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["predictions_match"], result["prediction_differences"]) == (True, 0)


def test_evaluate_names_predictions_that_changed(tmp_path, capsys):
    out, _ = _train(tmp_path, "--model", "tiny-random/bert", "--method", "lora")
    rows = read_predictions(out)
    flipped = "positive" if rows[0]["prediction"] != "positive" else "negative"
    rows[0]["prediction"] = flipped
    (out / PREDICTIONS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    capsys.readouterr()
    assert main(["evaluate", "--run-dir", str(out)]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert (result["matches_stored"], result["predictions_match"], result["prediction_differences"]) == (
        True, False, 1)
    assert captured.err.strip() == ("xlt: warning: 1 recomputed test predictions differ from the run's "
                                    "predictions.jsonl")


def test_a_generation_run_keeps_the_decoded_text_and_the_gold_answer(tmp_path):
    out, metrics = _train(tmp_path, "--model", "tiny-random/llama", "--method", "lora", "--task", "massive",
                          "--max-eval-examples", "4", "--max-answer-length", "8")
    rows = read_predictions(out)
    assert len(rows) == metrics["test_examples"] == 4
    assert all(isinstance(r["prediction"], str) and isinstance(r["gold"], str) and "score" not in r for r in rows)
    recomputed = get_metric("slots")([r["prediction"] for r in rows], [r["gold"] for r in rows])
    assert recomputed == pytest.approx(metrics["metrics"])


def test_changed_predictions_counts_rows_and_tolerates_rounding():
    stored = [{"id": "a", "prediction": "x", "score": 0.5}, {"id": "b", "prediction": "y", "score": 0.7}]
    assert changed_predictions(stored, [dict(r) for r in stored]) == 0
    assert changed_predictions(stored, [{**stored[0], "score": 0.50004}, stored[1]]) == 0
    assert changed_predictions(stored, [{**stored[0], "score": 0.51}, {**stored[1], "prediction": "z"}]) == 2
    assert changed_predictions(stored, stored[::-1]) == 2  # another order: every row
    assert differences_line({"stored_differences": [], "prediction_differences": 0}) is None
