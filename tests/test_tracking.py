"""Experiment tracking (``--report-to``), offline through TensorBoard: what the event files hold, checked against
the training plan, the learning-rate schedule and metrics.json; the refusals; one process writes."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import cli_error
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from xlt.cli.main import build_parser, main
from xlt.config import RunConfig
from xlt.errors import XltError
from xlt.runs.stage2 import finished_run

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = ["--model", "tiny-random/bert", "--task", "nusax", "--target-lang", "jv", "--max-train-examples", "24",
        "--max-eval-examples", "20", "--lora-r", "4", "--batch-size", "8", "--no-show-progress"]


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar the run's TensorBoard files hold, by tag: (step, value) in order."""
    events = EventAccumulator(str(run_dir / "tracking" / "xlt"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def linear_schedule(lr: float, steps: int, warmup_ratio: float = 0.1) -> list[float]:
    """The rate of each optimizer step under transformers' linear warm-up and decay (TrainSettings' 0.1 warm-up)."""
    warmup = int(warmup_ratio * steps)
    return [lr * (k / max(1, warmup) if k < warmup else max(0.0, (steps - k) / max(1, steps - warmup)))
            for k in range(steps)]


def test_tensorboard_logs_each_step_the_schedule_and_the_test_metrics(tmp_path):
    # stage 1: 100 English examples in batches of 8 = 13 steps (1 of warm-up); stage 2: 24 in 8s, 2 epochs = 6 steps
    args = ["train", *TINY, "--method", "flare", "--epochs", "2", "--lr", "0.001", "--stage1-epochs", "1",
            "--stage1-max-train-examples", "100", "--stage1-lr", "0.0001", "--stage1-dir", str(tmp_path / "s1")]
    assert main([*args, "--output-dir", str(tmp_path / "tracked"), "--report-to", "tensorboard"]) == 0
    logged = scalars(tmp_path / "tracked")
    assert set(logged) == {"stage1/loss", "stage1/lr", "stage2/loss", "stage2/lr", "eval/accuracy", "eval/macro_f1",
                           "eval/zero_source/accuracy", "eval/zero_source/macro_f1", "eval/en/accuracy",
                           "eval/en/macro_f1"}
    for stage, steps, lr in (("stage1", 13, 1e-4), ("stage2", 6, 1e-3)):
        assert [step for step, _ in logged[f"{stage}/loss"]] == list(range(1, steps + 1))
        assert all(math.isfinite(loss) and loss > 0 for _, loss in logged[f"{stage}/loss"])
        assert [step for step, _ in logged[f"{stage}/lr"]] == list(range(1, steps + 1))
        assert [rate for _, rate in logged[f"{stage}/lr"]] == pytest.approx(linear_schedule(lr, steps), rel=1e-6)
    assert logged["stage1/lr"][0][1] == 0.0  # the warm-up's first step
    metrics = json.loads((tmp_path / "tracked" / "metrics.json").read_text())
    for tag, value in [*((f"eval/{k}", v) for k, v in metrics["metrics"].items()),
                       *((f"eval/zero_source/{k}", v) for k, v in metrics["metrics_zero_source"].items()),
                       *((f"eval/en/{k}", v) for k, v in metrics["source_metrics"].items())]:
        assert logged[tag] == [(6, pytest.approx(value, rel=1e-6))], tag  # at stage 2's last step
    (hparams,) = (tmp_path / "tracked" / "tracking" / "xlt").glob("*/hparams.yml")
    recorded = yaml.safe_load(hparams.read_text())
    assert (recorded["method"], recorded["fusion"], recorded["lr"], recorded["seed"]) == ("flare", "add_relu", 1e-3, 0)
    assert (recorded["stage1_method"], recorded["stage1_lr"], recorded["target_lang"]) == ("full", 1e-4, "jv")
    assert "report_to" not in recorded and "pooling" in recorded

    # the same run untracked (its English model now cached): the same results, no tracking folder, nothing beside it
    assert main([*args, "--output-dir", str(tmp_path / "plain")]) == 0
    plain = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    assert plain["metrics"] == metrics["metrics"] and plain["metrics_zero_source"] == metrics["metrics_zero_source"]
    assert not (tmp_path / "plain" / "tracking").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "s1", "tracked"]  # no temp folder left
    assert RunConfig.from_yaml(tmp_path / "tracked" / "config.yaml").report_to == "tensorboard"
    untracked = RunConfig.from_yaml(tmp_path / "plain" / "config.yaml")
    assert finished_run(untracked.replace(report_to="tensorboard")) == plain  # trackers change no result: not rerun


def test_a_cached_english_model_logs_no_stage1_steps_and_overwrite_replaces_the_logs(tmp_path):
    args = ["train", *TINY, "--method", "zero-shot", "--stage1-epochs", "1", "--stage1-max-train-examples", "16",
            "--stage1-dir", str(tmp_path / "s1"), "--output-dir", str(tmp_path / "run"), "--report-to", "tensorboard"]
    assert main(args) == 0
    assert set(scalars(tmp_path / "run")) >= {"stage1/loss", "eval/accuracy"}
    assert main([*args, "--overwrite"]) == 0  # a run with tracking/ is an xlt run: replaced whole
    logged = scalars(tmp_path / "run")
    assert not any(tag.startswith(("stage1/", "stage2/")) for tag in logged)  # cached; zero-shot does not train
    assert [step for step, _ in logged["eval/accuracy"]] == [0]
    assert len(list((tmp_path / "run" / "tracking" / "xlt").glob("events.out.tfevents.*"))) == 1  # the new run's


def _accelerate_trackers() -> str:
    from accelerate.utils import LoggerType

    return ", ".join(sorted(kind.value for kind in LoggerType if kind.value != "all"))


@pytest.mark.parametrize("name", ["tensorbored", "all"])
def test_an_unknown_tracker_is_one_line_before_anything_loads(tmp_path, capsys, name):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--output-dir", str(out), "--report-to", "tensorboard", name]) == 2
    assert cli_error(capsys) == f"--report-to {name!r} is not one of accelerate's trackers: {_accelerate_trackers()}"
    assert not out.exists()


def test_a_tracker_whose_library_is_missing_is_one_line_naming_the_package(tmp_path, capsys, monkeypatch):
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else found(name, *a))
    out = tmp_path / "run"
    assert main(["train", *TINY, "--output-dir", str(out), "--report-to", "tensorboard", "wandb"]) == 2
    assert cli_error(capsys) == ("--report-to wandb needs the Python package wandb, which is not installed: "
                                 "pip install wandb")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_a_run_started_from_python_checks_its_trackers_too(tmp_path, monkeypatch):
    from xlt.runs.stage2 import run_stage2

    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else found(name, *a))
    cfg = RunConfig(model="tiny-random/bert", target_lang="jv", max_train_examples=8, max_eval_examples=8,
                    output_dir=str(tmp_path / "run"), stage1_dir=str(tmp_path / "s1"), report_to="tensorboard")
    with pytest.raises(XltError, match=r"^--report-to tensorboard needs the Python package tensorboard"):
        run_stage2(cfg)
    assert not (tmp_path / "s1").exists() and not (tmp_path / "run").exists()  # before stage 1 or any write


def test_report_to_takes_names_as_flags_yaml_lists_or_one_string():
    train = build_parser().parse_args(["train", "--report-to", "tensorboard", "wandb"])
    assert train.report_to == ["tensorboard", "wandb"]
    assert RunConfig(report_to=train.report_to).report_to == "tensorboard,wandb"
    assert RunConfig(report_to="tensorboard, wandb tensorboard").trackers == ["tensorboard", "wandb"]
    assert RunConfig(report_to="none").report_to is None and RunConfig().trackers == []
    assert RunConfig(report_to=[]).report_to is None
    with pytest.raises(XltError, match=r"^report_to: none turns tracking off and takes no other name, got 'none,wandb'$"):
        RunConfig(report_to=["none", "wandb"])
    with pytest.raises(XltError, match=r"^report_to must be a string or null, got \[1\] \(list\)$"):
        RunConfig(report_to=[1])


def test_under_two_processes_only_the_main_one_logs_the_whole_batch_loss(tmp_path):
    """Two processes (gloo) log what one process logs: the whole batch's loss (averaged over the processes' weighted
    shares) and the same rates, into one set of files; the other process makes no tracker and writes nothing."""
    # tiny llama without dropout: one and two processes take the same steps (tests/test_distributed.py)
    args = ["train", "--model", "tiny-random/llama", "--lora-dropout", "0", "--stage1-lora-dropout", "0",
            "--task", "nusax", "--method", "lora", "--target-lang", "jv", "--max-train-examples", "14",
            "--max-eval-examples", "8", "--epochs", "1", "--stage1-epochs", "1", "--stage1-max-train-examples", "8",
            "--batch-size", "4", "--no-show-progress", "--report-to", "tensorboard"]
    assert main([*args, "--stage1-dir", str(tmp_path / "s1"), "--output-dir", str(tmp_path / "one")]) == 0
    from test_distributed import _free_port

    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
              str(_free_port()), "-m", "xlt.cli", *args, "--stage1-dir", str(tmp_path / "s2"), "--output-dir",
              str(tmp_path / "two")]
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = scalars(tmp_path / "one"), scalars(tmp_path / "two")
    assert set(two) == set(one)
    for tag in ("stage1/loss", "stage2/loss", "stage1/lr", "stage2/lr"):
        assert [step for step, _ in two[tag]] == [step for step, _ in one[tag]]
        assert [value for _, value in two[tag]] == pytest.approx([value for _, value in one[tag]], rel=1e-4), tag
    assert len(one["stage2/loss"]) == 4  # 14 rows in batches of 4
    files = sorted(str(p.relative_to(tmp_path / "two" / "tracking")) for p in (tmp_path / "two" / "tracking").rglob("*")
                   if p.is_file())
    assert len(files) == 3 and sum("events.out.tfevents" in f for f in files) == 2  # the run's and its hparams'
    pids = {f.rsplit(".", 2)[-2] for f in files if "events.out.tfevents" in f}
    assert len(pids) == 1  # written by one process
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "s1", "s2", "two"]
