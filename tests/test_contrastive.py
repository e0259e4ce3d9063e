"""Middle-layer alignment building blocks: InfoNCE, layer states with grad, schedule, sampler, pairs."""

import csv
import itertools
import math
import re
from collections import Counter

import pytest
import torch
from helpers import tiny

from xlt.alignment.contrastive import (AlternatingSchedule, alignment_pairs, info_nce, layer_states,
                                       pooled_alignment_loss, uniform_language_sampler)
from xlt.alignment.retrieval import mean_pool
from xlt.data.paths import resolve_data_dir
from xlt.errors import XltError
from xlt.models.architectures import middle_layer
from xlt.models.tiny import TINY_FAMILIES

# --- InfoNCE ---------------------------------------------------------------------------------

SRC = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
TGT = torch.tensor([[2.0, 0.0], [1.0, 1.0]])  # unnormalized on purpose: cosine ignores length


def _ce(logits_row, gold):
    return -logits_row[gold] + math.log(sum(math.exp(x) for x in logits_row))


def test_info_nce_matches_hand_computation():
    # cosines: [[1, 1/sqrt2], [0, 1/sqrt2]]; temperature 0.5 doubles them
    r = math.sqrt(2)
    logits = [[2.0, r], [0.0, r]]
    forward = (_ce(logits[0], 0) + _ce(logits[1], 1)) / 2
    backward = (_ce([2.0, 0.0], 0) + _ce([r, r], 1)) / 2  # columns: tgt rows against all src rows
    assert backward == pytest.approx((math.log(1 + math.exp(-2)) + math.log(2)) / 2)
    assert info_nce(SRC, TGT, 0.5, symmetric=False).item() == pytest.approx(forward, abs=1e-6)
    assert info_nce(SRC, TGT, 0.5).item() == pytest.approx((forward + backward) / 2, abs=1e-6)


def test_symmetric_is_the_mean_of_both_directions():
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    one_way = info_nce(a, b, symmetric=False)
    assert not torch.isclose(one_way, info_nce(b, a, symmetric=False))
    assert torch.isclose(info_nce(a, b), (one_way + info_nce(b, a, symmetric=False)) / 2, atol=1e-6)


def test_perfect_alignment_with_small_temperature_is_near_zero():
    x = 3 * torch.eye(4)
    assert info_nce(x, x.clone(), temperature=0.01).item() < 1e-6
    assert info_nce(x, x.flip(0), temperature=0.01).item() > 10  # every positive is the worst match


def test_info_nce_refuses_bad_input():
    with pytest.raises(ValueError):
        info_nce(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError):
        info_nce(SRC, TGT, temperature=0.0)


# --- layer states and gradients ---------------------------------------------------------------

SOURCES = ["i like the food here very much, truly", "no"]
TARGETS = ["kulo remen sanget kalih panganane", "ora"]


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def adapted(request):
    torch.manual_seed(0)
    model, tokenizer = tiny(request.param, "lora", None)
    model.model.eval()  # no dropout: padded and unpadded runs must agree exactly
    if request.param == "llama":
        assert tokenizer.padding_side == "left"
    return model, tokenizer


def _batch(tokenizer, texts):
    return dict(tokenizer(texts, padding=True, return_tensors="pt"))


def _lora_grads(model, layer_index):
    """LoRA grads of one (0-based) layer of the aligned stack (the encoder of mT5)."""
    pattern = re.compile(rf"((?:^|\.)layers|encoder\.layer|encoder\.block)\.{layer_index}\..*lora_")
    return {n: p.grad for n, p in model.named_parameters() if pattern.search(n)}


def test_padding_does_not_change_pooled_states(adapted):
    model, tokenizer = adapted
    batch = _batch(tokenizer, SOURCES)
    assert (batch["attention_mask"] == 0).any()
    with torch.no_grad():
        padded = layer_states(model.model, batch, [1, 2])
        for i, text in enumerate(SOURCES):
            alone = _batch(tokenizer, [text])
            single = layer_states(model.model, alone, [1, 2])
            for layer in (1, 2):
                got = mean_pool(padded[layer], batch["attention_mask"])[i]
                want = mean_pool(single[layer], alone["attention_mask"])[0]
                assert torch.allclose(got, want, atol=1e-5), (layer, i)


def test_gradients_reach_the_lora_adapter_up_to_the_aligned_layer(adapted):
    model, tokenizer = adapted
    model.model.zero_grad(set_to_none=True)
    loss = pooled_alignment_loss(model.model, _batch(tokenizer, SOURCES), _batch(tokenizer, TARGETS), [1], 0.1)
    assert loss.requires_grad and loss.item() > 0
    loss.backward()
    below, above = _lora_grads(model.model, 0), _lora_grads(model.model, 1)
    assert {n.split("lora_")[1][0] for n in below} == {"A", "B"}
    assert all(g is not None and g.abs().sum() > 0 for g in below.values()), below.keys()
    assert above and all(g is None or g.abs().sum() == 0 for g in above.values())  # layer 2 does not feed layer 1
    model.model.zero_grad(set_to_none=True)


def test_loss_averages_layers_and_checks_their_range(adapted):
    model, tokenizer = adapted
    src, tgt = _batch(tokenizer, SOURCES), _batch(tokenizer, TARGETS)
    with torch.no_grad():
        per_layer = [pooled_alignment_loss(model.model, src, tgt, [layer]) for layer in (1, 2)]
        both = pooled_alignment_loss(model.model, src, tgt, [1, 2])
    assert torch.isclose(both, (per_layer[0] + per_layer[1]) / 2, atol=1e-6)
    for bad in ([0], [3], []):
        with pytest.raises(XltError, match="1..2"):
            layer_states(model.model, src, bad)


# --- middle layer and schedule ----------------------------------------------------------------


def test_middle_layer():
    assert [middle_layer(n) for n in (1, 2, 5, 7, 12, 28, 32)] == [1, 1, 3, 4, 6, 14, 16]
    with pytest.raises(XltError):
        middle_layer(0)


@pytest.mark.parametrize("task, align, expected", [
    (1, 1, "TATATA"),
    (2, 1, "TTATTA"),
    (0, 1, "AAAAAA"),
    (1, 0, "TTTTTT"),
])
def test_schedule(task, align, expected):
    schedule = AlternatingSchedule(task, align)
    got = "".join(s[0].upper() for s in itertools.islice(schedule, 6))
    assert got == expected
    assert [schedule(k) for k in range(6)] == list(itertools.islice(schedule, 6))


def test_schedule_defaults_and_errors():
    assert AlternatingSchedule()(0) == "task" and AlternatingSchedule()(1) == "align"
    for task, align in ((0, 0), (-1, 1)):
        with pytest.raises(XltError):
            AlternatingSchedule(task, align)


# --- sampling and pairs -----------------------------------------------------------------------

PAIRS = {"jv": [(f"en{i}", f"jv{i}") for i in range(100)], "su": [("hello", "wilujeng")],
         "id": [(f"en{i}", f"id{i}") for i in range(10)]}


def test_sampler_is_about_uniform_over_languages():
    n = 6000
    samples = uniform_language_sampler(PAIRS, n, seed=1)
    counts = Counter(lang for lang, _, _ in samples)
    assert set(counts) == set(PAIRS)
    assert all(abs(c - n / 3) < 0.05 * n for c in counts.values()), counts  # ~6 sigma
    assert all((en, tgt) in PAIRS[lang] for lang, en, tgt in samples)
    jv = Counter(tgt for lang, _, tgt in samples if lang == "jv")
    assert len(jv) > 90  # pairs within a language are spread too


def test_sampler_is_deterministic_by_seed():
    shuffled = dict(reversed(PAIRS.items()))
    assert uniform_language_sampler(PAIRS, 50, 3) == uniform_language_sampler(shuffled, 50, 3)
    assert uniform_language_sampler(PAIRS, 50, 3) != uniform_language_sampler(PAIRS, 50, 4)
    assert uniform_language_sampler(PAIRS, 0, 3) == []
    with pytest.raises(XltError, match="su"):
        uniform_language_sampler({**PAIRS, "su": []}, 5, 0)


def test_alignment_pairs_on_nusax_mt():
    root = resolve_data_dir(None)
    pairs = alignment_pairs("nusax-mt", ["jv", "english", "su"], "valid", root)
    with (root / "nusax" / "mt" / "valid.csv").open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    assert list(pairs) == ["jv", "su"]
    assert len(pairs["jv"]) == len(rows) == 100
    for k in (0, 37, 99):
        assert pairs["jv"][k] == (rows[k]["english"], rows[k]["javanese"])
        assert pairs["su"][k] == (rows[k]["english"], rows[k]["sundanese"])
    everything = alignment_pairs(data_dir=root)  # train split, every language but English
    assert len(everything) == 11 and "en" not in everything and len(everything["id"]) == 500
