"""xlt study: a comparison from one file (lists are axes), checked before anything trains, resumed without
redoing finished runs, fanned out over local workers, ending with the report."""

import json

from helpers import cli_error

from xlt.cli.main import main

SHARED = """model: tiny-random/bert
task: nusax
max_train_examples: 16
max_eval_examples: 12
stage1_max_train_examples: 16
epochs: 1
stage1_epochs: 1
lora_r: 4
lora_alpha: 8
batch_size: 8
show_progress: false
"""


def _study(tmp_path, axes: str):
    path = tmp_path / "study.yaml"
    path.write_text(SHARED + axes)
    return path


def test_a_study_runs_its_product_reports_it_and_resumes_without_redoing_runs(tmp_path, capsys):
    study = _study(tmp_path, "target_lang: [ace, jv]\nmethod: [zero-shot, lora]\nseed: [0]\n")
    out = tmp_path / "runs"
    assert main(["study", str(study), "--output-dir", str(out), "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "to do target_lang=ace__method=zero-shot__seed=0", "to do target_lang=ace__method=lora__seed=0",
        "to do target_lang=jv__method=zero-shot__seed=0", "to do target_lang=jv__method=lora__seed=0"]
    assert not out.exists()  # a dry run writes nothing
    assert main(["study", str(study), "--output-dir", str(out), "--samples", "50"]) == 0
    printed = capsys.readouterr().out
    assert sum(line.startswith("ran   ") for line in printed.splitlines()) == 4
    assert "| zero-shot |" in printed and "| lora − " not in printed and "| zero-shot − lora |" in printed
    metrics = json.loads((out / "target_lang=jv__method=lora__seed=0" / "metrics.json").read_text())
    assert (metrics["method"], metrics["target_lang"], metrics["test_examples"]) == ("lora", "jv", 12)
    # a killed study: one run's folder is gone, the others finished; only that one runs again
    import shutil

    shutil.rmtree(out / "target_lang=ace__method=lora__seed=0")
    assert main(["study", str(study), "--output-dir", str(out), "--samples", "50"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith(("ran", "done"))] == [
        "done  target_lang=ace__method=zero-shot__seed=0", "done  target_lang=jv__method=zero-shot__seed=0",
        "done  target_lang=jv__method=lora__seed=0", "ran   target_lang=ace__method=lora__seed=0: " +
        lines[3].split(": ", 1)[1]]


def test_two_local_workers_run_a_study(tmp_path, capsys):
    study = _study(tmp_path, "target_lang: jv\nmethod: [lora, flare]\nseed: [0, 1]\n")
    out = tmp_path / "runs"
    assert main(["study", str(study), "--output-dir", str(out), "--workers", "2", "--samples", "50"]) == 0
    printed = capsys.readouterr().out
    assert sum(line.startswith("ran   ") for line in printed.splitlines()) == 4
    assert sorted(p.name for p in out.iterdir()) == [
        "method=flare__seed=0", "method=flare__seed=1", "method=lora__seed=0", "method=lora__seed=1"]
    assert "| flare (add_relu) − lora |" in printed  # two seeds each: the paired interval over both


def test_a_bad_cell_stops_the_study_before_anything_runs(tmp_path, capsys):
    study = _study(tmp_path, "target_lang: [jv, xx]\nmethod: lora\n")
    assert main(["study", str(study), "--output-dir", str(tmp_path / "runs")]) == 2
    assert cli_error(capsys).startswith("study run target_lang=xx: ")
    assert not (tmp_path / "runs").exists()
    empty_axis = _study(tmp_path, "method: []\n")
    assert main(["study", str(empty_axis)]) == 2
    assert cli_error(capsys) == f"study file {empty_axis}: axis 'method' has no values"
