"""xlt study: a comparison from one file (lists are axes), checked before anything trains, resumed without
redoing finished runs, fanned out over local workers, ending with the report."""

import json

import pytest
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
    assert sizes == {"alignment-nusax.yaml": 3 * 4 * 3, "flare-fusions-nusax.yaml": 3 * 7 * 3,
                     "flare-nusax.yaml": 11 * 5 * 3}


def test_extra_runs_follow_the_product_with_its_naming_and_a_repeated_run_is_refused(tmp_path, capsys):
    study = _study(tmp_path, "target_lang: jv\nmethod: [zero-shot, lora]\nseed: 0\n"
                             "extra:\n  - {method: flare, fusion: mul}\n  - {method: lora, seed: 1, lora_r: 2}\n")
    out = tmp_path / "runs"
    assert main(["study", str(study), "--output-dir", str(out), "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "to do method=zero-shot", "to do method=lora", "to do method=flare__fusion=mul",
        "to do method=lora__seed=1__lora_r=2"]
    from xlt.runs.study import expand, read_study

    runs = expand(*read_study(study), out)
    assert [(r.cfg.method, r.cfg.fusion, r.cfg.seed, r.cfg.lora_r, r.cfg.target_lang) for r in runs[2:]] == [
        ("flare", "mul", 0, 4, "jv"), ("lora", None, 1, 2, "jv")]  # shared settings + the mapping
    assert runs[3].cfg.output_dir == str(out / "method=lora__seed=1__lora_r=2")
    repeated = _study(tmp_path, "target_lang: jv\nmethod: [zero-shot, lora]\nextra:\n  - {seed: 0, method: lora}\n")
    assert main(["study", str(repeated), "--output-dir", str(out), "--dry-run"]) == 2
    assert cli_error(capsys) == "study run seed=0__method=lora is the same run as method=lora; leave one out"
    with_axis = _study(tmp_path, "method: lora\nextra:\n  - {seed: [0, 1]}\n")
    assert main(["study", str(with_axis), "--dry-run"]) == 2
    assert cli_error(capsys) == (f"study file {with_axis}: extra run 1 gives 'seed' several values; an extra run is "
                                 "one run (put each value in a run of its own)")


def test_the_submitit_engine_runs_a_study_as_local_jobs_two_at_once_and_resumes(tmp_path, capsys):
    study = _study(tmp_path, "target_lang: jv\nmethod: [zero-shot, lora]\nseed: [0, 1]\n")
    out = tmp_path / "runs"
    argv = ["study", str(study), "--output-dir", str(out), "--engine", "submitit", "--workers", "2", "--samples", "50"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert sum(line.startswith("ran   ") for line in printed.out.splitlines()) == 4
    assert "| zero-shot − lora |" in printed.out
    from xlt.runs.report import find_runs

    assert len(find_runs([out])) == 4
    assert sorted(p.name for p in out.iterdir()) == [
        "logs", "method=lora__seed=0", "method=lora__seed=1", "method=zero-shot__seed=0", "method=zero-shot__seed=1"]
    assert len(list((out / "logs").glob("*/*_log.err"))) == 4  # each job's log, inside the study's folder
    assert main(argv) == 0  # again: every run is finished, none is submitted
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith(("ran", "done"))] == [
        "done  method=zero-shot__seed=0", "done  method=zero-shot__seed=1", "done  method=lora__seed=0",
        "done  method=lora__seed=1"]
    assert len(list((out / "logs").glob("*/*_log.err"))) == 4


def test_a_failed_job_is_one_line_naming_its_log_and_the_study_exits_1_keeping_the_finished_run(
        tmp_path, capsys, data_dir):
    """One run reads an empty data folder (which no check before the run looks into): its job fails in its own
    process; the study prints its error and log, reports the run that finished and exits 1; run again, only the
    failed run is submitted."""
    (tmp_path / "empty").mkdir()
    study = _study(tmp_path, f"target_lang: jv\nmethod: zero-shot\ndata_dir: [{data_dir}, {tmp_path / 'empty'}]\n")
    out = tmp_path / "runs"
    argv = ["study", str(study), "--output-dir", str(out), "--engine", "submitit", "--workers", "2", "--samples", "20"]
    assert main(argv) == 1
    printed = capsys.readouterr()
    failed = [line for line in printed.out.splitlines() if line.startswith("failed")]
    (log,) = [p for p in (out / "logs").glob("*/*_log.err") if "train.csv" in p.read_text()]
    missing = f"failed data_dir={_name(tmp_path / 'empty')}: file not found: {tmp_path / 'empty' / 'nusax'}/"
    assert len(failed) == 1 and failed[0].startswith(missing) and failed[0].endswith(f"/train.csv (log: {log})")
    assert "| zero-shot | " in printed.out  # the finished run's report
    assert printed.err.strip().splitlines()[-1] == (
        "xlt: error: 1 of the study's runs failed (their lines above say why); the finished ones stay: run the same "
        "command again to run the failed ones")
    assert main(argv) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith(("done", "failed", "ran"))] == [
        f"done  data_dir={_name(data_dir)}", f"failed data_dir={_name(tmp_path / 'empty')}"]


def _name(path) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9=+_.,-]", "_", str(path))


def test_a_slurm_block_becomes_submitits_slurm_parameters_checked_by_submitit(tmp_path, capsys):
    """No SLURM here: the parameters are those handed to submitit's AutoExecutor, which checks them itself on its
    in-process "debug" cluster; on a machine without srun the slurm: block is refused before anything runs."""
    from xlt.errors import XltError
    from xlt.runs.cluster import executor_parameters, make_executor

    block = {"partition": "gpu", "gpus_per_node": 1, "cpus_per_task": 8, "mem": "32G", "time": 240}
    parameters = executor_parameters(block, workers=4)
    assert parameters == {"slurm_partition": "gpu", "slurm_gpus_per_node": 1, "slurm_cpus_per_task": 8,
                          "slurm_mem": "32G", "slurm_time": 240, "slurm_array_parallelism": 4}
    assert executor_parameters({**block, "array_parallelism": 2}, workers=4)["slurm_array_parallelism"] == 2
    assert executor_parameters(None, workers=2) == {"timeout_min": 7 * 24 * 60}
    with pytest.raises(XltError) as err:
        executor_parameters({**block, "gpus_per_node": 4}, workers=1)
    assert str(err.value) == ("the study file's slurm: block asks for gpus_per_node: 4; a study run is one process on "
                              "one GPU (several GPUs per run: xlt train under accelerate launch, docs/several-gpus.md)")
    make_executor(tmp_path / "logs", parameters, cluster="debug")  # submitit accepts every one of them
    try:
        make_executor(tmp_path / "logs", executor_parameters({**block, "partiton": "gpu"}, 1), cluster="debug")
    except XltError as err:
        assert str(err).startswith("the study file's slurm: block: Unknown argument 'partiton' for executor 'slurm'")
    else:
        raise AssertionError("a misspelt SLURM parameter was accepted")
    study = _study(tmp_path, "method: [zero-shot, lora]\nslurm:\n  partition: gpu\n  time: 240\n")
    assert main(["study", str(study), "--output-dir", str(tmp_path / "runs")]) == 2
    assert cli_error(capsys) == (f"study file {study} has a slurm: block, which only --engine submitit submits; add "
                                 "--engine submitit (or leave the block out to run here)")
    assert main(["study", str(study), "--engine", "submitit", "--output-dir", str(tmp_path / "runs")]) == 2
    assert cli_error(capsys).startswith("cannot submit to slurm: ")
    no_time = _study(tmp_path, "method: [zero-shot, lora]\nslurm:\n  partition: gpu\n")
    assert main(["study", str(no_time), "--engine", "submitit", "--output-dir", str(tmp_path / "runs")]) == 2
    assert cli_error(capsys) == "the study file's slurm: block needs time: the minutes one run may take (e.g. time: 240)"
    assert not (tmp_path / "runs").exists()


def test_the_submitit_engine_without_submitit_is_one_line(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    study = _study(tmp_path, "method: [zero-shot, lora]\n")
    assert main(["study", str(study), "--engine", "submitit", "--output-dir", str(tmp_path / "runs")]) == 2
    assert cli_error(capsys) == '--engine submitit needs submitit: pip install "xlt[cluster]"'


def test_a_killed_study_of_two_languages_five_methods_and_two_seeds_resumes_and_reports_every_cell(tmp_path, capsys):
    """The issue's acceptance case: 20 runs on a tiny model, the study process killed (SIGKILL) mid-way, then run
    again: finished runs are kept untouched, the rest run, and the report has 10 cells and 5 comparisons × 2
    languages with intervals."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    study = _study(tmp_path, "seed: [0, 1]\ntarget_lang: [ace, jv]\n"
                             "method: [zero-shot, translate-test, lora, input-fusion, flare]\n")
    out = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "xlt.cli", "study", str(study), "--output-dir", str(out)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    finished = lambda: sorted(p.parent.name for p in out.glob("*/metrics.json"))  # noqa: E731
    deadline = time.monotonic() + 600
    while len(finished()) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    kept = {name: (out / name / "metrics.json").stat().st_mtime_ns for name in finished()}
    assert 3 <= len(kept) < 20
    assert main(["study", str(study), "--output-dir", str(out), "--samples", "50"]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert sorted(line.split()[1] for line in lines if line.startswith("done  ")) == sorted(kept)
    assert sum(line.startswith("ran   ") for line in lines) == 20 - len(kept)
    assert {name: (out / name / "metrics.json").stat().st_mtime_ns for name in kept} == kept  # not redone
    assert len(finished()) == 20 and sorted(p.name for p in out.iterdir() if p.name != "logs") == finished()
    table = printed[printed.index("| method | ace | jv |"):].split("\n\n")[0].splitlines()
    cells = [row for row in table[2:] if not row.startswith(("| English", "| flare (add_relu), English"))]
    assert len(cells) == 5 and all(re.search(r"\| \d\.\d{3} ± \d\.\d{3} \| \d\.\d{3} ± \d\.\d{3} \|", c) for c in cells)
    comparisons = [row for row in printed.split("Differences")[1].splitlines() if " − " in row]
    assert [row.split(" | ")[0] for row in comparisons] == [
        "| zero-shot − lora", "| translate-test − lora", "| input-fusion − lora", "| flare (add_relu) − lora",
        "| flare (add_relu) − input-fusion"]
    assert all(len(re.findall(r"[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]", row)) == 2 for row in comparisons)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_failed_run_of_the_local_engines_is_one_line_and_the_other_runs_go_on(tmp_path, capsys, data_dir, workers):
    (tmp_path / "empty").mkdir()
    study = _study(tmp_path, f"target_lang: jv\nmethod: zero-shot\ndata_dir: [{tmp_path / 'empty'}, {data_dir}]\n")
    out = tmp_path / "runs"
    assert main(["study", str(study), "--output-dir", str(out), "--workers", workers, "--samples", "20"]) == 1
    printed = capsys.readouterr()
    lines = [line for line in printed.out.splitlines() if line.startswith(("failed", "ran"))]
    missing = f"failed data_dir={_name(tmp_path / 'empty')}: file not found: {tmp_path / 'empty' / 'nusax'}/sentiment/"
    assert lines[0].startswith(missing) and lines[0].endswith("/train.csv")  # the English or the Javanese file
    assert lines[1].startswith(f"ran   data_dir={_name(data_dir)}: accuracy ")  # the run after the failed one ran
    assert "| zero-shot | " in printed.out and printed.err.strip().splitlines()[-1].startswith(
        "xlt: error: 1 of the study's runs failed")
