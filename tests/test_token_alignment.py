"""The aligned_* fusions: token alignment from the frozen model's own states (mutual argmax at a middle layer),
computed once per (target, English) pair, causal in decoder stacks, refused where it cannot hold."""

import pytest
import torch
from helpers import cli_error, source_of, tiny

from xlt.cli.main import main
from xlt.flare.config import FlareConfig
from xlt.flare.token_alignment import alignment_layer, mutual_argmax, positional_agreement
from xlt.training.batches import make_batch

E = torch.eye(4)


def test_mutual_argmax_aligns_tokens_that_prefer_each_other_and_leaves_the_rest_unaligned():
    source = torch.stack([E[0], E[1], E[2]]).unsqueeze(0)  # three English tokens
    # target 0 ~ English 2; target 1 ~ English 0; target 2 leans to English 0 but less than target 1 does
    target = torch.stack([E[2], E[0], E[0] + 0.9 * E[3], E[1]]).unsqueeze(0)
    mask = torch.ones(1, 4, dtype=torch.long)
    assert mutual_argmax(target, mask, source, torch.ones(1, 3, dtype=torch.long), causal=False).tolist() == \
        [[2, 0, -1, 1]]
    left = torch.cat([torch.full((1, 2, 4), 5.0), source], 1)  # two left pads with states like every token
    left_mask = torch.tensor([[0, 0, 1, 1, 1]])
    assert mutual_argmax(target, mask, left, left_mask, causal=False).tolist() == [[2, 0, -1, 1]]
    padded_target = torch.tensor([[1, 1, 1, 0]])
    assert mutual_argmax(target, padded_target, source, torch.ones(1, 3, dtype=torch.long), False)[0, 3] == -1


def test_a_causal_alignment_never_depends_on_later_tokens_of_either_text():
    torch.manual_seed(0)
    target, source = torch.randn(1, 6, 8), torch.randn(1, 6, 8)
    mask = torch.ones(1, 6, dtype=torch.long)
    base = mutual_argmax(target, mask, source, mask, causal=True)
    relative = torch.arange(6)
    assert bool(((base[0] <= relative) | (base[0] == -1)).all())
    for t in range(5):
        later_target, later_source = target.clone(), source.clone()
        later_target[:, t + 1:] = torch.randn(1, 5 - t, 8)
        later_source[:, t + 1:] = torch.randn(1, 5 - t, 8)
        moved = mutual_argmax(later_target, mask, later_source, mask, causal=True)
        assert torch.equal(moved[:, : t + 1], base[:, : t + 1]), t


def test_the_layer_is_two_thirds_up_unless_configured_and_agreement_counts_positional_partners():
    assert [alignment_layer(n, None) for n in (2, 12, 18, 24)] == [0, 7, 11, 15]
    assert alignment_layer(12, 4) == 3
    with pytest.raises(ValueError, match="alignment_layer must be between 1 and 2"):
        alignment_layer(2, 3)
    alignment = torch.tensor([[0, 2, 2, -1, 0]])
    assert positional_agreement(alignment, torch.tensor([[1, 1, 1, 1, 0]])) == (4, 3, 2)


def _aligned_model(family="bert"):
    adapted, tok = tiny(family, "flare", "aligned_add_relu")
    return adapted, tok


def test_the_tuner_aligns_with_the_frozen_models_states_and_every_fused_layer_reads_it(parallel_examples):
    adapted, tok = _aligned_model()
    batch = make_batch(tok, parallel_examples, "target", 32, source="text")
    seen = {}
    hooks = [layer.register_forward_pre_hook(lambda m, a: seen.__setitem__(m.flare_name, m.source_alignment))
             for layer in adapted.flare.wiring.layers]
    adapted.model.train()
    adapted.model(**batch.inputs)
    for hook in hooks:
        hook.remove()
    source = source_of(batch)
    target = {k: v for k, v in batch.inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with adapted.model.disable_adapter(), torch.no_grad():
        adapted.model.eval()
        layer = alignment_layer(2, None) + 1  # hidden_states[k] is the output of layer k
        t_states = adapted.flare.wiring.backbone(**target, output_hidden_states=True).hidden_states[layer]
        s_states = adapted.flare.wiring.backbone(**source, output_hidden_states=True).hidden_states[layer]
    expected = mutual_argmax(t_states, target["attention_mask"], s_states, source["attention_mask"], causal=False)
    assert len(seen) == 4 and all(torch.equal(a, expected) for a in seen.values())
    assert bool((expected >= 0).any()) and bool((expected[target["attention_mask"].bool()] == -1).any())


def test_alignments_are_cached_once_per_pair_in_training_and_the_cache_gives_the_same_outputs(parallel_examples):
    adapted, tok = _aligned_model()
    batch = make_batch(tok, parallel_examples, "target", 32, source="text")
    adapted.model.train()

    def logits():
        torch.manual_seed(0)  # the same dropout masks in every call (the frozen passes draw none)
        return adapted.model(**batch.inputs).logits

    plain = logits()
    adapted.flare.enable_source_cache(1 << 20)
    calls = []
    original = adapted.flare.wiring.run_layers
    adapted.flare.wiring.run_layers = lambda inputs, layers: calls.append(len(inputs["input_ids"])) or original(
        inputs, layers)
    first, second = logits(), logits()
    assert calls == [3, 3]  # one frozen pass of each text, for the three examples, the first time only
    assert torch.allclose(first, plain, atol=1e-6) and torch.allclose(second, plain, atol=1e-6)
    assert adapted.flare.source_passes_per_source() == 1.0  # alignment passes are not counted as source passes


def test_a_decoding_step_with_a_kv_cache_is_refused_by_aligned_fusions():
    adapted, tok = tiny("llama", "flare", "aligned_add", task="generation")
    prompt, source = tok(["one two three"], return_tensors="pt"), tok(["uno dos tres"], return_tensors="pt")
    english = {"source_input_ids": source["input_ids"], "source_attention_mask": source["attention_mask"]}
    adapted.model.eval()
    with torch.no_grad():
        first = adapted.model(**prompt, **english, use_cache=True)  # the whole prompt: aligned
        step = {"input_ids": first.logits[:, -1:].argmax(-1), "past_key_values": first.past_key_values,
                "attention_mask": torch.ones(1, prompt["input_ids"].shape[1] + 1, dtype=torch.long)}
        width = prompt["input_ids"].shape[1] + 1
        with pytest.raises(ValueError, match="aligned fusions need each call's whole target sequence, but this "
                                             f"call reads 1 of {width} positions"):
            adapted.model(**step, **english, use_cache=True)


def test_aligned_fusions_are_refused_for_flare_mt_and_for_generation_tasks(capsys):
    with pytest.raises(ValueError, match="FLARE-MT's source is another model's"):
        FlareConfig(fusion="aligned_add", mt_encoder="m", mt_hidden_size=8, target_modules=["q"])
    assert main(["train", "--task", "massive", "--method", "flare", "--fusion", "aligned_add", "--model",
                 "tiny-random/llama", "--target-lang", "de"]) == 2
    assert cli_error(capsys) == ("--fusion aligned_add aligns the model's own states of whole target and English "
                                 "texts; massive decodes token by token: use a position or summary fusion")
