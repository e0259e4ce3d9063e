"""FLARE-MT: an MT encoder's states of the target text, projected and fused at every layer."""

import json

import pytest
import torch
from helpers import tiny_classifier
from peft import PeftModel

from xlt.cli import main
from xlt.data.examples import Example
from xlt.errors import XltError
from xlt.flare.mt_encoder import load_mt_encoder, load_mt_encoder_input, mt_hidden_size
from xlt.languages.flores import flores_code
from xlt.methods.adapters import AdapterSettings, attach
from xlt.methods.table import get_method
from xlt.models.architectures import architecture_for
from xlt.models.loading import load_tokenizer, resolve_model
from xlt.training.batches import make_batch

MT = "tiny-random/m2m100"
EXAMPLES = [Example(("a small test sentence",), ("the English side",), 0, "e0"),
            Example(("another one, longer than the first",), ("short",), 1, "e1"),
            Example(("three",), ("unused by FLARE-MT",), 2, "e2")]


def _flare_mt(family="bert", fusion="add", target_lang="ace", seed=0):
    path = resolve_model(f"tiny-random/{family}")
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(path)
    model = tiny_classifier(path, tokenizer)
    arch = architecture_for(model.config.model_type)
    adapted = attach(model, get_method("flare-mt"), arch,
                     AdapterSettings(r=4, alpha=8, dropout=0.0, fusion=fusion, mt_encoder=MT,
                                     mt_hidden_size=mt_hidden_size(MT)))
    adapted.mt_input = load_mt_encoder_input(MT, target_lang, "en", 32)
    adapted.flare.attach_mt_encoder(load_mt_encoder(MT))
    for name, p in adapted.model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # so the adapter changes outputs from the start
    return adapted, tokenizer


def _batch(adapted, tokenizer, examples=EXAMPLES):
    return make_batch(tokenizer, examples, "target", 32, source=adapted.source)


def test_the_mt_encoder_reads_the_target_text_with_the_target_languages_tag():
    adapted, tok = _flare_mt(target_lang="ace")
    batch = _batch(adapted, tok)
    mt_tok = adapted.mt_input.tokenizer
    ids = batch.inputs["source_input_ids"]
    tag = mt_tok.convert_tokens_to_ids(flores_code("ace"))
    assert flores_code("ace") == "ace_Latn"
    # NLLB's tokenizer puts the source tag first: the target language's, never English's
    assert ids[:, 0].tolist() == [tag] * 3 and tag != mt_tok.convert_tokens_to_ids("eng_Latn")
    # the MT encoder reads the *target* text, not the English side of the example
    first = ids[0][batch.inputs["source_attention_mask"][0].bool()]
    assert mt_tok.decode(first, skip_special_tokens=True).replace(" ", "") == "asmalltestsentence"
    jv = _batch(_flare_mt(target_lang="jv")[0], tok).inputs["source_input_ids"]
    assert jv[0, 0].item() == mt_tok.convert_tokens_to_ids("jav_Latn")


def test_a_language_the_mt_model_has_no_tag_for_is_refused_by_name():
    with pytest.raises(XltError, match="Madurese"):
        load_mt_encoder_input(MT, "mad", "en", 32)


def test_the_projection_gets_gradients_and_the_mt_encoder_none():
    adapted, tok = _flare_mt()
    adapted.model.train()
    out = adapted.model(**_batch(adapted, tok).inputs)
    out.logits.sum().backward()
    projection = adapted.flare.lora_mt_projection["default"]
    assert projection.weight.grad is not None and projection.weight.grad.abs().sum() > 0
    encoder = adapted.flare._mt_encoder
    assert all(not p.requires_grad and p.grad is None for p in encoder.parameters())
    # not a submodule: its weights are neither trainable parameters nor part of the model's state dict
    assert not any("mt_encoder" in n for n, _ in adapted.model.named_parameters())
    trainable = {n for n, p in adapted.model.named_parameters() if p.requires_grad}
    assert "base_model.lora_mt_projection.default.weight" in trainable
    assert all("lora_" in n for n in trainable)
    # the encoder stays in eval mode (dropout off) while the task model trains
    assert adapted.model.training and not encoder.training


def test_gradient_checkpointing_fuses_the_same_mt_states():
    from xlt.training.loop import enable_checkpointing

    grads = []
    for checkpointing in (False, True):
        adapted, tok = _flare_mt(seed=1)
        if checkpointing:
            enable_checkpointing(adapted.model)
        adapted.model.train()
        adapted.model(**_batch(adapted, tok).inputs).logits.square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in adapted.model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)
    assert grads[0]["base_model.lora_mt_projection.default.weight"].abs().sum() > 0


@pytest.mark.parametrize("family, fusion", [("bert", "cross_attention"), ("llama", "cross_attention"),
                                            ("llama", "add_relu"), ("mt5", "add")])
def test_the_mt_states_change_the_output_and_padding_never_does(family, fusion):
    adapted, tok = _flare_mt(family, fusion=fusion)
    adapted.model.eval()
    batch = _batch(adapted, tok)
    with torch.no_grad():
        fused = adapted.model(**batch.inputs).logits
        zeroed = adapted.model(**{k: v for k, v in batch.inputs.items() if not k.startswith("source_")},
                               zero_source=True).logits
        assert not torch.allclose(fused, zeroed)
        # other token ids at the MT input's padded positions: the same output
        ids, mask = batch.inputs["source_input_ids"].clone(), batch.inputs["source_attention_mask"]
        assert (mask == 0).any()
        ids[mask == 0] = 7
        adapted.flare.source_cache = None
        padded = adapted.model(**{**batch.inputs, "source_input_ids": ids}).logits
    torch.testing.assert_close(padded, fused)


def test_the_mt_encoder_runs_once_per_example_across_epochs(tmp_path):
    common = ["train", "--model", "tiny-random/bert", "--task", "nusax", "--target-lang", "ace", "--method",
              "flare-mt", "--mt-model", MT, "--max-train-examples", "8", "--max-eval-examples", "8", "--epochs", "2",
              "--stage1-epochs", "1", "--stage1-max-train-examples", "8", "--batch-size", "4", "--no-show-progress",
              "--stage1-dir", str(tmp_path / "stage1")]
    assert main([*common, "--output-dir", str(tmp_path / "cached")]) == 0
    cached = json.loads((tmp_path / "cached" / "metrics.json").read_text())
    assert cached["mt_encoder_passes_per_example"] == 1.0 and cached["mt_model"] == MT
    assert "source_passes_per_example" not in cached
    assert main([*common, "--source-cache-gb", "0", "--output-dir", str(tmp_path / "uncached")]) == 0
    uncached = json.loads((tmp_path / "uncached" / "metrics.json").read_text())
    assert uncached["mt_encoder_passes_per_example"] == 2.0
    assert cached["metrics"] == uncached["metrics"]  # the cache changes the cost, not the result
    saved = json.loads((tmp_path / "cached" / "adapter" / "adapter_config.json").read_text())
    assert (saved["peft_type"], saved["mt_encoder"], saved["mt_hidden_size"]) == ("FLARE", MT, 32)
    from xlt.runs.evaluate import evaluate_run

    again = evaluate_run(tmp_path / "cached")  # rebuilt from the run directory: the MT encoder from its name
    assert again["matches_stored"] is True and again["metrics"] == cached["metrics"]


def test_a_flare_mt_adapter_reloads_through_stock_peft_with_its_projection(tmp_path):
    adapted, tok = _flare_mt()
    torch.nn.init.normal_(adapted.flare.lora_mt_projection["default"].weight, std=1.0)
    adapted.model.eval()
    batch = _batch(adapted, tok)
    with torch.no_grad():
        logits = adapted.model(**batch.inputs).logits
    adapted.model.save_pretrained(tmp_path)
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert {"base_model.lora_mt_projection.weight", "base_model.lora_mt_projection.bias"} <= set(saved)
    assert not any("mt_encoder" in k or "embed" in k for k in saved)  # the MT encoder is never saved

    torch.manual_seed(0)
    base = tiny_classifier(resolve_model("tiny-random/bert"), tok)
    base.load_state_dict({k.removeprefix("base_model.model.").replace(".base_layer.", "."): v
                          for k, v in adapted.model.state_dict().items() if "lora_" not in k}, strict=False)
    reloaded = PeftModel.from_pretrained(base, tmp_path).eval()  # loads the MT encoder named in its config
    with torch.no_grad():
        again = reloaded(**batch.inputs).logits
    torch.testing.assert_close(again, logits)


@pytest.mark.parametrize("extra, message", [
    (["--method", "flare-mt"], "flare-mt needs --mt-model MODEL"),
    (["--method", "flare", "--mt-model", MT], "--mt-model is for flare-mt, not 'flare'"),
    (["--method", "flare-mt", "--mt-model", MT, "--task", "panx"], "flare-mt runs sentence classification"),
    (["--method", "flare-mt", "--mt-model", MT, "--source-from", "pivot:id"], "which 'flare-mt' never reads"),
    (["--method", "flare-mt", "--mt-model", MT, "--decoder-classifier", "verbalizer"],
     "flare-mt feeds the MT states to a classification head's batches; drop --decoder-classifier verbalizer"),
])
def test_bad_flare_mt_settings_are_one_line(extra, message, tmp_path, capsys):
    args = ["train", "--model", "tiny-random/bert", "--task", "nusax", "--target-lang", "ace",
            "--output-dir", str(tmp_path / "run"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()
