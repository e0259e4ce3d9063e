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


def test_compare_runs_every_method_over_seeds_on_a_users_file_with_fusion_only_for_flare(tmp_path, capsys):
    import csv

    words = {"positive": "good", "negative": "bad"}
    for split, n in (("train", 24), ("test", 12)):
        with (tmp_path / f"{split}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "source_text", "target_text", "label"])
            for i in range(n):
                label = ("positive", "negative")[i % 2]
                writer.writerow([f"{split}-{i}", f"a {words[label]} day {i}", f"dina {words[label]} {i}", label])
    out = tmp_path / "cmp"
    argv = ["compare", "--model", "tiny-random/bert", "--task", "custom", "--train-file", str(tmp_path / "train.csv"),
            "--test-file", str(tmp_path / "test.csv"), "--target-lang", "jv", "--methods", "zero-shot", "lora",
            "flare", "--seeds", "0", "1", "--fusion", "add", "--epochs", "1", "--stage1-epochs", "1", "--lora-r", "4",
            "--lora-alpha", "8", "--batch-size", "8", "--no-show-progress", "--output-dir", str(out), "--samples", "50"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert sum(line.startswith("ran   ") for line in printed.out.splitlines()) == 6
    assert "| flare (add) − lora |" in printed.out and "| zero-shot | " in printed.out
    assert json.loads((out / "method=flare__seed=1" / "metrics.json").read_text())["fusion"] == "add"
    assert json.loads((out / "method=lora__seed=1" / "metrics.json").read_text())["fusion"] is None
    assert "xlt: study run 6/6: method=flare__seed=1, about " in printed.err  # progress with the time left


def test_the_shipped_study_files_expand_to_valid_runs(tmp_path):
    from pathlib import Path

    from xlt.runs.study import expand, read_study

    shipped = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.yaml"))
    sizes = {path.name: len(expand(*read_study(path), tmp_path)) for path in shipped}
    assert sizes == {"alignment-nusax.yaml": 3 * 4 * 3, "flare-nusax.yaml": 11 * 5 * 3}
