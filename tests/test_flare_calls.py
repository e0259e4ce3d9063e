"""The contract of one FLARE model call: which device the cached states come back on, which inputs a call
needs, which precision a cached state belongs to, and that the states of one call never reach another."""

from __future__ import annotations

import threading

import pytest
import torch
from helpers import tiny

from xlt.data.examples import Example
from xlt.flare.fusion import build_fusion
from xlt.flare.source_cache import SourceStateCache
from xlt.training.batches import make_batch
from xlt.training.loop import TrainSettings, enable_checkpointing, task_steps, train

EXAMPLES = [Example(("a small test sentence",), ("the English side of it",), 0, "e0"),
            Example(("another one, longer than the first",), ("short",), 1, "e1"),
            Example(("three",), ("the third English sentence is the longest one here",), 2, "e2")]
FUSIONS = ["add", "mul", "add_relu", "mul_relu", "cross_attention"]


def _batch(tok, examples=EXAMPLES, source="text"):
    return make_batch(tok, examples, "target", 32, source=source).inputs


def _logits(adapted, inputs):
    """An evaluation call: eval mode, no grad."""
    adapted.model.eval()
    with torch.no_grad():
        return adapted.model(**inputs).logits


# --- one device rule for the cache ---------------------------------------------------------------


def test_the_cache_stores_rows_on_the_cpu_and_returns_them_on_the_device_asked_for(tmp_path):
    cache = SourceStateCache(max_bytes=4 * 5 * 4, spill_dir=tmp_path)  # room for the first row only
    first, second = (torch.randn(1, 5, 4), None), (torch.randn(1, 3, 4), torch.randn(2, 2, 4))
    cache.put("a", first)
    cache.put("b", second)
    assert set(cache.memory) == {"a"} and set(cache.spilled) == {"b"}
    assert all(t.device.type == "cpu" for t in cache.memory["a"] if t is not None)
    for key, row in (("a", first), ("b", second)):
        on_cpu = cache.get(key, torch.device("cpu"))
        assert all(torch.equal(a, b) for a, b in zip(on_cpu, row) if b is not None)
        on_meta = cache.get(key, torch.device("meta"))  # a device other than the one the rows are stored on
        assert [None if t is None else t.device.type for t in on_meta] == [None if t is None else "meta" for t in row]
    assert cache.get("missing", torch.device("meta")) is None


def test_every_cached_row_the_tuner_reads_comes_on_the_batch_device(monkeypatch):
    adapted, tok = tiny("bert")
    adapted.flare.enable_source_cache(2**30)
    asked, returned = [], []
    get = SourceStateCache.get

    def spy(self, key, device):
        row = get(self, key, device)
        asked.append(torch.device(device))
        returned.extend(t.device for t in row or () if t is not None)
        return row

    monkeypatch.setattr(SourceStateCache, "get", spy)
    adapted.model.train()
    inputs = _batch(tok)
    for _ in range(2):  # the second call reads every row from the cache
        adapted.model(**{k: v.clone() for k, v in inputs.items()}).logits.sum().backward()
    assert len(asked) == 6 and set(asked) == {inputs["input_ids"].device}
    assert len(returned) == 3 and set(returned) == {inputs["input_ids"].device}


# --- what a call must hold ------------------------------------------------------------------------


@pytest.mark.parametrize("fusion", FUSIONS)
def test_source_and_target_batches_of_different_sizes_are_refused(fusion):
    adapted, tok = tiny("bert", fusion=fusion)
    inputs = _batch(tok)
    one = _batch(tok, EXAMPLES[:1])
    with pytest.raises(ValueError, match=r"^the source batch has 1 rows but the target batch has 3: FLARE fuses each "
                                         r"example's own source, one source row per target row$"):
        adapted.model(**{**inputs, "source_input_ids": one["source_input_ids"],
                         "source_attention_mask": one["source_attention_mask"]})
    fuse = build_fusion(fusion, 4)  # the fusion itself refuses too (a cross-attention would broadcast)
    with pytest.raises(ValueError, match=r"^FLARE fusion: 3 target rows but 1 source rows$"):
        fuse(torch.randn(3, 5, 4), torch.randn(1, 6, 4), torch.ones(1, 6))


def test_a_source_input_without_its_mask_is_one_line_naming_it():
    adapted, tok = tiny("bert")
    inputs = _batch(tok)
    del inputs["source_attention_mask"]
    with pytest.raises(ValueError, match=r"^source_input_ids needs source_attention_mask \(its padding mask\) in the "
                                         r"same call$"):
        adapted.model(**inputs)
    adapted.flare.enable_source_cache(2**30)  # the cached path reads the masks too
    with pytest.raises(ValueError, match=r"^source_input_ids needs source_attention_mask"):
        adapted.model(**inputs)
    mask_only = {**_batch(tok)}
    del mask_only["source_input_ids"]
    with pytest.raises(ValueError, match=r"^FLARE's source inputs need source_input_ids, got "
                                         r"source_attention_mask$"):
        adapted.model(**mask_only)


def test_zero_source_together_with_a_source_is_refused():
    adapted, tok = tiny("bert")
    with pytest.raises(ValueError, match=r"^zero_source=True fuses zeros instead of the source text: drop it or the "
                                         r"source inputs \(source_input_ids, source_attention_mask\)$"):
        adapted.model(**_batch(tok), zero_source=True)


def test_an_mt5_call_with_encoder_outputs_fuses_like_the_whole_call():
    adapted, tok = tiny("mt5", task="generation", fusion="add")
    adapted.model.eval()
    enc = tok(["kulo remen sanget", "ora"], return_tensors="pt", padding=True)
    src = tok(["i like it very much", "no"], return_tensors="pt", padding=True)
    dec = torch.tensor([[0, 5, 6], [0, 7, 8]])
    decoder = {"decoder_input_ids": dec, "decoder_attention_mask": torch.ones_like(dec)}
    source = {"source_input_ids": src["input_ids"], "source_attention_mask": src["attention_mask"],
              **{f"source_{k}": v for k, v in decoder.items()}}
    whole = adapted.model(**enc, **decoder, **source)
    from transformers.modeling_outputs import BaseModelOutput

    encoded = BaseModelOutput(last_hidden_state=whole.encoder_last_hidden_state)
    with torch.no_grad():
        again = adapted.model(encoder_outputs=encoded, attention_mask=enc["attention_mask"], **decoder, **source)
    torch.testing.assert_close(again.logits, whole.logits.detach())


# --- the states of one call never reach another -------------------------------------------------


def test_the_backbone_or_a_layer_called_after_a_call_refuses_to_fuse_the_last_calls_source():
    adapted, tok = tiny("bert")
    inputs = _batch(tok)
    _logits(adapted, inputs)
    target = {k: v for k, v in inputs.items() if not k.startswith("source_")}
    with pytest.raises(RuntimeError, match="ran outside a call of its FLARE model, where it would fuse the last "
                                           "call's source states"):
        adapted.flare.wiring.backbone(**target)
    layer = next(iter(adapted.flare.wiring.layers))
    with pytest.raises(RuntimeError, match="ran outside a call of its FLARE model"):
        layer(torch.randn(3, 4, layer.in_features))
    with adapted.model.disable_adapter():  # without the adapter there is nothing to fuse: the plain model
        adapted.flare.wiring.backbone(**target)
    torch.testing.assert_close(_logits(adapted, inputs), _logits(adapted, inputs))  # the model itself still runs


def test_a_failed_call_leaves_the_model_usable():
    adapted, tok = tiny("bert")
    inputs = _batch(tok)
    expected = _logits(adapted, inputs)
    with pytest.raises(ValueError, match="needs the source text"):
        adapted.model(**{k: v for k, v in inputs.items() if not k.startswith("source_")})
    with pytest.raises(ValueError, match="one source row per target row"):
        adapted.model(**{**inputs, "source_input_ids": inputs["source_input_ids"][:1],
                         "source_attention_mask": inputs["source_attention_mask"][:1]})
    assert torch.equal(_logits(adapted, inputs), expected)


def test_a_source_edited_in_place_is_read_again_not_reused():
    adapted, tok = tiny("bert")
    adapted.model.eval()
    inputs = _batch(tok)
    other = _batch(tok, [Example(ex.target, ("something else entirely, and longer",), 0, "x") for ex in EXAMPLES])
    first = _logits(adapted, inputs)
    ids, mask = inputs["source_input_ids"], inputs["source_attention_mask"]
    width = other["source_input_ids"].shape[1]
    assert width <= ids.shape[1]
    ids.zero_()
    mask.zero_()
    ids[:, :width] = other["source_input_ids"]
    mask[:, :width] = other["source_attention_mask"]
    edited = _logits(adapted, inputs)  # the same tensor objects as the first call, with new content
    assert not torch.allclose(edited, first, atol=1e-4)
    torch.testing.assert_close(edited, _logits(adapted, other))


def test_a_second_thread_calling_a_running_model_is_refused_and_the_first_call_is_unharmed():
    adapted, tok = tiny("bert")
    adapted.model.eval()
    inputs = _batch(tok)
    expected = _logits(adapted, inputs)
    inside, go_on = threading.Event(), threading.Event()
    layer = adapted.flare.wiring.backbone.encoder.layer[1]
    hook = layer.register_forward_pre_hook(lambda m, a: (inside.set(), go_on.wait(30)) and None)
    result = {}
    first = threading.Thread(target=lambda: result.setdefault("logits", _logits(adapted, inputs)))
    first.start()
    assert inside.wait(30)
    try:
        hook.remove()
        with pytest.raises(RuntimeError, match=r"^this FLARE model is already running a call \(thread \d+\): it runs "
                                               r"one call at a time; give each thread its own model$"):
            _logits(adapted, _batch(tok, EXAMPLES[::-1]))
    finally:
        go_on.set()
        first.join(30)
    assert torch.equal(result["logits"], expected)
    assert torch.equal(_logits(adapted, inputs), expected)  # and the model is free again


def test_checkpointed_training_still_refuses_calls_outside_the_model_between_steps():
    adapted, tok = tiny("bert", fusion="mul")
    enable_checkpointing(adapted.model.get_base_model())
    adapted.model.train()
    inputs = _batch(tok)
    loss = adapted.model(**inputs).logits.square().sum()
    loss.backward()  # the re-forward of the checkpointed layers runs in backward, with this call's states
    assert all(p.grad is not None for n, p in adapted.model.named_parameters() if "lora_B" in n)
    with pytest.raises(RuntimeError, match="ran outside a call of its FLARE model"):
        adapted.flare.wiring.backbone(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])


# --- the cache: precision, what it stores, its count --------------------------------------------


def test_states_cached_under_bf16_autocast_are_not_read_in_fp32():
    adapted, tok = tiny("bert")
    adapted.flare.enable_source_cache(2**30)
    layers = list(adapted.flare.wiring.layers)

    def states():  # at real source positions (the cache pads with zeros, the frozen pass with pad-token states)
        return [layer.source.states * layer.source.mask.unsqueeze(-1) for layer in layers]

    adapted.model.train()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        adapted.model(**_batch(tok))  # training mode: the rows are stored, under bf16
    bf16 = states()
    assert len(adapted.flare.source_cache) == 3
    cached_logits = _logits(adapted, _batch(tok))  # fp32 evaluation of the same texts
    cached = states()
    adapted.flare.source_cache = None
    fresh_logits = _logits(adapted, _batch(tok))
    fresh = states()
    for a, b in zip(cached, fresh):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(cached_logits, fresh_logits, rtol=1e-6, atol=1e-7)
    assert max((a.float() - b).abs().max().item() for a, b in zip(bf16, fresh)) > 1e-5  # bf16 states differ


def test_only_training_mode_calls_store_rows_and_evaluation_reads_them():
    adapted, tok = tiny("bert")
    cache = adapted.flare.enable_source_cache(2**30)
    adapted.model.eval()
    _logits(adapted, _batch(tok))
    assert len(cache) == 0 and adapted.flare.source_rows_computed == 3  # evaluation stores nothing
    adapted.model.train()
    adapted.model(**_batch(tok, EXAMPLES[:2]))
    assert len(cache) == 2 and adapted.flare.source_rows_computed == 5
    adapted.model.eval()
    _logits(adapted, _batch(tok))  # two rows from the cache, the third computed and not stored
    assert len(cache) == 2 and adapted.flare.source_rows_computed == 6


def test_the_frozen_pass_builds_no_kv_cache():
    adapted, tok = tiny("llama")
    seen = []
    wiring = adapted.flare.wiring

    def record(module, args, kwargs, output):
        if wiring.in_source_pass:
            seen.append((kwargs.get("use_cache"), getattr(output, "past_key_values", None)))

    wiring.backbone.register_forward_hook(record, with_kwargs=True)
    _logits(adapted, _batch(tok))
    assert seen == [(False, None)]


@pytest.mark.parametrize("cache_bytes, passes", [(2**30, 1.0), (None, 6.0)])
def test_source_passes_count_distinct_source_texts(cache_bytes, passes):
    adapted, tok = tiny("bert")
    if cache_bytes is not None:
        adapted.flare.enable_source_cache(cache_bytes)
    examples = EXAMPLES * 3  # 9 training examples, 3 distinct English texts
    plan = task_steps(examples, lambda exs: make_batch(tok, exs, "target", 32, source="text"), batch_size=4,
                      epochs=2, seed=0)
    train(adapted.model, plan, TrainSettings(epochs=2, lr=1e-3, batch_size=4, show_progress=False))
    assert len(adapted.flare.training_sources) == 3
    # cached: each distinct text ran once; uncached: every row of both epochs ran (18 rows / 3 texts)
    assert adapted.flare.source_passes_per_source() == passes
    _logits(adapted, _batch(tok, [Example(("x",), ("an evaluation text",), 0, "t")]))  # evaluation counts nothing
    assert adapted.flare.source_passes_per_source() == passes


# --- decoding: A·x_src once per generation ------------------------------------------------------


def test_the_down_projected_source_is_computed_once_while_the_source_is_unchanged():
    adapted, tok = tiny("llama", task="generation")
    adapted.model.eval()
    layer = next(iter(adapted.flare.wiring.layers))
    projected = []  # each time A reads the layer's source states
    layer.lora_A["default"].register_forward_hook(
        lambda m, a, out: projected.append(a[0].data_ptr() == layer.source.states.data_ptr()))
    inputs = _batch(tok)
    expected = _logits(adapted, inputs)
    assert projected.count(True) == 1
    assert torch.equal(_logits(adapted, inputs), expected)  # the same source tensors: the same states object
    assert projected.count(True) == 1
    with torch.no_grad():
        layer.lora_A["default"].weight.mul_(2)  # A changed in place: projected again
    changed = _logits(adapted, inputs)
    assert projected.count(True) == 2 and not torch.allclose(changed, expected)
    adapted.model.train()
    adapted.model(**inputs)  # with grad: every call projects (A trains, each forward has its own graph)
    adapted.model(**inputs)
    assert projected.count(True) == 4


def test_the_alignment_kept_for_the_layers_of_a_stack_follows_in_place_edits():
    from xlt.flare.fusion import align_to_target

    source = torch.arange(12.0).reshape(1, 6, 2)
    mask, positions = torch.tensor([[0, 0, 1, 1, 1, 1]]), torch.tensor([[0, 1, 2]])
    assert align_to_target(source, mask, positions)[0, :, 0].tolist() == [4.0, 6.0, 8.0]
    assert align_to_target(source * 2, mask, positions)[0, :, 0].tolist() == [8.0, 12.0, 16.0]  # the next layer
    mask[0, :2] = 1  # the same tensors, edited: aligned again
    assert align_to_target(source, mask, positions)[0, :, 0].tolist() == [0.0, 2.0, 4.0]
    positions[0, 2] = 9  # past the source's end: zeros
    assert align_to_target(source, mask, positions)[0, :, 0].tolist() == [0.0, 2.0, 0.0]
