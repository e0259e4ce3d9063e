"""Tiny random models built from configs (hidden 32, 2 layers) with a matching tiny tokenizer.

They make every code path testable offline in seconds. The tokenizer is a character-level
WordPiece over printable ASCII plus common Latin letters, so real data runs through it.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from xlt.errors import XltError
from xlt.models.cache import build_once, cache_root

_CHARS = sorted(set(string.ascii_letters + string.digits + string.punctuation + "àáâäçèéêëìíîïñòóôöùúûüß"))
_SPECIALS = {
    "bert": {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
    "xlm-roberta": {"pad": "<pad>", "unk": "<unk>", "cls": "<s>", "sep": "</s>", "mask": "<mask>"},
}


def _tiny_config(family: str, vocab_size: int, pad_id: int):
    from transformers import BertConfig, XLMRobertaConfig

    common = dict(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=512, pad_token_id=pad_id,
    )
    if family == "bert":
        return BertConfig(**common)
    return XLMRobertaConfig(**common, bos_token_id=2, eos_token_id=3)


TINY_FAMILIES = tuple(_SPECIALS)


def _build_tokenizer(family: str) -> Tokenizer:
    sp = _SPECIALS[family]
    vocab = {tok: i for i, tok in enumerate([sp["pad"], sp["unk"], sp["cls"], sp["sep"], sp["mask"]])}
    for ch in _CHARS:
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault("##" + ch, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab, unk_token=sp["unk"], max_input_chars_per_word=100))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    cls, sep = sp["cls"], sp["sep"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
    )
    return tok


def _build(family: str, folder: Path) -> None:
    from transformers import AutoModel, PreTrainedTokenizerFast

    sp = _SPECIALS[family]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_build_tokenizer(family), pad_token=sp["pad"], unk_token=sp["unk"],
        cls_token=sp["cls"], sep_token=sp["sep"], mask_token=sp["mask"], model_max_length=512,
    )
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = _tiny_config(family, len(tokenizer), tokenizer.pad_token_id)
    AutoModel.from_config(config).save_pretrained(folder)
    (folder / "xlt_tiny.json").write_text(json.dumps({"family": family}))


def ensure_tiny(family: str, cache_dir: str | Path | None = None) -> Path:
    if family not in TINY_FAMILIES:
        raise XltError(f"unknown tiny-random family {family!r}; choose one of: {', '.join(TINY_FAMILIES)}")
    root = Path(cache_dir) if cache_dir else cache_root() / "models"
    return build_once(root / f"tiny-random-{family}", lambda folder: _build(family, folder))
