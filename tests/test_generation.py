"""Generation tasks (MASSIVE slot filling) on decoder-only and encoder-decoder tiny models."""

import json

import pytest
import torch

from helpers import tiny
from xlt.cli import main
from xlt.data.examples import GenExample
from xlt.training.generation import IGNORE, GenBatcher, greedy_generate

GENERATORS = ("llama", "qwen2", "gemma2", "mt5")
EXAMPLES = [
    GenExample("bangunake aku jam lima esuk", "wake me up at five am", "time: jam lima esuk", "time: five am", "1"),
    GenExample("pira suhune", "what is the temperature", "None", "None", "2"),
]


def _generator(family, method="flare", fusion="add"):
    adapted, tok = tiny(family, method, fusion, task="generation")
    batcher = GenBatcher(tok, adapted.model.config.is_encoder_decoder, 64, 64, "slots",
                         getattr(adapted.model.config, "decoder_start_token_id", None))
    return adapted, tok, batcher


@pytest.mark.parametrize("family", GENERATORS)
def test_teacher_forced_loss_covers_answer_tokens_only(family):
    adapted, tok, batcher = _generator(family)
    batch = batcher.batch(EXAMPLES, "target", with_source=True, teacher_forced=True)
    answers = [tok(ex.answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for ex in EXAMPLES]
    for row, answer in zip(batch.labels.tolist(), answers):
        assert [t for t in row if t != IGNORE] == answer  # prompt and padding never scored
    if family == "mt5":
        assert torch.equal(batch.source["decoder_input_ids"], batch.inputs["decoder_input_ids"])
    else:
        mask = batch.inputs["attention_mask"]
        assert mask[1, 0] == 0 and mask[1, -1] == 1 and mask[0].all()  # left padding: answers end aligned
        assert batch.inputs["input_ids"].shape == batch.labels.shape
    before = {n: p.detach().clone() for n, p in adapted.model.named_parameters()}
    adapted.model.train()
    with adapted.step_context(batch):
        loss = adapted.model(**batch.inputs, labels=batch.labels).loss
        loss.backward()
    torch.optim.SGD([p for p in adapted.model.parameters() if p.requires_grad], lr=0.1).step()
    assert torch.isfinite(loss)
    changed = {n for n, p in adapted.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)


@pytest.mark.parametrize("family", GENERATORS)
def test_greedy_generation_is_deterministic_and_fuses_at_every_step(family):
    adapted, tok, batcher = _generator(family, fusion="cross_attention")
    calls = []
    for layer in adapted.flare.layers:
        layer.lora_fusion["default"].register_forward_hook(lambda *a: calls.append(1))
    first = greedy_generate(adapted.model, batcher, EXAMPLES, "target", True, adapted.step_context,
                            max_new_tokens=6, show_progress=False)
    steps = len(calls) // len(adapted.flare.layers)
    assert steps >= 1 and len(calls) == steps * len(adapted.flare.layers)
    second = greedy_generate(adapted.model, batcher, EXAMPLES, "target", True, adapted.step_context,
                             max_new_tokens=6, show_progress=False)
    assert first == second and len(first) == 2 and all(isinstance(s, str) for s in first)


@pytest.mark.parametrize("family", ["llama", "mt5"])
def test_greedy_decoding_matches_transformers_generate(family):
    adapted, tok, batcher = _generator(family, method="lora", fusion=None)
    ours = greedy_generate(adapted.model, batcher, EXAMPLES[:1], "target", False, adapted.step_context,
                           max_new_tokens=8, show_progress=False)
    batch = batcher.batch(EXAMPLES[:1], "target", with_source=False, teacher_forced=False)
    adapted.model.eval()
    kwargs = {"input_ids": batch.inputs["input_ids"], "attention_mask": batch.inputs["attention_mask"]}
    out = adapted.model.generate(**kwargs, max_new_tokens=8, do_sample=False, num_beams=1,
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    new = out[0] if family == "mt5" else out[0, batch.inputs["input_ids"].shape[1]:]
    expected = tok.decode([t for t in new.tolist() if t not in (tok.eos_token_id, tok.pad_token_id)],
                          skip_special_tokens=True).strip()
    assert ours == [expected]


def test_decoder_fusion_never_sees_future_source_positions():
    adapted, tok, batcher = _generator("llama", fusion="cross_attention")
    batch = batcher.batch(EXAMPLES[:1], "target", with_source=True, teacher_forced=True)
    adapted.model.eval()
    states = adapted.flare.source_states(batch.source)
    positions = adapted.flare.target_positions(batch.inputs)
    with torch.no_grad(), adapted.flare.fusing(states, positions):
        base = adapted.model(**batch.inputs).logits
    cut = 3
    changed = {layer: type(s)(s.states.clone(), s.mask) for layer, s in states.items()}
    for s in changed.values():
        s.states[:, cut + 1:] += 5.0  # source positions after `cut` (no padding in a batch of one)
    with torch.no_grad(), adapted.flare.fusing(changed, positions):
        other = adapted.model(**batch.inputs).logits
    assert torch.allclose(base[:, : cut + 1], other[:, : cut + 1], atol=1e-6)
    assert not torch.allclose(base[:, cut + 1:], other[:, cut + 1:], atol=1e-4)


QUICK = ["--task", "massive", "--target-lang", "jv", "--max-train-examples", "8", "--max-eval-examples", "4",
         "--stage1-max-train-examples", "8", "--epochs", "1", "--stage1-epochs", "1", "--lora-r", "4",
         "--lora-alpha", "8", "--batch-size", "4", "--max-answer-length", "8", "--no-show-progress"]


@pytest.mark.parametrize("family", GENERATORS)
def test_cli_massive_flare_run_writes_slot_metrics_and_reloads(family, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", f"tiny-random/{family}", "--method", "flare", "--fusion", "mul", *QUICK,
                 "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"slot_f1", "exact_match"} <= set(metrics["metrics"])
    assert metrics["test_examples"] == 4 and metrics["task"] == "massive"
    capsys.readouterr()
    assert main(["evaluate", "--run-dir", str(out)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["metrics"] == metrics["metrics"]


def test_fp16_is_refused_for_mt5_and_generation_needs_a_generator(tmp_path, capsys):
    assert main(["train", "--model", "tiny-random/mt5", "--method", "lora", "--fp16", *QUICK,
                 "--output-dir", str(tmp_path / "a")]) == 2
    assert "fp16 is refused for mT5" in capsys.readouterr().err
    assert main(["train", "--model", "tiny-random/bert", "--method", "lora", *QUICK,
                 "--output-dir", str(tmp_path / "b")]) == 2
    assert "decoder or encoder-decoder" in capsys.readouterr().err
