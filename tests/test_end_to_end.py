"""End to end on real data: the embedded e5-small on a few NusaX rows, and the demo on a tiny model."""

import json

from xlt.cli import main
from xlt.demo import DEMO_METHODS, DemoPlan, run_demo


def test_flare_run_with_the_embedded_model_on_nusax(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--model", "e5-small", "--task", "nusax", "--method", "flare", "--fusion", "add_relu",
            "--source-lang", "en", "--target-lang", "acehnese", "--max-train-examples", "12",
            "--max-eval-examples", "12", "--epochs", "1", "--stage1-epochs", "1", "--max-length", "24",
            "--batch-size", "6", "--lora-r", "8", "--lora-alpha", "16", "--no-show-progress",
            "--output-dir", str(out)]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "e5-small" and metrics["target_lang"] == "ace" and metrics["fusion"] == "add_relu"
    assert metrics["train_examples"] == 12 and metrics["test_examples"] == 12
    # r=8 on query and value of 12 layers of hidden size 384: 24 * (384*8 + 8*384)
    assert metrics["trainable_params"] == 24 * 2 * 384 * 8
    assert 0.0 <= metrics["metrics"]["accuracy"] <= 1.0
    assert abs(metrics["gap"]["accuracy"]["absolute"]
               - (metrics["source_metrics"]["accuracy"] - metrics["metrics"]["accuracy"])) < 1e-12
    capsys.readouterr()
    assert main(["evaluate", "--run-dir", str(out)]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["metrics"] == metrics["metrics"]
    assert again["metrics_zero_source"] == metrics["metrics_zero_source"]


def test_demo_writes_one_result_per_run_and_a_summary(tmp_path):
    plan = DemoPlan(languages=("ace", "jv"), seeds=(0, 1), max_train_examples=8, max_eval_examples=8,
                    epochs=1, stage1_epochs=1, bf16=False)
    table = run_demo(tmp_path, plan, model="tiny-random/bert", show_progress=False)
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2 * len(DEMO_METHODS)
    assert {(r["method"], r["fusion"]) for r in rows} == set(DEMO_METHODS)
    assert {r["target_lang"] for r in rows} == {"ace", "jv"}
    summary = (tmp_path / "summary.md").read_text()
    assert summary == table
    assert "| flare (add_relu) |" in summary and "± " in summary  # two seeds: mean ± std
    assert len(list((tmp_path / "stage1").rglob("stage1.json"))) == 2  # one English model per seed


def test_demo_reuses_finished_runs(tmp_path, monkeypatch):
    plan = DemoPlan(languages=("jv",), max_train_examples=8, max_eval_examples=8, epochs=1, stage1_epochs=1,
                    bf16=False)
    first = run_demo(tmp_path, plan, model="tiny-random/bert", show_progress=False)
    import xlt.demo

    def fail(cfg):
        raise AssertionError(f"re-ran {cfg.method}")

    monkeypatch.setattr(xlt.demo, "run_stage2", fail)
    assert run_demo(tmp_path, plan, model="tiny-random/bert", show_progress=False) == first
