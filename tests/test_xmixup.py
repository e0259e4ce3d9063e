"""X-Mixup (xlt.methods.xmixup): the mix itself, padding, what trains, the consistency loss, runs that reload."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from helpers import tiny_classifier
from safetensors.torch import load_file, save_file

from xlt.cli import main
from xlt.config import RunConfig
from xlt.errors import XltError
from xlt.methods.adapters import ADAPTER_INFO, ADAPTER_WEIGHTS, AdapterSettings, attach
from xlt.methods.table import get_method
from xlt.methods.xmixup import MixupSettings, loss_terms, mixup_loss
from xlt.models.architectures import architecture_for
from xlt.models.loading import load_tokenizer, resolve_model
from xlt.runs.evaluate import reevaluate_run
from xlt.runs.stage2 import run_stage2
from xlt.training.batches import make_batch
from xlt.training.loop import TrainSettings, task_steps, train


def build(family: str = "bert", method: str = "x-mixup", lam: float = 0.5, schedule: str = "entropy",
          layers: tuple[int, ...] | None = None):
    """A tiny classifier with LoRA B randomized (the adapter matters from the start), in eval mode."""
    path = resolve_model(f"tiny-random/{family}")
    torch.manual_seed(0)
    tokenizer = load_tokenizer(path)
    model = tiny_classifier(path, tokenizer)
    settings = AdapterSettings(r=4, alpha=8, dropout=0.0, mixup=MixupSettings(layers, lam, schedule))
    adapted = attach(model, get_method(method), architecture_for(model.config.model_type), settings)
    torch.manual_seed(1)
    for name, p in adapted.model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    adapted.model.eval()
    return adapted, tokenizer


def lora_twin(adapted, family: str):
    """A plain ``lora`` model with the same stock weights and the same LoRA tensors as ``adapted``."""
    twin, _ = build(family, method="lora")
    mine = adapted.model.state_dict()
    state = twin.model.state_dict()
    assert all(torch.equal(state[k], mine[k]) for k in state if "lora_" not in k)  # same stock weights
    twin.model.load_state_dict({k: mine[k] for k in state})
    return twin


@pytest.mark.parametrize("family", ["bert", "llama"])
@pytest.mark.parametrize("schedule", ["fixed", "entropy"])
def test_lambda_zero_leaves_the_target_forward_exactly_unchanged(family, schedule, parallel_examples):
    adapted, tokenizer = build(family, lam=0.0, schedule=schedule)
    batch = make_batch(tokenizer, parallel_examples, "target", 32, source="text")
    target_only = {k: v for k, v in batch.inputs.items() if not k.startswith("source_")}
    with torch.no_grad():
        mixed = adapted.model(**batch.inputs).logits
        plain = lora_twin(adapted, family).model(**target_only).logits
    assert torch.equal(mixed, plain)
    # and a λ above zero does change it, through the same module
    adapted.mixup.module.lam = 0.5
    for module in adapted.model.modules():  # PEFT's trainable copy of the module mixes
        if type(module).__name__ == "XMixup":
            module.lam = 0.5
    with torch.no_grad():
        assert (adapted.model(**batch.inputs).logits - plain).abs().max() > 1e-4


def test_source_padding_never_reaches_the_output(parallel_examples):
    adapted, tokenizer = build("bert", lam=0.7)
    batch = make_batch(tokenizer, parallel_examples, "target", 32, source="text")
    mask = batch.inputs["source_attention_mask"]
    assert (mask == 0).sum() >= 4  # the short English texts are padded
    other = dict(batch.inputs)
    other["source_input_ids"] = torch.where(mask.bool(), batch.inputs["source_input_ids"],
                                            torch.randint(5, 90, mask.shape))
    assert not torch.equal(other["source_input_ids"], batch.inputs["source_input_ids"])
    with torch.no_grad():
        first = adapted.model(**batch.inputs, labels=batch.labels)
        second = adapted.model(**other, labels=batch.labels)
    assert torch.equal(first.logits, second.logits) and torch.equal(first.loss, second.loss)
    # a real source token does reach it
    other["source_input_ids"] = batch.inputs["source_input_ids"].clone()
    other["source_input_ids"][0, 1] = 7
    with torch.no_grad():
        assert not torch.equal(adapted.model(**other).logits[0], first.logits[0])


def test_a_training_step_changes_only_lora_and_the_mixing_module(parallel_examples):
    adapted, tokenizer = build("bert")
    before = {k: v.clone() for k, v in adapted.model.state_dict().items()}
    to_batch = lambda examples: make_batch(tokenizer, examples, "target", 32, source="text")  # noqa: E731
    plan = task_steps(parallel_examples, to_batch, batch_size=3, epochs=2, seed=0)
    train(adapted.model, plan, TrainSettings(epochs=2, lr=1e-2, warmup_ratio=0.0, show_progress=False))
    after = adapted.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    trainable = {k for k, p in adapted.model.named_parameters() if p.requires_grad}
    assert changed and changed <= trainable
    assert all("lora_" in k or ".xmixup.modules_to_save." in k for k in trainable)
    assert any("lora_B" in k for k in changed)
    assert any(".xmixup.modules_to_save.default.attention.1.query" in k for k in changed)
    assert any(".xmixup.modules_to_save.default.attention.1.gate" in k for k in changed)  # λ's w, b train
    # stock weights, the English head and PEFT's untouched original of the module stay as they were
    stock = [k for k in before if "lora_" not in k and "modules_to_save" not in k]
    assert any(k.endswith("classifier.weight") for k in stock) and len(stock) > 30
    assert all(torch.equal(before[k], after[k]) for k in stock)


def test_consistency_is_zero_for_identical_inputs_at_lambda_zero_and_not_above(parallel_examples):
    """Source = target text and λ = 0: the mixed pass is the source pass, so p_S = p_T and r_S = r_T (KL = MSE
    = 0, exactly) and the loss is plain CE. With λ > 0 the mix moves the target off its own states."""
    batch = make_batch(load_tokenizer(resolve_model("tiny-random/bert")), parallel_examples, "target", 32,
                       source="text")
    same = {**batch.inputs, "source_input_ids": batch.inputs["input_ids"],
            "source_attention_mask": batch.inputs["attention_mask"]}
    adapted, _ = build("bert", lam=0.0)
    with torch.no_grad():
        out = adapted.model(**same, labels=batch.labels)
    terms = adapted.mixup.last_terms
    assert terms["kl"].item() == 0.0 and terms["mse"].item() == 0.0
    assert torch.equal(terms["source_ce"], terms["target_ce"])
    plain = torch.nn.functional.cross_entropy(out.logits, batch.labels)
    assert out.loss.item() == pytest.approx(plain.item(), rel=1e-6)
    adapted, _ = build("bert", lam=0.5)
    with torch.no_grad():
        adapted.model(**same, labels=batch.labels)
    assert adapted.mixup.last_terms["kl"].item() > 1e-9 and adapted.mixup.last_terms["mse"].item() > 1e-6


def test_the_objective_weighs_its_terms_as_documented():
    logits_s, logits_t = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    rep_s, rep_t = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])
    terms = loss_terms(logits_s, logits_t, rep_s, rep_t, torch.tensor([0]))
    p = logits_s.softmax(-1)
    kl = (p * (p.log() - logits_t.log_softmax(-1))).sum()
    assert terms["kl"].item() == pytest.approx(kl.item(), rel=1e-6)
    assert terms["mse"].item() == pytest.approx(2.5)
    assert terms["source_ce"].item() == pytest.approx(-logits_s.log_softmax(-1)[0, 0].item(), rel=1e-6)
    expected = 0.4 * terms["source_ce"] + 0.6 * terms["target_ce"] + kl + 2.5
    assert mixup_loss(terms).item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_call_without_the_source_is_refused(parallel_examples):
    adapted, tokenizer = build("bert")
    batch = make_batch(tokenizer, parallel_examples, "target", 32)
    with pytest.raises(ValueError, match="needs the source text"):
        adapted.model(**batch.inputs)


RUN = dict(model="tiny-random/bert", task="nusax", target_lang="ace", method="x-mixup", max_train_examples=8,
           max_eval_examples=12, epochs=1, stage1_epochs=1, stage1_max_train_examples=8, batch_size=4,
           show_progress=False)


def test_a_run_saves_the_mixing_module_and_reevaluates_to_the_same_metrics(tmp_path):
    cfg = RunConfig(**RUN, output_dir=str(tmp_path / "run"), stage1_dir=str(tmp_path / "stage1"), mixup_layers="1,2")
    metrics = run_stage2(cfg)
    run = tmp_path / "run"
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["metrics"] == metrics["metrics"] and saved["method"] == "x-mixup"
    assert set(saved["metrics"]) >= {"accuracy", "macro_f1"} and saved["test_examples"] == 12
    tensors = load_file(str(run / "adapter" / ADAPTER_WEIGHTS))
    mixing = [k for k in tensors if ".xmixup." in k]
    assert len(mixing) == 2 * 10 and len(tensors) == len(mixing) + 2 * 2 * 2  # 2 layers × (4 linears + gate)
    assert json.loads((run / "adapter" / ADAPTER_INFO).read_text())["mixup"] == {
        "layers": [1, 2], "lambda": 0.5, "schedule": "entropy"}
    trainable = sum(t.numel() for t in tensors.values())
    assert saved["trainable_params"] == trainable
    assert reevaluate_run(run)["metrics"] == saved["metrics"]

    # a missing mixing tensor fails the load loudly
    weights = run / "adapter" / ADAPTER_WEIGHTS
    save_file({k: v for k, v in tensors.items() if not k.endswith("attention.2.value.weight")}, str(weights))
    with pytest.raises(XltError, match="1 missing"):
        reevaluate_run(run)
    save_file(tensors, str(weights))
    # other mixing settings than the adapter's are refused
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "mixup_lambda": 0.3}))
    with pytest.raises(XltError, match="saved with other settings: mixup"):
        reevaluate_run(run)


def test_mt5_is_refused_before_any_model_loads(tmp_path, monkeypatch):
    import xlt.runs.stage2

    def no_stage1(cfg):
        raise AssertionError("reached stage 1")

    monkeypatch.setattr(xlt.runs.stage2, "ensure_stage1", no_stage1)
    cfg = RunConfig(**{**RUN, "model": "tiny-random/mt5"}, output_dir=str(tmp_path / "run"))
    with pytest.raises(XltError, match="mT5"):
        run_stage2(cfg)
    get_method("x-mixup").check_family("decoder")  # decoders with a head are fine


def test_a_mixing_layer_the_model_lacks_is_refused():
    with pytest.raises(XltError, match="--mixup-layers must be distinct layers 1..2 of this model, got 3"):
        build("bert", layers=(3,))


@pytest.fixture
def no_runs(monkeypatch):
    import xlt.runs.stage2

    def fail(*args, **kwargs):
        raise AssertionError("bad input reached the heavy code path")

    monkeypatch.setattr(xlt.runs.stage2, "run_stage2", fail)


@pytest.mark.parametrize("extra, message", [
    (["--method", "x-mixup", "--mixup-lambda", "1.5"], "mixup_lambda must be in [0, 1], got 1.5"),
    (["--method", "x-mixup", "--mixup-layers", "2,x"], "mixup_layers must be comma-separated layer numbers >= 1"),
    (["--method", "x-mixup", "--mixup-schedule", "cosine"], "invalid choice: 'cosine' (choose from 'fixed', 'entropy')"),
    (["--method", "lora", "--mixup-layers", "3"], "--mixup-layers is only for --method x-mixup, not 'lora'"),
    (["--method", "x-mixup", "--task", "massive"], "x-mixup is for sentence classification tasks"),
    (["--method", "x-mixup", "--task", "panx"], "x-mixup is for sentence classification tasks"),
    (["--method", "x-mixup", "--decoder-classifier", "verbalizer"], "drop --decoder-classifier verbalizer"),
    (["--method", "x-mixup", "--gradient-checkpointing"], "drop --gradient-checkpointing"),
])
def test_bad_settings_are_one_line(no_runs, capsys, tmp_path, extra, message):
    argv = ["train", "--model", "tiny-random/bert", "--task", "nusax", "--target-lang", "jv", "--no-show-progress",
            "--output-dir", str(tmp_path / "run"), *extra]
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xlt: error: ") and message in lines[0], lines


def test_source_from_reaches_x_mixup():
    cfg = RunConfig(method="x-mixup", task="nusax", target_lang="jv", source_from="pivot:id")
    assert cfg.source_from == "pivot:id" and get_method("x-mixup").reads_source
    assert (cfg.mixup_lambda, cfg.mixup_schedule, cfg.mixup_layers) == (0.5, "entropy", None)
    assert RunConfig(method="lora").mixup_lambda is None  # other methods record no mixing


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_save_and_load_restore_lora_and_the_mixing_module_exactly(family, parallel_examples, tmp_path):
    from xlt.methods.adapters import load_adapter, save_adapter

    adapted, tokenizer = build(family)
    torch.manual_seed(2)
    with torch.no_grad():  # as if trained: every trainable tensor moves
        for p in adapted.model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    batch = make_batch(tokenizer, parallel_examples, "target", 32, source="text")
    with torch.no_grad():
        trained = adapted.model(**batch.inputs).logits
    save_adapter(adapted, tmp_path / "adapter")
    fresh, _ = build(family)
    with torch.no_grad():
        assert not torch.equal(fresh.model(**batch.inputs).logits, trained)
        count = load_adapter(fresh, tmp_path / "adapter")
        assert torch.equal(fresh.model(**batch.inputs).logits, trained)
    assert count == sum(1 for p in fresh.model.parameters() if p.requires_grad)


def test_in_a_causal_stack_the_mix_keeps_the_target_causal():
    """llama, fixed λ: changing the last target token leaves every earlier position's final state as it was
    (each target position reads the whole English text and its own past only)."""
    adapted, tokenizer = build("llama", lam=0.5, schedule="fixed")
    finals = []
    backbone = adapted.model.base_model.model.backbone
    backbone.register_forward_hook(lambda module, args, output: finals.append(output.last_hidden_state))
    target = tokenizer(["kulo remen sanget lan seneng"], return_tensors="pt")
    source = tokenizer(["i like it very much"], return_tensors="pt")
    inputs = {"input_ids": target["input_ids"], "attention_mask": target["attention_mask"],
              "source_input_ids": source["input_ids"], "source_attention_mask": source["attention_mask"]}
    changed = {**inputs, "input_ids": inputs["input_ids"].clone()}
    changed["input_ids"][0, -1] = (changed["input_ids"][0, -1] + 1) % 100
    with torch.no_grad():
        adapted.model(**inputs)
        adapted.model(**changed)
    # each call: the source pass, then the mixed target pass
    before, after = finals[1], finals[3]
    assert before.shape[1] >= 4
    torch.testing.assert_close(after[:, :-1], before[:, :-1], rtol=0, atol=1e-6)
    assert (after[:, -1] - before[:, -1]).abs().max() > 1e-4
