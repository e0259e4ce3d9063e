"""Training under ``accelerate launch``: two CPU processes (gloo) train like one and only one writes."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from xlt.cli import main
from xlt.training.loop import shard

SRC = Path(__file__).resolve().parents[1] / "src"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("method", ["flare", "lora"])
def test_two_processes_give_the_metrics_and_adapter_of_one(method, tmp_path, capsys):
    # tiny llama with LoRA dropout 0 (both stages) has no dropout anywhere, so one and two processes take the same steps
    args = ["train", "--model", "tiny-random/llama", "--lora-dropout", "0", "--stage1-lora-dropout", "0",
            "--task", "nusax", "--method", method, "--target-lang", "jv",
            "--max-train-examples", "14", "--max-eval-examples", "16", "--epochs", "2", "--stage1-epochs", "1",
            "--stage1-max-train-examples", "16", "--batch-size", "4", "--no-show-progress"]
    assert main([*args, "--stage1-dir", str(tmp_path / "s1"), "--output-dir", str(tmp_path / "one")]) == 0
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
              "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
              "-m", "xlt.cli", *args, "--stage1-dir", str(tmp_path / "s2"), "--output-dir", str(tmp_path / "two")]
    # --multi_gpu starts torchrun's processes; without CUDA they join over gloo (xlt.processes)
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert (one["processes"], two["processes"]) == (1, 2)
    assert two["metrics"] == one["metrics"] and two["source_metrics"] == one["source_metrics"]
    assert two["trainable_params"] == one["trainable_params"] and two["train_examples"] == 14
    # 14 rows in batches of 4: the last batch (2 rows) splits 1 + 1, the others 2 + 2; the loss weights make
    # the averaged gradient that of the whole batch, so the adapters agree to float rounding
    a, b = (load_file(str(tmp_path / d / "adapter" / "adapter_model.safetensors")) for d in ("one", "two"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-5)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("one", "two", "s1", "s2")]
    assert leftovers == []  # no second copy or temp folder from the other process
    capsys.readouterr()
    assert main(["evaluate", "--run-dir", str(tmp_path / "two")]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["matches_stored"] is True and again["metrics"] == two["metrics"]


@pytest.mark.parametrize("rows, world", [(4, 2), (3, 2), (5, 4), (1, 2)])
def test_weighted_shard_losses_average_to_the_batch_mean(rows, world):
    losses = torch.arange(1.0, rows + 1)  # one loss per row of the batch
    step = list(range(rows))
    averaged = sum(losses[shard(step, r, world)[0]].mean() * shard(step, r, world)[1] for r in range(world)) / world
    assert torch.isclose(averaged, losses.mean())
    covered = sorted(i for r in range(world) for i in shard(step, r, world)[0] if shard(step, r, world)[1] > 0)
    assert covered == step  # every row once, in exactly one process with weight
