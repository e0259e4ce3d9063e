"""Classification heads pool explicitly (mean / first / last real token), with a default per family,
recorded in the run's config and in the English model, and refused where it does not apply."""

import json

import pytest
import torch
import yaml

from xlt.cli import main
from xlt.errors import XltError
from xlt.models.classifier import PooledClassifier, resolve_pooling
from xlt.models.loading import resolve_model
from xlt.models.pooling import pool

HIDDEN = torch.tensor([[[1.0], [2.0], [3.0], [9.0]],  # right padded: real tokens 1, 2, 3
                       [[9.0], [9.0], [4.0], [6.0]]])  # left padded: real tokens 4, 6
MASK = torch.tensor([[1, 1, 1, 0], [0, 0, 1, 1]])


@pytest.mark.parametrize("pooling, expected", [("mean", [2.0, 5.0]), ("first", [1.0, 4.0]), ("last", [3.0, 6.0])])
def test_pooling_reads_real_tokens_only_on_either_padding_side(pooling, expected):
    assert pool(HIDDEN, MASK, pooling)[:, 0].tolist() == expected


def test_family_defaults_and_refusals():
    assert resolve_pooling(None, "encoder") == "mean"  # e5 is trained with mean pooling
    assert resolve_pooling(None, "decoder") == "last"
    assert resolve_pooling("first", "encoder") == "first"
    assert resolve_pooling(None, "encoder-decoder") == "eos"
    with pytest.raises(XltError, match="pooling 'mean' is not available for mT5"):
        resolve_pooling("mean", "encoder-decoder")
    with pytest.raises(XltError, match="unknown pooling 'max'"):
        resolve_pooling("max", "encoder")


def test_a_saved_classifier_reloads_with_identical_logits_and_refuses_other_pooling(tmp_path):
    path = resolve_model("tiny-random/bert")
    labels = ("a", "b", "c")
    torch.manual_seed(3)
    model = PooledClassifier.from_pretrained(path, labels, "mean", "encoder").eval()
    ids = torch.tensor([[2, 10, 11, 12, 3, 0], [2, 13, 3, 0, 0, 0]])
    mask = (ids != 0).long()
    expected = model(input_ids=ids, attention_mask=mask).logits
    model.save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())  # a Hugging Face folder (tests/test_export.py)
    assert (saved["model_type"], saved["pooling"], saved["id2label"]) == ("xlt-pooled-classifier", "mean",
                                                                          {"0": "a", "1": "b", "2": "c"})
    again = PooledClassifier.from_pretrained(str(tmp_path / "m"), labels, "mean", "encoder").eval()
    assert torch.equal(again(input_ids=ids, attention_mask=mask).logits, expected)
    # padding does not change a row's logits
    alone = again(input_ids=ids[1:, :3], attention_mask=mask[1:, :3]).logits
    assert torch.allclose(alone, expected[1:], atol=1e-6)
    with pytest.raises(XltError, match="trained with labels \\['a', 'b', 'c'\\] and pooling 'mean'"):
        PooledClassifier.from_pretrained(str(tmp_path / "m"), labels, "first", "encoder")


QUICK = ["--task", "nusax", "--target-lang", "jv", "--max-train-examples", "16", "--max-eval-examples", "8",
         "--epochs", "1", "--stage1-epochs", "1", "--stage1-max-train-examples", "16", "--lora-r", "4",
         "--batch-size", "8", "--no-show-progress"]


@pytest.mark.parametrize("family, flags, expected", [("bert", [], "mean"), ("llama", [], "last"),
                                                     ("bert", ["--pooling", "first"], "first"),
                                                     ("mt5", [], "eos")])
def test_the_run_records_the_pooling_it_used(tmp_path, family, flags, expected):
    out = tmp_path / "run"
    assert main(["train", "--model", f"tiny-random/{family}", "--method", "lora", *QUICK, *flags,
                 "--stage1-dir", str(tmp_path / "s1"), "--output-dir", str(out)]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["pooling"] == expected
    stage1 = json.loads((out / "metrics.json").read_text())["stage1_dir"]
    from pathlib import Path

    info = json.loads((Path(stage1) / "stage1.json").read_text())
    assert info["pooling"] == expected and info["settings"]["pooling"] == expected


def test_pooling_is_refused_where_nothing_pools(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "tiny-random/mt5", "--method", "lora", *QUICK, "--pooling", "mean",
                 "--output-dir", str(out)]) == 2
    assert "pooling 'mean' is not available for mT5" in capsys.readouterr().err
    assert not out.exists()
