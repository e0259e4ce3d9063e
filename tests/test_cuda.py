"""One training step and one evaluation on a device, fp32 and bf16 autocast, for every method that reads a source.

Each body runs on the CPU here (proving the test code itself) and, marked ``cuda``, on a GPU where there is
one (``pytest -m cuda``; ``benchmarks/gpu_check.sh``). The GPU runs are what catch a tensor left on the
wrong device: the source-state cache keeps its rows on the CPU, the batches live on the GPU. FLARE under
gradient checkpointing is checked too: on a GPU its re-forward runs on autograd's own thread.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from helpers import tiny
from test_flare_mt import _flare_mt
from test_xmixup import build as xmixup

from xlt.data.examples import Example
from xlt.training.batches import make_batch
from xlt.training.loop import predict

DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)]
PRECISIONS = ["fp32", "bf16"]
EXAMPLES = [Example(("a small test sentence",), ("the English side of it",), 0, "e0"),
            Example(("another one, longer than the first",), ("short",), 1, "e1"),
            Example(("three",), ("the third English sentence is the longest one here",), 2, "e2"),
            Example(("four words in here",), ("the English side of it",), 1, "e3")]  # a repeated English text


def _autocast(device: str, precision: str):
    return torch.autocast(device, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def train_and_evaluate(adapted, to_batch, device: str, precision: str, epochs: int = 1) -> list:
    """``epochs`` passes of one training step over EXAMPLES (fresh batch tensors each time, as the loop makes
    them), then the predictions of ``predict``; every output on ``device`` and finite."""
    model = adapted.model.to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for _ in range(epochs):
        batch = to_batch(EXAMPLES).to(device)
        with _autocast(device, precision):
            out = model(**batch.inputs, labels=batch.labels)
        assert out.logits.device.type == device and torch.isfinite(out.loss)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    assert next(p for p in model.parameters() if p.requires_grad).device.type == device
    predictions = predict(model, EXAMPLES, to_batch, batch_size=3, bf16=precision == "bf16", show_progress=False)
    assert len(predictions) == len(EXAMPLES) and set(predictions) <= {0, 1, 2}
    return predictions


def _flare(cache_bytes: int | None, spill_dir=None):
    adapted, tok = tiny("bert", fusion="add_relu")
    if cache_bytes is not None:
        adapted.flare.enable_source_cache(cache_bytes, spill_dir)
    adapted.model.eval()
    return adapted, lambda exs: make_batch(tok, exs, "target", 32, source="text")


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("device", DEVICES)
def test_flare_cached_hits_the_cache_on_the_device(device, precision):
    adapted, to_batch = _flare(2**30)
    train_and_evaluate(adapted, to_batch, device, precision, epochs=2)
    cache = adapted.flare.source_cache
    assert len(cache) == 3 and cache.memory_bytes > 0  # 3 distinct English texts, stored once
    # the first epoch computed the 3 distinct texts, the second and the evaluation (same precision) read them
    assert adapted.flare.source_rows_computed == 3 and adapted.flare.source_passes_per_source() == 1.0


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("device", DEVICES)
def test_flare_uncached_on_the_device(device, precision):
    adapted, to_batch = _flare(None)
    train_and_evaluate(adapted, to_batch, device, precision, epochs=2)
    assert adapted.flare.source_cache is None and adapted.flare.training_rows_computed == 2 * len(EXAMPLES)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("device", DEVICES)
def test_flare_with_the_cache_spilled_to_disk_on_the_device(device, precision, tmp_path):
    adapted, to_batch = _flare(0, tmp_path)  # no memory: every row goes to the memory-mapped file
    spilled = train_and_evaluate(adapted, to_batch, device, precision, epochs=2)
    cache = adapted.flare.source_cache
    assert cache.memory_bytes == 0 and cache.spilled_bytes > 0 and len(cache) == 3
    assert adapted.flare.training_rows_computed == 3
    if precision == "fp32":  # the spilled rows are the cached rows, bit for bit
        cached, to_batch = _flare(2**30)
        assert train_and_evaluate(cached, to_batch, device, precision, epochs=2) == spilled


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("device", DEVICES)
def test_flare_under_gradient_checkpointing_on_the_device(device, precision):
    """The checkpointed layers re-forward in backward, on autograd's own thread on a GPU: they still fuse."""
    from xlt.training.loop import enable_checkpointing

    grads = []
    for checkpointing in (False, True):
        adapted, to_batch = _flare(None)
        if checkpointing:
            enable_checkpointing(adapted.model.get_base_model())
        model = adapted.model.to(device).train()
        batch = to_batch(EXAMPLES).to(device)
        with _autocast(device, precision):
            loss = model(**batch.inputs, labels=batch.labels).loss
        loss.backward()
        grads.append({n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and any("lora_A" in n for n in grads[0])
    tolerance = dict(rtol=1e-3, atol=1e-5) if precision == "fp32" else dict(rtol=2e-2, atol=1e-3)
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name, **tolerance)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("device", DEVICES)
def test_flare_mt_on_the_device(device, precision):
    adapted, tok = _flare_mt()
    adapted.flare.enable_source_cache(2**30)
    train_and_evaluate(adapted, lambda exs: make_batch(tok, exs, "target", 32, source=adapted.source), device,
                       precision, epochs=2)
    assert next(adapted.flare._mt_encoder.parameters()).device.type == device
    assert adapted.flare.source_rows_computed == len(EXAMPLES)  # 4 distinct target texts, each encoded once


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("device", DEVICES)
def test_x_mixup_on_the_device(device, precision):
    adapted, tok = xmixup("bert")
    train_and_evaluate(adapted, lambda exs: make_batch(tok, exs, "target", 32, source="text"), device, precision)
    assert adapted.mixup.last_terms["kl"].device.type == device


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("device", DEVICES)
def test_input_fusion_on_the_device(device, precision):
    adapted, tok = tiny("bert", method="input-fusion", fusion=None)
    adapted.model.eval()
    to_batch = lambda exs: make_batch(tok, exs, "concat", 32)  # noqa: E731
    assert "source_input_ids" not in to_batch(EXAMPLES).inputs
    train_and_evaluate(adapted, to_batch, device, precision)
