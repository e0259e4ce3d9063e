"""FLARE wiring and the correctness properties the published code gets wrong."""

import re

import pytest
import torch
from helpers import LABELS, source_of, tiny, without_source

from xlt.errors import XltError
from xlt.flare.layer import FlareLinear, SourceStates
from xlt.flare.tuner import FlareTuner
from xlt.methods.adapters import AdapterSettings, attach, load_adapter, save_adapter
from xlt.methods.table import get_method
from xlt.models.architectures import architecture_for
from xlt.models.loading import load_classifier, resolve_model
from xlt.training.batches import make_batch
from xlt.training.loop import enable_checkpointing


def _batch(tokenizer, examples):
    return make_batch(tokenizer, examples, "target", 32, source="text")


def _hidden_states(adapted, inputs):
    """Hidden states of the same model with adapters disabled (index 0 = embeddings)."""
    with adapted.model.disable_adapter(), torch.no_grad():
        adapted.model.eval()
        out = adapted.flare.wiring.backbone(**inputs, output_hidden_states=True)
        adapted.model.train()
    return out.hidden_states


@pytest.mark.parametrize("offset", [0, 1])
def test_layer_i_fuses_the_source_state_of_layer_i_plus_offset(parallel_examples, offset):
    adapted, tok = tiny(offset=offset)
    batch = _batch(tok, parallel_examples)
    source = source_of(batch)
    hidden = _hidden_states(adapted, source)
    seen = {}  # what each FLARE layer holds at the moment it runs inside the fused forward
    hooks = [layer.register_forward_pre_hook(lambda m, a: seen.__setitem__(m.flare_name, m.source))
             for layer in adapted.flare.wiring.layers]
    with torch.no_grad():
        adapted.model(**batch.inputs)
    for h in hooks:
        h.remove()
    assert len(seen) == 4  # 2 layers x (query, value)
    for name, src in seen.items():
        index = int(name.split(".")[2])
        # BERT's query/value of layer j receive hidden_states[j]; the final output is hidden_states[L]
        assert torch.allclose(src.states, hidden[index + offset], atol=1e-6), name
        for other in range(len(hidden)):
            if other != index + offset:
                assert not torch.allclose(src.states, hidden[other], atol=1e-3)
        assert torch.equal(src.mask, source["attention_mask"])


def test_prenorm_model_fuses_the_normalized_input_of_the_projection():
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=3, pad_token_id=0)
    model = LlamaForSequenceClassification(config)
    arch = architecture_for("llama")
    adapted = attach(model, get_method("flare"), arch, AdapterSettings(r=4, alpha=8, fusion="add"))
    ids = torch.randint(1, 64, (2, 6))
    source = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    target = torch.randint(1, 64, (2, 5))
    with torch.no_grad():  # the source text enters through the model call; the states stay on the layers
        adapted.model(input_ids=target, attention_mask=torch.ones_like(target),
                      source_input_ids=ids, source_attention_mask=source["attention_mask"])
    states = {layer: layer.source for layer in adapted.flare.wiring.layers}
    assert len(states) == 4 and all(isinstance(s, SourceStates) for s in states.values())
    backbone = adapted.flare.wiring.backbone
    with torch.no_grad(), adapted.model.disable_adapter():
        hidden = backbone(**source, output_hidden_states=True).hidden_states
        normed_layer1 = backbone.layers[1].input_layernorm(hidden[1])
    for layer, src in states.items():
        if layer.flare_name.startswith("layers.0."):
            # offset 1: layer 0 fuses what layer 1's projection sees: the *normalized* residual state
            assert torch.allclose(src.states, normed_layer1, atol=1e-5)
            assert not torch.allclose(src.states, hidden[1], atol=1e-3)
        else:
            assert torch.allclose(src.states, hidden[-1], atol=1e-5)  # final output, after the final norm


def test_source_pass_runs_in_eval_mode_without_grad_and_restores_train_mode(parallel_examples):
    adapted, tok = tiny()
    model, wiring = adapted.model, adapted.flare.wiring
    task_model = model.get_base_model()  # the wrapped model: every module of it runs the frozen pass
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    model.train()
    # every backbone run: is it the frozen pass, is grad on, is every module in train mode
    runs = []
    hook = wiring.backbone.register_forward_pre_hook(lambda m, a: runs.append(
        (wiring.all_layers[0].in_source_pass, torch.is_grad_enabled(), [x.training for x in task_model.modules()])))
    computed = adapted.flare.source_rows_computed
    held = []
    for _ in range(2):
        batch = _batch(tok, parallel_examples)  # new tensors: the pass runs again rather than reusing states
        held.append(batch)
        model(**batch.inputs, labels=batch.labels).loss.backward()
        held.append({layer: layer.source for layer in wiring.layers})
    hook.remove()
    assert adapted.flare.source_rows_computed == computed + 2 * len(parallel_examples)
    assert [r[0] for r in runs] == [True, False, True, False]  # the frozen pass, then the fused forward
    for in_pass, grad, training in runs:
        if in_pass:
            assert not grad and not any(training)  # eval mode, without grad
        else:
            assert grad and all(training)  # the fused forward is back in train mode, with grad
    first, second = held[1], held[3]
    for layer in first:
        assert torch.equal(first[layer].states, second[layer].states)  # no dropout noise
        assert not first[layer].states.requires_grad and first[layer].states.grad_fn is None
    assert all(m.training for m in model.modules())
    assert all(not layer.disable_adapters and not layer.in_source_pass for layer in wiring.all_layers)


def _count_fused_calls(adapted):
    calls = []
    hooks = [layer.lora_fusion["default"].register_forward_hook(lambda *a, n=layer.flare_name: calls.append(n))
             for layer in adapted.flare.wiring.layers]
    return calls, hooks


def test_fusion_stays_on_under_gradient_checkpointing(parallel_examples):
    grads = {}
    for checkpointing in (False, True):
        adapted, tok = tiny(fusion="mul")
        if checkpointing:
            enable_checkpointing(adapted.model.get_base_model())
        adapted.model.train()
        batch = _batch(tok, parallel_examples)
        calls, hooks = _count_fused_calls(adapted)
        loss = adapted.model(**batch.inputs, labels=batch.labels).loss
        loss.backward()
        for h in hooks:
            h.remove()
        # every fused layer ran its fusion; with checkpointing the re-forward fused again
        assert len(calls) == (8 if checkpointing else 4)
        grads[checkpointing] = {n: p.grad.clone() for n, p in adapted.model.named_parameters() if p.grad is not None}
    assert grads[True].keys() == grads[False].keys()
    for name in grads[False]:
        assert torch.allclose(grads[True][name], grads[False][name], atol=1e-6), name


def test_fusion_is_active_in_eval_and_missing_source_is_an_error(parallel_examples):
    adapted, tok = tiny()
    layer = next(iter(adapted.flare.wiring.layers))
    with pytest.raises(RuntimeError, match="has no source states"):  # never silently plain LoRA
        layer(torch.randn(1, 3, layer.in_features))
    adapted.model.eval()
    batch = _batch(tok, parallel_examples)
    calls, hooks = _count_fused_calls(adapted)
    with torch.no_grad():
        fused = adapted.model(**batch.inputs).logits
    assert len(calls) == 4
    with pytest.raises(ValueError, match="a FLARE model needs the source text of the batch"):
        adapted.model(**without_source(batch.inputs))
    zero = make_batch(tok, parallel_examples, "target", 32, source="zero")
    assert zero.inputs["zero_source"] is True and not source_of(zero)
    with torch.no_grad():
        zeroed = adapted.model(**zero.inputs).logits
    assert len(calls) == 8  # the zeroed diagnostic fuses too
    assert all(torch.count_nonzero(layer.source.states) == 0 for layer in adapted.flare.wiring.layers)
    assert not torch.allclose(fused, zeroed)  # the English states change the prediction


def test_parameter_counts_match_lora_except_cross_attention():
    lora, _ = tiny(method="lora", fusion=None, r=8)
    counts = {f: tiny(fusion=f, r=8)[0].trainable_params for f in ("add", "mul", "add_relu", "mul_relu")}
    assert set(counts.values()) == {lora.trainable_params}
    assert lora.trainable_params == 4 * (32 * 8 + 8 * 32)
    cross = tiny(fusion="cross_attention", r=8)[0].trainable_params
    assert cross == lora.trainable_params + 4 * 3 * 8 * 8  # q, k, v (r x r) per fused projection


def test_one_step_changes_only_adapter_parameters(parallel_examples):
    adapted, tok = tiny(fusion="add_relu")
    before = {n: p.detach().clone() for n, p in adapted.model.named_parameters()}
    opt = torch.optim.SGD([p for p in adapted.model.parameters() if p.requires_grad], lr=0.1)
    batch = _batch(tok, parallel_examples)
    adapted.model(**batch.inputs, labels=batch.labels).loss.backward()
    opt.step()
    changed = {n for n, p in adapted.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed)


@pytest.mark.parametrize("fusion", ["mul_relu", "cross_attention"])
def test_save_then_load_gives_identical_logits(tmp_path, parallel_examples, fusion):
    adapted, tok = tiny(fusion=fusion)
    batch = _batch(tok, parallel_examples)
    adapted.model.eval()
    with torch.no_grad():
        expected = adapted.model(**batch.inputs).logits
    save_adapter(adapted, tmp_path / "adapter")
    fresh, _ = tiny(fusion=fusion, adapter_seed=123)
    loaded = load_adapter(fresh, tmp_path / "adapter")
    assert loaded == sum(1 for n, p in fresh.model.named_parameters() if p.requires_grad)
    fresh.model.eval()
    with torch.no_grad():
        assert torch.equal(fresh.model(**batch.inputs).logits, expected)


def test_loading_a_mismatched_adapter_fails_instead_of_loading_nothing(tmp_path):
    from safetensors.torch import load_file, save_file

    adapted, _ = tiny(fusion="add", r=4)
    save_adapter(adapted, tmp_path / "adapter")
    weights = tmp_path / "adapter" / "adapter_model.safetensors"
    state = load_file(str(weights))
    save_file({k: v for k, v in state.items() if ".layer.1." not in k}, str(weights))  # same settings, fewer tensors
    fresh, _ = tiny(fusion="add", r=4)
    with pytest.raises(XltError, match=r"does not match the model: 4 missing, 0 unexpected"):
        load_adapter(fresh, tmp_path / "adapter")


@pytest.mark.parametrize("saved, loaded, message", [
    (dict(fusion="add_relu"), dict(fusion="add"), "fusion 'add_relu' (model: 'add')"),  # same tensors
    (dict(fusion="add"), dict(fusion="cross_attention"), "fusion 'add' (model: 'cross_attention')"),
    (dict(r=4), dict(r=8), "r 4 (model: 8)"),
    (dict(offset=1), dict(offset=0), "source_layer_offset 1 (model: 0)"),
    (dict(method="flare"), dict(method="lora", fusion=None), "fusion 'add' (model: None)"),
])
def test_an_adapter_loads_only_under_the_settings_it_was_trained_with(tmp_path, saved, loaded, message):
    adapted, _ = tiny(**saved)
    save_adapter(adapted, tmp_path / "adapter")
    other, _ = tiny(**loaded)
    with pytest.raises(XltError, match=r"was saved with other settings: .*" + re.escape(message)):
        load_adapter(other, tmp_path / "adapter")


def test_an_adapter_loads_only_under_the_pooling_it_was_trained_with(tmp_path):
    import dataclasses

    adapted, _ = tiny(fusion="add")
    adapted.settings = dataclasses.replace(adapted.settings, pooling="mean")
    save_adapter(adapted, tmp_path / "adapter")
    other, _ = tiny(fusion="add")
    other.settings = dataclasses.replace(other.settings, pooling="first")
    with pytest.raises(XltError, match=re.escape("pooling 'mean' (model: 'first')")):
        load_adapter(other, tmp_path / "adapter")
    other.settings = dataclasses.replace(other.settings, pooling="mean")
    assert load_adapter(other, tmp_path / "adapter") > 0


def test_flare_layers_are_peft_layers_on_query_and_value_only():
    adapted, _ = tiny()
    names = sorted(layer.flare_name for layer in adapted.flare.wiring.layers)
    assert names == ["encoder.layer.0.attention.self.query", "encoder.layer.0.attention.self.value",
                     "encoder.layer.1.attention.self.query", "encoder.layer.1.attention.self.value"]
    assert all(isinstance(layer, FlareLinear) for layer in adapted.flare.wiring.layers)
    assert isinstance(adapted.flare, FlareTuner) and adapted.flare is adapted.model.base_model
    assert adapted.model.peft_config["default"].peft_type == "FLARE"
    model = load_classifier(resolve_model("tiny-random/bert"), LABELS)
    assert sum(isinstance(m, FlareLinear) for m in model.modules()) == 0  # no global patching
