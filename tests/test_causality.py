"""Causality is a property of each fused stack: a decoder position never sees what comes after it.

For every causal stack (decoder-only ``layers``, mT5's ``decoder.block``) the logits at positions
<= t must be a function of the tokens at positions <= t only, with the adapter on and every fusion.
The probe changes the tokens after t the way a real batch would (different answer; for decoder-only
models also a different English prompt tail, which is their causal stack's source) and compares the
teacher-forced logits. Encoder stacks are bidirectional and fuse the whole English sentence.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from helpers import source_of, tiny
from peft import get_peft_model

from xlt.data.examples import Example, GenExample
from xlt.flare.config import FlareConfig
from xlt.flare.fusion import FUSIONS, CrossAttentionFusion
from xlt.flare.source_pass import SourceWiring
from xlt.flare.tuner import FlareTuner
from xlt.kinds.generation import GenBatcher
from xlt.methods.adapters import AdaptedModel, load_adapter, save_adapter
from xlt.methods.table import get_method
from xlt.models.architectures import architecture_for
from xlt.models.loading import resolve_model
from xlt.training.batches import make_batch

ENCODERS = ("bert", "xlm-roberta")
DECODERS = ("llama", "qwen2", "gemma2", "gemma3_text")
CAUSAL_STACKS = {"bert": [], "xlm-roberta": [], "llama": ["layers"], "qwen2": ["layers"], "gemma2": ["layers"], "gemma3_text": ["layers"],
                 "mt5": ["decoder.block"]}

BASE = GenExample("bangunake aku jam lima esuk", "wake me up at five am", "time: jam lima esuk", "time: five am", "1")
LATER_ANSWER = dataclasses.replace(BASE, answer="time: jam siji sore")  # same length: same shapes
LATER_ANSWER_AND_SOURCE = dataclasses.replace(LATER_ANSWER, prompt_source="wake me up at nine pm")


def _generator(family: str, fusion: str, adapter_seed: int | None = None):
    adapted, tok = tiny(family, "flare", fusion, task="generation", adapter_seed=adapter_seed)
    batcher = GenBatcher(tok, adapted.model.config.is_encoder_decoder, 256, 32, "slots",
                         getattr(adapted.model.config, "decoder_start_token_id", None))
    return adapted, batcher


def _logits(adapted: AdaptedModel, batch) -> torch.Tensor:
    adapted.model.eval()
    with torch.no_grad():
        return adapted.model(**batch.inputs).logits


def _first_difference(a: torch.Tensor, b: torch.Tensor) -> int:
    """First position where two single-row id tensors differ (or where the shorter one ends)."""
    n = min(a.shape[1], b.shape[1])
    differs = (a[0, :n] != b[0, :n]).nonzero()
    return int(differs[0, 0]) if len(differs) else n


def _causal_probe(family: str, batcher: GenBatcher):
    """Two teacher-forced batches equal up to position t and different after it, and t."""
    changed = LATER_ANSWER if family == "mt5" else LATER_ANSWER_AND_SOURCE
    base, other = (batcher.batch([ex], "target", "text", teacher_forced=True) for ex in (BASE, changed))
    base_source, other_source = source_of(base), source_of(other)
    assert all(base.inputs[k].shape == other.inputs[k].shape for k in base.inputs)
    key = "decoder_input_ids" if family == "mt5" else "input_ids"  # the tokens the causal stack reads
    t = min(_first_difference(base.inputs[key], other.inputs[key]),
            _first_difference(base_source[key], other_source[key])) - 1
    if family == "mt5":
        assert torch.equal(base.inputs["input_ids"], other.inputs["input_ids"])  # same prompts in the encoder
        assert torch.equal(base_source["input_ids"], other_source["input_ids"])
    else:  # the English prompt changes before the answer does: the source side is probed too
        assert _first_difference(base_source[key], other_source[key]) - 1 == t
    assert t >= 2
    return base, other, t


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("family", [*DECODERS, "mt5"])
def test_causal_stack_outputs_never_depend_on_later_tokens(family, fusion):
    adapted, batcher = _generator(family, fusion)
    base, other, t = _causal_probe(family, batcher)
    before, after = _logits(adapted, base), _logits(adapted, other)
    with adapted.model.disable_adapter():
        plain = adapted.model(**base.inputs).logits
    assert not torch.allclose(before[:, : t + 1], plain[:, : t + 1], atol=1e-3)  # the adapter matters there
    leak = (before[:, : t + 1] - after[:, : t + 1]).abs().max().item()
    assert leak <= 1e-5, f"positions <= {t} moved by {leak} when only later tokens changed"
    assert (before[:, t + 1:] - after[:, t + 1:]).abs().max().item() > 1e-3  # the probe can see a change


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("family", ENCODERS)
def test_encoder_stacks_fuse_the_whole_english_sentence(family, fusion):
    """Bidirectional: changing English words after position t moves the fused states at positions <= t."""
    adapted, tok = tiny(family, "flare", fusion)
    examples = [Example(("kulo remen sanget kaliyan panganan",), (english,), 0) for english in
                ("i like the food very much", "i like the drink very much")]
    base, other = (make_batch(tok, [ex], "target", 32, source="text") for ex in examples)
    assert torch.equal(base.inputs["input_ids"], other.inputs["input_ids"])
    t = _first_difference(source_of(base)["input_ids"], source_of(other)["input_ids"]) - 1
    assert t >= 2
    states = []
    for batch in (base, other):
        adapted.model.eval()
        with torch.no_grad():
            states.append(adapted.model(**batch.inputs, output_hidden_states=True).hidden_states[-1])
    assert (states[0][:, : t + 1] - states[1][:, : t + 1]).abs().max().item() > 1e-3
    assert [stack.causal for stack in architecture_for(adapted.model.config.model_type).stacks] == [False]


@pytest.mark.parametrize("family", [*ENCODERS, *DECODERS, "mt5"])
def test_each_fused_layer_takes_the_causality_of_its_stack(family):
    adapted, _ = tiny(family, "flare", "cross_attention", task="classification" if family in ENCODERS else "generation")
    arch = architecture_for(adapted.model.config.model_type)
    assert [stack.layers for stack in arch.stacks if stack.causal] == CAUSAL_STACKS[family]
    assert adapted.model.peft_config["default"].causal_stacks == CAUSAL_STACKS[family]
    seen = {}
    for layer in adapted.flare.wiring.layers:
        stack = next(s for s in arch.stacks if layer.flare_name.startswith(s.layers + "."))
        fusion = layer.lora_fusion["default"]
        assert isinstance(fusion, CrossAttentionFusion)
        assert layer.causal is fusion.causal is stack.causal, layer.flare_name
        seen[stack.layers] = fusion.causal
    assert seen == {stack.layers: stack.causal for stack in arch.stacks}  # every stack has fused layers


def test_a_config_that_disagrees_with_the_stacks_is_refused():
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(resolve_model("tiny-random/mt5"))
    config = FlareConfig(fusion="cross_attention", r=4, target_modules=["q", "v"])  # causal_stacks left empty
    with pytest.raises(ValueError, match=r"decoder\.block\.0\.layer\.0\.SelfAttention\.q is not causal"):
        get_peft_model(model, config)
    # the wiring of a model whose layers were built for the right stacks is accepted
    good = get_peft_model(AutoModelForSeq2SeqLM.from_pretrained(resolve_model("tiny-random/mt5")),
                          FlareConfig(fusion="cross_attention", r=4, target_modules=["q", "v"],
                                      causal_stacks=["decoder.block"]))
    assert isinstance(good.base_model, FlareTuner)
    SourceWiring(good.get_base_model(), architecture_for("mt5"), 1)
    # and the same wiring check refuses a model built under the wrong stacks
    wrong = FlareConfig(fusion="cross_attention", r=4, target_modules=["q", "v"], causal_stacks=["encoder.block"])
    with pytest.raises(ValueError, match=r"encoder\.block\.0\.layer\.0\.SelfAttention\.q is causal"):
        get_peft_model(AutoModelForSeq2SeqLM.from_pretrained(resolve_model("tiny-random/mt5")), wrong)


def test_mt5_adapter_config_records_decoder_causality_and_reloads_it(tmp_path):
    adapted, batcher = _generator("mt5", "cross_attention")
    batch = batcher.batch([BASE], "target", "text", teacher_forced=True)
    expected = _logits(adapted, batch)
    save_adapter(adapted, tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["causal_stacks"] == ["decoder.block"] and saved["fusion"] == "cross_attention"

    fresh, _ = _generator("mt5", "cross_attention", adapter_seed=123)  # the existing path: attach, then load
    assert not torch.equal(_logits(fresh, batch), expected)
    load_adapter(fresh, tmp_path / "adapter")
    assert torch.equal(_logits(fresh, batch), expected)

    # the saved config alone rebuilds the same causality, layer by layer
    from transformers import AutoModelForSeq2SeqLM

    fields = {f.name for f in dataclasses.fields(FlareConfig)}
    config = FlareConfig(**{k: v for k, v in saved.items() if k in fields and k != "peft_type"})
    rebuilt_model = get_peft_model(AutoModelForSeq2SeqLM.from_pretrained(resolve_model("tiny-random/mt5")), config)
    assert isinstance(rebuilt_model.base_model, FlareTuner)
    rebuilt = AdaptedModel(rebuilt_model, get_method("flare"))
    causal = {layer.flare_name: layer.lora_fusion["default"].causal for layer in rebuilt.flare.wiring.layers}
    assert causal == {layer.flare_name: layer.lora_fusion["default"].causal for layer in adapted.flare.wiring.layers}
    assert sorted(name for name, c in causal.items() if c) == sorted(n for n in causal if n.startswith("decoder."))
    load_adapter(rebuilt, tmp_path / "adapter")
    assert torch.equal(_logits(rebuilt, batch), expected)
