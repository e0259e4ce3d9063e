"""The training loop's own settings: gradient clipping before each optimizer step."""

import pytest
import torch

from xlt.config import RunConfig
from xlt.errors import XltError
from xlt.training.loop import TrainSettings, train


class _Steep(torch.nn.Module):
    """A loss whose gradient norm is known: d/dw of 50 * sum(w) is 50 per weight (norm 50 * sqrt(4) = 100)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(4))

    def loss(self) -> torch.Tensor:
        return 50 * self.w.sum()


def _norms_at_each_step(monkeypatch, max_grad_norm: float) -> list[float]:
    seen = []
    real_step = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        seen.append(float(torch.linalg.vector_norm(torch.stack([p.grad for g in self.param_groups
                                                                 for p in g["params"]]))))
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    model = _Steep()
    plan = [lambda m, acc: [lambda: m.loss()]] * 3
    train(model, plan, TrainSettings(epochs=1, lr=1e-3, max_grad_norm=max_grad_norm, show_progress=False))
    return seen


def test_gradients_are_clipped_to_max_grad_norm_before_each_step_and_not_when_off(monkeypatch):
    assert _norms_at_each_step(monkeypatch, 0.0) == pytest.approx([100.0] * 3)
    assert _norms_at_each_step(monkeypatch, 1.0) == pytest.approx([1.0] * 3, rel=1e-5)
    assert _norms_at_each_step(monkeypatch, 500.0) == pytest.approx([100.0] * 3)  # below the bound: untouched


def test_max_grad_norm_defaults_to_1_reaches_the_training_settings_and_is_checked():
    from xlt.runs.settings import train_settings

    cfg = RunConfig()
    assert cfg.max_grad_norm == 1.0 and train_settings(cfg, 4, 5e-5).max_grad_norm == 1.0
    assert train_settings(cfg.replace(max_grad_norm=0), 4, 5e-5).max_grad_norm == 0.0
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(XltError, match=r"^max_grad_norm must be a finite number >= 0, got "):
            RunConfig(max_grad_norm=bad)


def test_the_english_model_is_keyed_by_its_clipping(tmp_path):
    from xlt.runs.stage1 import stage1_dir

    rows = "source_text,target_text,label\ngood,apik,pos\nbad,elek,neg\n"
    (tmp_path / "train.csv").write_text(rows)
    cfg = RunConfig(task="custom", model="tiny-random/bert", target_lang="jv", train_file=str(tmp_path / "train.csv"),
                    test_file=str(tmp_path / "train.csv"), stage1_dir=str(tmp_path / "cache"))
    assert stage1_dir(cfg) == stage1_dir(cfg.replace(max_grad_norm=1.0)) != stage1_dir(cfg.replace(max_grad_norm=0))


def test_runs_save_the_state_the_accelerator_gathers_not_the_module_they_passed_in(tmp_path, monkeypatch):
    """Under FSDP or ZeRO-3 the module handed to train() holds shards after accelerate.prepare; only
    Accelerator.get_state_dict gathers them. Both stages must save what it returns (here: the tensors plus 1)."""
    import json

    from accelerate import Accelerator
    from safetensors.torch import load_file

    from xlt.cli import main

    real = Accelerator.get_state_dict
    monkeypatch.setattr(Accelerator, "get_state_dict",
                        lambda self, model, unwrap=True: {k: v + 1 for k, v in real(self, model, unwrap).items()})
    rows = "".join(f"w{i} good,apik {i},pos\nw{i} bad,elek {i},neg\n" for i in range(4))
    (tmp_path / "d.csv").write_text("source_text,target_text,label\n" + rows)
    args = ["train", "--task", "custom", "--train-file", str(tmp_path / "d.csv"), "--test-file", str(tmp_path / "d.csv"),
            "--target-lang", "jv", "--model", "tiny-random/bert", "--method", "lora", "--epochs", "1",
            "--stage1-epochs", "1", "--batch-size", "4", "--no-show-progress", "--stage1-dir", str(tmp_path / "s1"),
            "--output-dir", str(tmp_path / "run")]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    stage1 = next((tmp_path / "s1").rglob("model.safetensors"))
    # the head was initialized with bias 0 and trained one epoch at 5e-5: far from 1 unless the +1 state was saved
    assert load_file(str(stage1))["classifier.bias"].min() > 0.9
    adapter = load_file(str(tmp_path / "run" / "adapter" / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.min() > 0.9 for v in lora_b)  # LoRA B starts at 0 and moved little in 2 steps
    assert metrics["method"] == "lora"
