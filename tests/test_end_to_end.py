"""End to end on real data: the embedded e5-small on a few NusaX rows, and the demo on a tiny model."""

import dataclasses
import json

import pytest

from xlt.cli import main
from xlt.runs.demo import ALIGNMENT_SUITE, FLARE_SUITE, DemoPlan, run_demo
from xlt.runs.evaluate import evaluate_run
from xlt.runs.stage1 import stage1_dir


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
    assert len(rows) == 2 * 2 * len(FLARE_SUITE)
    assert {(r["method"], r["fusion"]) for r in rows} == {("zero-shot", None), ("translate-test", None), ("lora", None),
                                                          ("input-fusion", None), ("flare", "add_relu")}
    assert {r["target_lang"] for r in rows} == {"ace", "jv"}
    summary = (tmp_path / "summary.md").read_text()
    assert summary == table
    assert "| flare (add_relu) |" in summary and "± " in summary  # two seeds: mean ± std
    assert summary.splitlines()[2:5] == [
        "- 2 seeds (0, 1); cells are mean ± sample standard deviation over seeds",
        "- stage 1 (English): 500 training and 8 test examples",  # all English training rows
        "- stage 2 (each target language): 8 training and 8 test examples"]
    assert all(r["stage1_examples"] == {"train": 500, "test": 8} for r in rows)
    assert len(list((tmp_path / "stage1").rglob("stage1.json"))) == 2  # one English model per seed


def test_demo_reuses_finished_runs(tmp_path, monkeypatch):
    plan = DemoPlan(languages=("jv",), max_train_examples=8, max_eval_examples=8, epochs=1, stage1_epochs=1,
                    bf16=False)
    first = run_demo(tmp_path, plan, model="tiny-random/bert", show_progress=False)
    import xlt.runs.demo

    def fail(cfg, **kwargs):
        raise AssertionError(f"re-ran {cfg.method}")

    monkeypatch.setattr(xlt.runs.demo, "run_stage2", fail)
    assert run_demo(tmp_path, plan, model="tiny-random/bert", show_progress=False) == first


def test_alignment_demo_compares_lora_alignment_and_their_merge(tmp_path, monkeypatch):
    plan = DemoPlan(languages=("jv",), seeds=(0,), max_train_examples=8, max_eval_examples=8, epochs=1,
                    stage1_epochs=1, bf16=False)
    table = run_demo(tmp_path, plan, model="tiny-random/bert", show_progress=False, suite="alignment")
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["method"] for r in rows] == [m.name for m in ALIGNMENT_SUITE]
    by_name = {r["method"]: r for r in rows}
    merged = by_name["merge: 0.9 lora + 0.1 align"]
    assert merged["merge"]["weights"] == [0.9, 0.1] and merged["merge"]["rank"] == 16  # r=8 + r=8, exact
    assert [i["run"] for i in merged["demo_inputs"]] == [by_name["lora"]["output_dir"], by_name["align"]["output_dir"]]
    for name in ("lora+align", "align"):
        assert set(by_name[name]["alignment_retrieval"]) == {"jv"}
    # the merged run is a normal run directory: evaluating it again gives the recorded metrics
    again = evaluate_run(merged["output_dir"])
    assert again["metrics"] == merged["metrics"] and again["matches_stored"] is True
    assert again["predictions_match"] is True  # the merge kept its predictions.jsonl, as a trained run does
    card = (tmp_path / "runs" / "jv" / "merge_0.9lora+0.1align" / "seed0" / "adapter" / "README.md").read_text()
    assert f"| jv: accuracy | {merged['metrics']['accuracy']:.4f} |" in card  # the card got the merge's scores
    assert "| merge: 0.9 lora + 0.1 align |" in table and "before → after" in table
    assert len(list((tmp_path / "stage1").rglob("stage1.json"))) == 1  # r=8 rows share one English model

    import xlt.alignment.merge
    import xlt.runs.demo

    def fail(*args):
        raise AssertionError("re-ran a finished row")

    monkeypatch.setattr(xlt.runs.demo, "run_stage2", fail)
    monkeypatch.setattr(xlt.alignment.merge, "merge_runs", fail)
    assert run_demo(tmp_path, plan, model="tiny-random/bert", show_progress=False, suite="alignment") == table


def test_every_stage2_method_and_rank_reads_one_english_model(tmp_path):
    """A decoder's stage 1 is LoRA with its own rank: zero-shot (r=64) and align (r=8) used to read two English
    models, so the alignment suite compared an aligned module with another model's zero-shot."""
    from xlt.config import RunConfig

    def folder(model, method, r, stage1_r=64):
        return stage1_dir(RunConfig(model=model, method=method, lora_r=r, stage1_lora_r=stage1_r,
                                    stage1_dir=str(tmp_path)))

    for model in ("tiny-random/bert", "tiny-random/llama"):
        assert folder(model, "flare", 64) == folder(model, "align", 8) == folder(model, "zero-shot", None)
    assert folder("tiny-random/bert", "lora", 8, stage1_r=4) == folder("tiny-random/bert", "lora", 8)  # full FT
    assert folder("tiny-random/llama", "lora", 8, stage1_r=4) != folder("tiny-random/llama", "lora", 8)  # LoRA


def test_demo_cli_ends_with_where_it_wrote(tmp_path, capsys, monkeypatch):
    import xlt.runs.demo

    plans = []

    def fake_demo(output_dir, plan, **kwargs):
        plans.append(plan)
        return "TABLE"

    monkeypatch.setattr(xlt.runs.demo, "run_demo", fake_demo)
    assert main(["demo", "--quick", "--seeds", "0", "1", "--output-dir", str(tmp_path / "d")]) == 0
    assert capsys.readouterr().out == (f"TABLE\nwrote {tmp_path / 'd' / 'results.jsonl'} (one JSON object per run) "
                                       f"and {tmp_path / 'd' / 'summary.md'}\n")
    assert plans[0].quick and plans[0].seeds == (0, 1)  # the summary will say it was a --quick run


class _Recorded(Exception):
    pass


def test_the_demo_takes_bf16_only_where_the_hardware_has_it(tmp_path, monkeypatch):
    """Emulated bf16 (an AVX2 CPU) made each demo step some 30x slower than fp32."""
    import xlt.runs.demo
    import xlt.training.loop

    seen = []

    def record(run, **kwargs):  # the demo hands each row's resolved Run (xlt.runs.recipe) to run_stage2
        seen.append(run.cfg.bf16)
        raise _Recorded

    monkeypatch.setattr(xlt.runs.demo, "run_stage2", record)
    for native, plan_bf16 in ((True, None), (False, None), (True, False), (False, True)):
        monkeypatch.setattr(xlt.training.loop, "bf16_is_native", lambda: native)
        with pytest.raises(_Recorded):
            run_demo(tmp_path / f"{native}-{plan_bf16}", DemoPlan(languages=("jv",), bf16=plan_bf16),
                     model="tiny-random/bert", show_progress=False)
    assert seen == [True, False, False, True]


def test_train_warns_when_bf16_would_be_emulated(tmp_path, monkeypatch, capsys):
    import xlt.runs.stage2
    import xlt.training.loop

    def stop(cfg, **kwargs):
        raise _Recorded

    monkeypatch.setattr(xlt.runs.stage2, "run_stage2", stop)  # the warning comes before any training
    args = ["train", "--model", "tiny-random/bert", "--task", "nusax", "--method", "lora", "--target-lang", "jv",
            "--output-dir", str(tmp_path / "run")]
    for native, flags, warned in ((False, ["--bf16"], True), (True, ["--bf16"], False), (False, [], False)):
        monkeypatch.setattr(xlt.training.loop, "bf16_is_native", lambda: native)
        with pytest.raises(_Recorded):
            main(args + flags)
        err = capsys.readouterr().err
        assert ("xlt: warning: --bf16 on hardware without native bf16" in err) == warned


def test_demo_plans_for_the_other_tasks():
    from xlt.errors import XltError
    from xlt.runs.demo import QUICK, demo_plan

    uner = demo_plan("e5-small", task="uner")
    assert (uner.task, uner.languages, uner.max_length, uner.epochs) == ("uner", ("de", "ru", "zh"), 128, 3)
    assert (uner.stage1_lr, uner.stage1_epochs) == (None, None)  # the task's budget, which RunConfig resolves
    quick = demo_plan("e5-small", quick=True, task="mlqa")  # a quick plan takes only the task's languages
    assert quick == dataclasses.replace(QUICK, task="mlqa", languages=("de", "es"))
    assert demo_plan("gemma3-270m", task="xnli").max_train_examples == 1000  # the task's cap over the model's
    with pytest.raises(XltError, match="xlt demo runs tasks nusax, xnli, uner, mlqa, not 'panx'"):
        demo_plan("e5-small", task="panx")


def test_flare_demo_on_uner_reports_f1_tables_and_its_gap(tmp_path, capsys):
    plan = DemoPlan(task="uner", languages=("de",), max_train_examples=8, max_eval_examples=8, epochs=1,
                    stage1_epochs=1, stage1_max_train_examples=16, bf16=False)
    table = run_demo(tmp_path, plan, model="tiny-random/bert", show_progress=False)
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [(r["task"], r["method"]) for r in rows] == [("uner", m.settings[0][1]) for m in FLARE_SUITE]
    assert all(set(r["metrics"]) == {"precision", "recall", "f1"} for r in rows)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("[1/5] seed 0   de zero-shot        f1 ") and len(printed) == 5
    headings = [line for line in table.splitlines() if line.startswith("#")]
    assert headings[:4] == ["# xlt demo: UNER PUD named entities (tagging), tiny-random/bert, English → target",
                            "## f1", "## precision", "## recall"]
    lora = next(r for r in rows if r["method"] == "lora")
    gap = lora["gap"]["f1"]["absolute"]
    assert f"| lora | {lora['metrics']['f1']:.3f} | {lora['metrics']['f1']:.3f} | {gap:.3f} |" in table
    assert "| method | de | mean | gap to English |" in table
    from xlt.runs.demo import summary_markdown

    untrained = [{**r, "gap": {}, "source_metrics": {"precision": 0.0, "recall": 0.0, "f1": 0.0}} for r in rows]
    assert "| method | de | mean |" in summary_markdown(untrained).splitlines()  # no gap where English scores 0


@pytest.mark.parametrize("extra, words", [
    (["--task", "uner", "--suite", "alignment"], ["the alignment suite runs NusaX; --task uner runs with --suite flare"]),
    (["--task", "uner", "--languages", "de", "ace"], ["task uner has no language 'ace'", "supported: en (English), de (German)"]),
    (["--languages", "klingon"], ["unknown language 'klingon' for task nusax"]),
])
def test_demo_refuses_a_task_it_cannot_run_before_anything_loads(tmp_path, capsys, extra, words):
    assert main(["demo", "--output-dir", str(tmp_path / "d"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert all(w in err for w in words) and len(err.splitlines()) == 1, err
    assert not (tmp_path / "d").exists()
