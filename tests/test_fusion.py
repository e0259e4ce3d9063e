import pytest
import torch

from xlt.errors import XltError
from xlt.flare.config import FlareConfig
from xlt.flare.fusion import (FUSIONS, CrossAttentionFusion, PositionwiseFusion, align_to_target, build_fusion,
                              relative_positions)
from xlt.flare.fusion_names import check_fusion_name

T = torch.tensor([[[1.0, -2.0], [3.0, 0.5]]])
S = torch.tensor([[[2.0, 1.0], [-4.0, 2.0]]])
MASK = torch.ones(1, 2, dtype=torch.long)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("add", [[3.0, -1.0], [-1.0, 2.5]]),
        ("mul", [[2.0, -2.0], [-12.0, 1.0]]),
        ("add_relu", [[3.0, 0.0], [0.0, 2.5]]),
        ("mul_relu", [[2.0, 0.0], [0.0, 1.0]]),
    ],
)
def test_positionwise_fusions_compute_their_formula(name, expected):
    out = PositionwiseFusion(name)(T, S, MASK)
    assert torch.equal(out, torch.tensor([expected]))


def test_align_zeroes_padding_then_pads_or_truncates():
    source = torch.arange(1.0, 7.0).reshape(1, 3, 2)
    mask = torch.tensor([[1, 1, 0]])
    padded = align_to_target(source, mask, torch.arange(5).unsqueeze(0))
    assert padded.shape == (1, 5, 2)
    assert torch.equal(padded[0, :2], source[0, :2])
    assert torch.count_nonzero(padded[0, 2:]) == 0  # the pad position and the appended ones are zero
    assert torch.equal(align_to_target(source, mask, torch.zeros(1, 1, dtype=torch.long)), source[:, :1])


def test_left_and_right_padding_align_the_same_tokens():
    states = torch.randn(1, 3, 2)
    right = torch.cat([states, torch.zeros(1, 2, 2)], 1)  # 3 real tokens, then 2 pads
    left = torch.cat([torch.full((1, 2, 2), 9.0), states], 1)  # 2 pads (garbage states), then 3 real
    right_mask, left_mask = torch.tensor([[1, 1, 1, 0, 0]]), torch.tensor([[0, 0, 1, 1, 1]])
    target_mask = torch.tensor([[0, 1, 1, 1, 1]])  # a left-padded target with 4 real tokens
    positions = relative_positions(target_mask)
    assert positions.tolist() == [[-1, 0, 1, 2, 3]]
    a = align_to_target(right, right_mask, positions)
    b = align_to_target(left, left_mask, positions)
    assert torch.equal(a, b)
    assert torch.equal(a[0, 1:4], states[0]) and torch.count_nonzero(a[0, [0, 4]]) == 0


def test_causal_cross_attention_uses_relative_positions_under_left_padding():
    torch.manual_seed(0)
    attn = CrossAttentionFusion(4, causal=True)
    t = torch.randn(1, 4, 4)
    s = torch.randn(1, 4, 4)
    s_mask = torch.tensor([[0, 1, 1, 1]])  # left padded: real source at relative 0, 1, 2
    positions = relative_positions(torch.tensor([[0, 0, 1, 1]]))  # target real tokens at relative 0, 1
    base = attn(t, s, s_mask, positions)
    later = s.clone()
    later[0, 3] += 10.0  # relative source position 2: in the future of both target tokens
    assert torch.allclose(base, attn(t, later, s_mask, positions))
    first = s.clone()
    first[0, 1] += 10.0  # relative source position 0: visible to both
    assert not torch.allclose(base[0, 2:], attn(t, first, s_mask, positions)[0, 2:])


def test_padded_source_positions_never_reach_the_output():
    t = torch.randn(2, 4, 3)
    s = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    s_changed = s.clone()
    s_changed[1, 2:] = 100.0  # garbage at padded positions
    for name in FUSIONS:
        fusion = build_fusion(name, 3)
        assert torch.allclose(fusion(t, s, mask), fusion(t, s_changed, mask)), name


def test_cross_attention_causal_mask_hides_future_source_positions():
    torch.manual_seed(0)
    attn = CrossAttentionFusion(4, causal=True)
    t, s = torch.randn(1, 5, 4), torch.randn(1, 5, 4)
    mask = torch.ones(1, 5, dtype=torch.long)
    base = attn(t, s, mask)
    s_future = s.clone()
    s_future[0, 3:] += 10.0
    changed = attn(t, s_future, mask)
    assert torch.allclose(base[0, :3], changed[0, :3])  # positions 0..2 cannot see source 3, 4
    assert not torch.allclose(base[0, 3:], changed[0, 3:])
    bidirectional = CrossAttentionFusion(4, causal=False)
    bidirectional.load_state_dict(attn.state_dict())
    assert not torch.allclose(bidirectional(t, s, mask)[0, 0], bidirectional(t, s_future, mask)[0, 0])


def test_cross_attention_with_no_visible_source_adds_nothing():
    attn = CrossAttentionFusion(4)
    t = torch.randn(1, 3, 4)
    out = attn(t, torch.randn(1, 2, 4), torch.zeros(1, 2, dtype=torch.long))
    assert torch.allclose(out, t) and torch.isfinite(out).all()


def test_unknown_fusion_is_an_error_not_plain_lora():
    # names are checked once, where a FLARE adapter is configured (build_fusion only sees checked names)
    with pytest.raises(XltError, match="unknown fusion 'concat'"):
        check_fusion_name("concat")
    with pytest.raises(XltError, match="unknown fusion 'sum'"):
        FlareConfig(fusion="sum", r=4, target_modules=["query"])
    with pytest.raises(XltError, match="unknown fusion 'concat'"):
        attach_flare_with_fusion("concat")
    assert all(check_fusion_name(name) == name for name in FUSIONS)


def test_causal_stacks_match_whole_path_components():
    decoder_only = FlareConfig(fusion="cross_attention", r=4, target_modules=["q_proj"], causal_stacks=["layers"])
    assert decoder_only.is_causal("model.layers.0.self_attn.q_proj")
    assert not decoder_only.is_causal("model.sublayers.0.self_attn.q_proj")
    mt5 = FlareConfig(fusion="add", r=4, target_modules=["q"], causal_stacks=["decoder.block"])
    assert mt5.is_causal("decoder.block.1.layer.0.SelfAttention.q")
    assert mt5.is_causal("transformer.decoder.block.0.layer.0.SelfAttention.q")  # under a classification head
    assert not mt5.is_causal("encoder.block.1.layer.0.SelfAttention.q")
    assert not FlareConfig(fusion="add", r=4, target_modules=["q"]).is_causal("decoder.block.0.layer.0.SelfAttention.q")
    saved = mt5.to_dict()  # what adapter_config.json records
    assert {k: saved[k] for k in ("fusion", "source_layer_offset", "causal_stacks")} == {
        "fusion": "add", "source_layer_offset": 1, "causal_stacks": ["decoder.block"]}
    assert str(saved["peft_type"]) == "FLARE" and mt5.peft_type == "FLARE"


def attach_flare_with_fusion(fusion: str):
    """A FLARE adapter on a tiny BERT, configured the way a run configures it."""
    from xlt.methods.adapters import AdapterSettings, attach
    from xlt.methods.table import get_method
    from xlt.models.architectures import architecture_for
    from xlt.models.loading import load_classifier, resolve_model

    model = load_classifier(resolve_model("tiny-random/bert"), ("a", "b"))
    return attach(model, get_method("flare"), architecture_for("bert"), AdapterSettings(r=4, alpha=8, fusion=fusion))


@pytest.mark.parametrize("module", ["xlt.flare.config", "xlt.flare.tuner", "xlt.flare.layer", "xlt.flare.source_pass"])
def test_any_flare_module_imports_first_and_registers_flare_with_peft(module):
    """PEFT's import registers FLARE; a FLARE module importing PEFT first must neither break nor skip it."""
    import subprocess
    import sys

    code = (f"import {module}; from peft import mapping; "
            "from xlt.flare.config import FlareConfig; from xlt.flare.tuner import FlareTuner; "
            "assert mapping.PEFT_TYPE_TO_CONFIG_MAPPING['FLARE'] is FlareConfig; "
            "assert mapping.PEFT_TYPE_TO_TUNER_MAPPING['FLARE'] is FlareTuner")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


# --- pairings: which English state each target token meets ---------------------------------------------------

SOURCE = torch.tensor([[[9.0, 9.0], [1.0, 2.0], [3.0, 4.0], [5.0, 0.0]]])  # left-padded: 3 real tokens
SOURCE_MASK = torch.tensor([[0, 1, 1, 1]])
TARGET_POSITIONS = torch.tensor([[-1, 0, 1, 2, 3, 4]])  # one left pad, then 5 real target tokens


def test_the_summary_is_the_mean_of_the_real_english_tokens_or_in_a_causal_stack_of_those_seen_so_far():
    from xlt.flare.fusion import source_summary

    whole = source_summary(SOURCE, SOURCE_MASK, TARGET_POSITIONS, causal=False)
    assert whole[0, 0].tolist() == [0.0, 0.0]  # a padded target position meets nothing
    assert all(row == [3.0, 2.0] for row in whole[0, 1:].tolist())  # (1+3+5)/3, (2+4+0)/3: the pad's 9s never
    prefix = source_summary(SOURCE, SOURCE_MASK, TARGET_POSITIONS, causal=True)
    assert prefix[0].tolist() == [[0.0, 0.0], [1.0, 2.0], [2.0, 3.0], [3.0, 2.0], [3.0, 2.0], [3.0, 2.0]]
    empty = source_summary(SOURCE, torch.zeros(1, 4, dtype=torch.long), TARGET_POSITIONS, causal=True)
    assert torch.count_nonzero(empty) == 0


def test_the_aligned_pairing_reads_each_tokens_aligned_english_token_and_the_summary_where_none():
    alignment = torch.tensor([[-1, 2, -1, 0, 1, 2]])  # relative English index per target token (-1: none)
    fusion = PositionwiseFusion("aligned_add")
    target = torch.zeros(1, 6, 2)
    out = fusion(target, SOURCE, SOURCE_MASK, TARGET_POSITIONS, alignment)
    assert out[0].tolist() == [[0.0, 0.0], [5.0, 0.0], [3.0, 2.0], [1.0, 2.0], [3.0, 4.0], [5.0, 0.0]]
    assert torch.equal(fusion(target, SOURCE, SOURCE_MASK, TARGET_POSITIONS, None),
                       PositionwiseFusion("summary_add")(target, SOURCE, SOURCE_MASK, TARGET_POSITIONS))
    causal = PositionwiseFusion("aligned_add", causal=True)(target, SOURCE, SOURCE_MASK, TARGET_POSITIONS, alignment)
    assert causal[0, 1].tolist() == [1.0, 2.0]  # token 0 aligned to English 2, a later position: its prefix summary
    assert torch.equal(causal[0, 3:], out[0, 3:])


def test_fusion_names_are_pairings_times_functions_and_unknown_ones_are_refused():
    from xlt.flare.fusion_names import needs_alignment, split_fusion

    assert split_fusion("aligned_add_relu") == ("aligned", "add_relu") and split_fusion("mul") == ("position", "mul")
    assert split_fusion("summary_mul_relu") == ("summary", "mul_relu")
    assert needs_alignment("aligned_mul") and not needs_alignment("summary_add") and not needs_alignment("cross_attention")
    with pytest.raises(XltError, match="unknown fusion 'aligned_cross_attention'"):
        split_fusion("aligned_cross_attention")
