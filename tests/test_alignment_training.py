"""Alignment training wired into runs: the step schedule, alignment-only and alternating training."""

import json

import torch

from xlt.alignment.aligner import interleave
from xlt.alignment.contrastive import AlternatingSchedule
from xlt.cli import main


def test_alignment_steps_are_interleaved_by_ratio():
    task = ["t0", "t1", "t2"]
    assert interleave(task, "align", AlternatingSchedule(1, 1), 0) == ["t0", "align", "t1", "align", "t2", "align"]
    assert interleave(task, "align", AlternatingSchedule(2, 1), 0) == ["t0", "t1", "align", "t2"]
    assert interleave([], "align", AlternatingSchedule(0, 1), 6) == ["align"] * 6


QUICK = ["--model", "tiny-random/bert", "--task", "nusax", "--target-lang", "jv", "--max-train-examples", "16",
         "--max-eval-examples", "24", "--stage1-max-train-examples", "16", "--stage1-epochs", "1",
         "--align-max-pairs", "64", "--batch-size", "16", "--no-show-progress"]


def test_alignment_only_training_moves_only_the_adapter_and_reports_retrieval(tmp_path):
    out = tmp_path / "align"
    assert main(["train", *QUICK, "--method", "align", "--align-langs", "jv,su", "--epochs", "2",
                 "--lr", "0.01", "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # paper defaults for alignment: LoRA r=8 on every linear projection of the 2 tiny layers
    assert metrics["trainable_params"] == 2 * (4 * (32 + 32) * 8 + (32 + 64) * 8 + (64 + 32) * 8)
    retrieval = metrics["alignment_retrieval"]
    assert set(retrieval) == {"jv", "su"} and retrieval["jv"]["sentences"] == 24
    assert set(retrieval["jv"]["before"]) == {"1"}  # the middle layer of 2 (1-based)
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert "intermediate.dense" in config["target_modules"] and config["r"] == 8
    from safetensors.torch import load_file

    weights = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    # alignment at layer 1 trains layer-0 modules only: layer 1's B stays zero (no gradient reaches it)
    assert any(torch.count_nonzero(v) for k, v in weights.items() if "layer.0." in k and "lora_B" in k)
    assert all(torch.count_nonzero(v) == 0 for k, v in weights.items() if "layer.1." in k and "lora_B" in k)


def test_lora_plus_align_then_merge_with_a_task_module(tmp_path, capsys):
    task = tmp_path / "task"
    assert main(["train", *QUICK, "--method", "lora", "--lora-targets", "all-linear", "--lora-r", "8",
                 "--epochs", "1", "--output-dir", str(task)]) == 0
    both = tmp_path / "both"
    assert main(["train", *QUICK, "--method", "lora+align", "--align-ratio", "2:1", "--epochs", "1",
                 "--output-dir", str(both)]) == 0
    assert "alignment_retrieval" in json.loads((both / "metrics.json").read_text())
    align = tmp_path / "align"
    assert main(["train", *QUICK, "--method", "align", "--epochs", "1", "--output-dir", str(align)]) == 0
    merged = tmp_path / "merged"
    assert main(["merge", "--adapters", str(task), str(align), "--weights", "0.9", "0.1",
                 "--output-dir", str(merged)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--run-dir", str(merged)]) == 0
    assert set(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["metrics"]) == {"accuracy", "macro_f1"}
    # its first evaluation is kept as a trained run's is: metrics.json's metrics and predictions.jsonl beside it
    first = json.loads((merged / "metrics.json").read_text())
    rows = [json.loads(line) for line in (merged / "predictions.jsonl").read_text().splitlines()]
    task_rows = [json.loads(line) for line in (task / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in task_rows] and {"gold", "prediction"} <= set(rows[0])
    assert main(["evaluate", "--run-dir", str(merged)]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (again["matches_stored"], again["predictions_match"], again["metrics"]) == (True, True, first["metrics"])
    assert main(["report", str(merged), str(task), "--samples", "20"]) == 0  # the merge is a run report reads
    printed = capsys.readouterr().out
    assert "| lora |" in printed and "| merge (0.9 lora + 0.1 align) |" in printed  # the merge is a row of its own


def test_bad_alignment_settings_are_one_line_errors(tmp_path, capsys):
    assert main(["train", *QUICK, "--method", "align", "--align-ratio", "0:0", "--output-dir", str(tmp_path)]) == 2
    assert "align_ratio" in capsys.readouterr().err
    assert main(["train", *QUICK, "--method", "flare", "--lora-targets", "all-linear",
                 "--output-dir", str(tmp_path / "f")]) == 2
    assert "query/value" in capsys.readouterr().err
