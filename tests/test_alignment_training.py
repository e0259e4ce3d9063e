"""Alignment training wired into runs: the step schedule, alignment-only and alternating training."""

import json

import torch

from xlt.alignment.contrastive import AlternatingSchedule
from xlt.cli import main
from xlt.training.loop import step_plan


class _FakeAligner:
    def __init__(self, task: int, align: int, per_epoch: int = 4):
        self.schedule = AlternatingSchedule(task, align)
        self.per_epoch = per_epoch

    def steps_per_epoch(self) -> int:
        return self.per_epoch


def test_step_plan_interleaves_alignment_steps_by_ratio():
    batches = [[0], [1], [2]]
    assert step_plan(1, batches, None, True) == batches
    assert step_plan(1, batches, _FakeAligner(1, 1), True) == [[0], "align", [1], "align", [2], "align"]
    assert step_plan(1, batches, _FakeAligner(2, 1), True) == [[0], [1], "align", [2]]
    assert step_plan(2, batches, _FakeAligner(0, 1, per_epoch=3), False) == ["align"] * 6


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


def test_bad_alignment_settings_are_one_line_errors(tmp_path, capsys):
    assert main(["train", *QUICK, "--method", "align", "--align-ratio", "0:0", "--output-dir", str(tmp_path)]) == 2
    assert "align_ratio" in capsys.readouterr().err
    assert main(["train", *QUICK, "--method", "flare", "--lora-targets", "all-linear",
                 "--output-dir", str(tmp_path / "f")]) == 2
    assert "query/value" in capsys.readouterr().err
