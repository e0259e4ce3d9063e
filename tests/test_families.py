"""Every tiny family x every adapter method x every fusion: one mechanism for all architectures."""

import pytest
import torch
from helpers import tiny

from xlt.flare.fusion import FUSIONS
from xlt.methods.adapters import load_adapter, save_adapter
from xlt.methods.table import METHODS
from xlt.training.batches import make_batch
from xlt.training.loop import enable_checkpointing

FAMILIES = ("bert", "xlm-roberta", "llama", "qwen2", "gemma2", "gemma3_text", "mt5")
TRAINED = [("lora", None), ("input-fusion", None)] + [("flare", f) for f in FUSIONS]
FUSED_LAYERS = {"mt5": 8}  # encoder + decoder self-attention q, v; other families: 2 layers x (q, v)


def _batch(tok, examples, method):
    m = METHODS[method]
    return make_batch(tok, examples, m.view, 48, source="text" if m.needs_source_pass else None)


def _logits(adapted, batch):
    adapted.model.eval()
    with torch.no_grad():
        return adapted.model(**batch.inputs).logits


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method, fusion", TRAINED)
def test_step_changes_only_adapters_and_save_load_is_exact(family, method, fusion, parallel_examples, tmp_path):
    adapted, tok = tiny(family, method, fusion)
    batch = _batch(tok, parallel_examples, method)
    before = {n: p.detach().clone() for n, p in adapted.model.named_parameters()}
    adapted.model.train()
    opt = torch.optim.SGD([p for p in adapted.model.parameters() if p.requires_grad], lr=0.1)
    loss = adapted.model(**batch.inputs, labels=batch.labels).loss
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    changed = {n for n, p in adapted.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed), sorted(changed)[:3]
    expected = _logits(adapted, batch)
    assert expected.shape == (len(parallel_examples), 3)
    save_adapter(adapted, tmp_path / "adapter")
    fresh, _ = tiny(family, method, fusion, adapter_seed=7)
    load_adapter(fresh, tmp_path / "adapter")
    assert torch.equal(_logits(fresh, batch), expected)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("fusion", ["mul", "cross_attention"])
def test_fusion_runs_in_every_fused_layer_in_training_with_checkpointing_and_in_eval(family, fusion,
                                                                                      parallel_examples):
    adapted, tok = tiny(family, "flare", fusion)
    enable_checkpointing(adapted.model.get_base_model())
    batch = _batch(tok, parallel_examples, "flare")
    calls: dict[str, int] = {}
    for layer in adapted.flare.wiring.layers:
        layer.lora_fusion["default"].register_forward_hook(
            lambda *a, n=layer.flare_name: calls.__setitem__(n, calls.get(n, 0) + 1))
    adapted.model.train()
    adapted.model(**batch.inputs, labels=batch.labels).loss.backward()
    n_fused = FUSED_LAYERS.get(family, 4)
    assert len(calls) == n_fused
    assert set(calls.values()) == {2}  # forward + checkpointed re-forward, in every fused layer
    calls.clear()
    _logits(adapted, batch)
    assert len(calls) == n_fused and set(calls.values()) == {1}
    if family == "mt5":  # cross-attention projections get plain LoRA
        plain = [n for n, m in adapted.model.named_modules() if "EncDecAttention" in n and hasattr(m, "fuse")]
        assert len(plain) == 4 and all(not adapted.model.get_submodule(n).fuse for n in plain)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("fusion", ["add", "cross_attention"])
def test_padding_never_changes_an_example_prediction(family, fusion, parallel_examples):
    """Each example scores the same alone as inside a padded batch (left padding for decoders):
    masks, last-token pooling and the fusion alignment all respect padding."""
    adapted, tok = tiny(family, "flare", fusion)
    batched = _logits(adapted, _batch(tok, parallel_examples, "flare"))
    for i, example in enumerate(parallel_examples):
        alone = _logits(adapted, _batch(tok, [example], "flare"))
        assert torch.allclose(alone[0], batched[i], atol=1e-5), (i, alone[0], batched[i])
    if family in ("llama", "qwen2", "gemma2", "gemma3_text"):
        assert tok.padding_side == "left"
