"""Tiny random models built from configs (hidden 32, 2 layers) with a matching tiny tokenizer.

They make every code path testable offline in seconds: one row of ``TINY`` per family. The
tokenizer is a character-level WordPiece over printable ASCII plus common Latin letters, so real
data runs through it and generated ids decode back to text. The translation rows differ:
``m2m100`` uses NLLB's own tokenizer class (character-level, with FLORES-200 tags) so that the
language-tag path of real NLLB checkpoints runs, and ``marian`` records its language pair in
``tokenizer_config.json`` as OPUS-MT checkpoints do.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from xlt.errors import XltError
from xlt.models.cache import build_once, cache_root

_CHARS = sorted(set(string.ascii_letters + string.digits + string.punctuation + "àáâäçèéêëìíîïñòóôöùúûüß"))
_SIZE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
_DECODER_SIZE = dict(_SIZE, num_key_value_heads=2, max_position_embeddings=512)


@dataclass(frozen=True)
class TinySpec:
    specials: tuple[str, ...]  # in id order; names below index into it
    pad: str
    unk: str
    single: str  # post-processor templates ($A, $B)
    pair: str
    config: Callable[[dict], object]  # token ids -> config
    auto_class: str  # which transformers Auto class saves the weights
    padding_side: str = "right"
    extra: dict | None = None  # other special tokens for the tokenizer (bos, eos, cls, sep, mask)
    settings: dict | None = None  # other tokenizer settings saved in tokenizer_config.json (Marian's language pair)
    tokenizer: Callable[[], object] | None = None  # a model-specific tokenizer instead of the generic one


def _bert(ids):
    from transformers import BertConfig

    return BertConfig(vocab_size=ids["vocab"], pad_token_id=ids["[PAD]"], max_position_embeddings=512, **_SIZE)


def _xlmr(ids):
    from transformers import XLMRobertaConfig

    return XLMRobertaConfig(vocab_size=ids["vocab"], pad_token_id=ids["<pad>"], bos_token_id=ids["<s>"],
                            eos_token_id=ids["</s>"], max_position_embeddings=512, **_SIZE)


def _decoder(config_class: str, **extra):
    def build(ids):
        import transformers

        cls = getattr(transformers, config_class)
        return cls(vocab_size=ids["vocab"], pad_token_id=ids["<pad>"], bos_token_id=ids["<s>"],
                   eos_token_id=ids["</s>"], tie_word_embeddings=True, **_DECODER_SIZE, **extra)

    return build


def _mt5(ids):
    from transformers import MT5Config

    return MT5Config(vocab_size=ids["vocab"], d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                     num_heads=4, pad_token_id=ids["<pad>"], eos_token_id=ids["</s>"],
                     decoder_start_token_id=ids["<pad>"], tie_word_embeddings=False)


def _m2m100(ids):
    from transformers import M2M100Config

    return M2M100Config(vocab_size=ids["vocab"], d_model=32, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_position_embeddings=512, pad_token_id=ids["<pad>"], bos_token_id=ids["<s>"],
                        eos_token_id=ids["</s>"], decoder_start_token_id=ids["</s>"],  # as NLLB-200
                        init_std=0.5)  # outputs that depend on the input


def _marian(ids):
    from transformers import MarianConfig

    return MarianConfig(vocab_size=ids["vocab"], d_model=32, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_position_embeddings=512, pad_token_id=ids["<pad>"], eos_token_id=ids["</s>"],
                        decoder_start_token_id=ids["<pad>"], forced_eos_token_id=ids["</s>"],  # as OPUS-MT
                        init_std=0.5)


def _nllb_tokenizer():
    """NLLB's own tokenizer class (``src_lang`` puts the tag first), character-level, with the FLORES-200
    codes of xlt's languages as its language tags."""
    from transformers import NllbTokenizer

    from xlt.languages.flores import FLORES200

    vocab = {tok: i for i, tok in enumerate(("<s>", "<pad>", "</s>", "<unk>"))}
    for ch in ("\u2581", *_CHARS):  # U+2581: SentencePiece's word-start mark, which NLLB's pre-tokenizer adds
        vocab.setdefault(ch, len(vocab))
    codes = sorted({code for code in FLORES200.values() if code})
    return NllbTokenizer(vocab=vocab, merges=[], extra_special_tokens=codes, src_lang="eng_Latn",
                         model_max_length=512)


_ENCODER_XLMR = ("<pad>", "<unk>", "<s>", "</s>", "<mask>")
_DECODER_SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
_DECODER = dict(specials=_DECODER_SPECIALS, pad="<pad>", unk="<unk>", single="<s> $A", pair="<s> $A </s> $B:1",
                auto_class="AutoModelForCausalLM", padding_side="left", extra={"bos_token": "<s>", "eos_token": "</s>"})

TINY: dict[str, TinySpec] = {
    "bert": TinySpec(("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"), "[PAD]", "[UNK]", "[CLS] $A [SEP]",
                     "[CLS] $A [SEP] $B:1 [SEP]:1", _bert, "AutoModel",
                     extra={"cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}),
    "xlm-roberta": TinySpec(_ENCODER_XLMR, "<pad>", "<unk>", "<s> $A </s>", "<s> $A </s> </s> $B:1 </s>:1",
                            _xlmr, "AutoModel",
                            extra={"cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>",
                                   "bos_token": "<s>", "eos_token": "</s>"}),
    "llama": TinySpec(config=_decoder("LlamaConfig"), **_DECODER),
    "qwen2": TinySpec(config=_decoder("Qwen2Config"), **_DECODER),
    "gemma2": TinySpec(config=_decoder("Gemma2Config", head_dim=8, sliding_window=16), **_DECODER),
    # Gemma 3's text stack: a sliding-window layer (window 4, shorter than the test sentences) and a global one
    "gemma3_text": TinySpec(config=_decoder("Gemma3TextConfig", head_dim=8, sliding_window=4,
                                            layer_types=["sliding_attention", "full_attention"]), **_DECODER),
    "mt5": TinySpec(("<pad>", "</s>", "<unk>"), "<pad>", "<unk>", "$A </s>", "$A </s> $B:1 </s>:1", _mt5,
                    "AutoModelForSeq2SeqLM", extra={"eos_token": "</s>"}),
    # translation models: NLLB-200's architecture and tokenizer class; an OPUS-MT-style pair model (no tags)
    "m2m100": TinySpec(("<s>", "<pad>", "</s>", "<unk>"), "<pad>", "<unk>", "", "", _m2m100,  # NLLB's templates
                       "AutoModelForSeq2SeqLM", tokenizer=_nllb_tokenizer),
    "marian": TinySpec(("</s>", "<unk>", "<pad>"), "<pad>", "<unk>", "$A </s>", "$A </s> $B:1 </s>:1", _marian,
                       "AutoModelForSeq2SeqLM", extra={"eos_token": "</s>"},
                       settings={"source_lang": "id", "target_lang": "en"}),
}
TINY_MT_FAMILIES = ("m2m100", "marian")  # translation models only: no architecture row, xlt does not adapt them
TINY_FAMILIES = tuple(f for f in TINY if f not in TINY_MT_FAMILIES)  # the families xlt trains adapters on


def _build_tokenizer(spec: TinySpec) -> Tokenizer:
    vocab = {tok: i for i, tok in enumerate(spec.specials)}
    for ch in _CHARS:
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault("##" + ch, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab, unk_token=spec.unk, max_input_chars_per_word=100))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    used = {t for t in spec.specials if t in spec.single + spec.pair}
    tok.post_processor = processors.TemplateProcessing(
        single=spec.single, pair=spec.pair, special_tokens=[(t, vocab[t]) for t in sorted(used)]
    )
    return tok


def _build(family: str, folder: Path) -> None:
    import transformers
    from transformers import PreTrainedTokenizerFast

    spec = TINY[family]
    if spec.tokenizer is not None:
        tokenizer = spec.tokenizer()
        tokenizer.save_pretrained(folder)
    else:
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=_build_tokenizer(spec), pad_token=spec.pad, unk_token=spec.unk,
            model_max_length=512, padding_side=spec.padding_side, **(spec.extra or {}), **(spec.settings or {}),
        )
        tokenizer.save_pretrained(folder)
        # name the generic class: model-specific classes (e.g. Qwen2Tokenizer) would rebuild their own pipeline
        config_path = folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text())
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        config_path.write_text(json.dumps(config, indent=2))
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in spec.specials}
    ids["vocab"] = len(tokenizer)
    torch.manual_seed(0)
    model = getattr(transformers, spec.auto_class).from_config(spec.config(ids))
    model.save_pretrained(folder)
    (folder / "xlt_tiny.json").write_text(json.dumps({"family": family}))


def ensure_tiny(family: str, cache_dir: str | Path | None = None) -> Path:
    if family not in TINY:
        raise XltError(f"unknown tiny-random family {family!r}; choose one of: {', '.join(TINY)}")
    root = Path(cache_dir) if cache_dir else cache_root() / "models"
    return build_once(root / f"tiny-random-{family}", lambda folder: _build(family, folder))
