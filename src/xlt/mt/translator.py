"""The translator interface and its transformers backend (NLLB, M2M100 and OPUS-MT/Marian checkpoints).

A translator turns sentences of one language into another and says, in ``fingerprint``, everything
that decides its output (model files and decoding settings), so that :mod:`xlt.mt.cache` can reuse a
translation exactly when the same translator would produce it again. Decoding is deterministic
(greedy, or beam search with ``num_beams``; never sampling, whatever the checkpoint's defaults say).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path

from xlt.errors import XltError

SEQ2SEQ_TYPES = ("m2m_100", "marian", "nllb-moe")  # model types whose language tags xlt knows (mt.tags)


class Translator(ABC):
    """``translate(texts, source_lang, target_lang)`` in input order; ``fingerprint`` identifies the output."""

    show_progress: bool = False

    @property
    @abstractmethod
    def fingerprint(self) -> dict: ...

    def check_pair(self, source_lang: str, target_lang: str) -> None:
        """Refuse (``XltError``) a pair this translator cannot do, before any weights load."""

    @abstractmethod
    def translate(self, texts: list[str], source_lang: str, target_lang: str) -> list[str]: ...


def files_digest(folder: str | Path) -> str:
    """A digest of a model folder's file names, sizes and modification times (cheap for any size)."""
    h = hashlib.sha256()
    folder = Path(folder)
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        stat = path.stat()
        h.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def length_order(lengths: list[int]) -> list[int]:
    """Indices longest first (ties in input order), so each batch pads little."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


class Seq2SeqTranslator(Translator):
    """A transformers encoder-decoder: the tokenizer loads at once (tags are checked on it), the
    weights on the first translation."""

    def __init__(self, model: str, *, batch_size: int = 16, num_beams: int = 1, max_new_tokens: int = 128,
                 device: str | None = None, dtype: str = "float32"):
        from transformers import AutoConfig

        from xlt.models.loading import load_tokenizer, resolve_model

        for name, value in (("batch_size", batch_size), ("num_beams", num_beams), ("max_new_tokens", max_new_tokens)):
            if value < 1:
                raise XltError(f"{name} must be at least 1, got {value}")
        self.name, self.path = model, resolve_model(model)
        try:
            config = AutoConfig.from_pretrained(self.path, trust_remote_code=False)
        except (OSError, ValueError) as err:
            raise XltError(f"cannot load model {model!r}: {str(err).splitlines()[0]}") from None
        if config.model_type not in SEQ2SEQ_TYPES:
            raise XltError(f"model {model} is a {config.model_type!r} model; xlt translates with "
                           f"{', '.join(SEQ2SEQ_TYPES)} checkpoints (NLLB, M2M100, OPUS-MT)")
        self.tokenizer = load_tokenizer(self.path)
        self.batch_size, self.num_beams, self.max_new_tokens = batch_size, num_beams, max_new_tokens
        self.device, self.dtype = device, dtype
        local = Path(self.path).is_dir()
        self._files = files_digest(self.path) if local else getattr(config, "_commit_hash", None) or "unknown"
        self._model = None

    @property
    def fingerprint(self) -> dict:
        return {"backend": "transformers", "model": self.name, "files": self._files, "num_beams": self.num_beams,
                "max_new_tokens": self.max_new_tokens, "dtype": self.dtype}

    @property
    def model(self):
        if self._model is None:
            import torch
            from transformers import AutoModelForSeq2SeqLM

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self._model = AutoModelForSeq2SeqLM.from_pretrained(
                self.path, dtype=getattr(torch, self.dtype), trust_remote_code=False).to(device).eval()
        return self._model

    def check_pair(self, source_lang: str, target_lang: str) -> None:
        from xlt.mt.tags import plan_tags

        plan_tags(self.tokenizer, self.name, source_lang, target_lang)

    def translate(self, texts: list[str], source_lang: str, target_lang: str) -> list[str]:
        import torch
        from tqdm.auto import tqdm

        from xlt.mt.tags import plan_tags

        plan = plan_tags(self.tokenizer, self.name, source_lang, target_lang)
        if plan.src_lang is not None:
            self.tokenizer.src_lang = plan.src_lang
        sources = [plan.prefix + text for text in texts]
        limit = self.tokenizer.model_max_length if self.tokenizer.model_max_length < 1e6 else None
        lengths = [len(ids) for ids in self.tokenizer(sources, truncation=limit is not None,
                                                      max_length=limit)["input_ids"]]
        order = length_order(lengths)
        results: list[str | None] = [None] * len(texts)
        generate = {"num_beams": self.num_beams, "do_sample": False, "max_new_tokens": self.max_new_tokens}
        if plan.forced_bos_token_id is not None:
            generate["forced_bos_token_id"] = plan.forced_bos_token_id
        starts = range(0, len(order), self.batch_size)
        for start in tqdm(starts, desc="translate", unit="batch", disable=not self.show_progress, leave=False):
            rows = order[start:start + self.batch_size]
            batch = self.tokenizer([sources[i] for i in rows], padding=True, truncation=limit is not None,
                                   max_length=limit, return_tensors="pt").to(self.model.device)
            with torch.inference_mode():
                out = self.model.generate(**batch, **generate)
            for i, text in zip(rows, self.tokenizer.batch_decode(out, skip_special_tokens=True)):
                results[i] = text.strip()
        return results  # type: ignore[return-value]


def is_ctranslate2_folder(name: str) -> bool:
    """A CTranslate2 model folder (``model.bin`` beside its vocabulary)."""
    path = Path(name)
    return (path / "model.bin").is_file() and any(path.glob("*vocabulary*"))


def load_translator(model: str, *, data_dir: str | None = None, **settings) -> Translator:
    """``lexicon`` (NusaX word lists), a CTranslate2 folder, or a transformers checkpoint."""
    if model == "lexicon":
        from xlt.mt.lexicon import LexiconTranslator

        return LexiconTranslator(data_dir)
    if is_ctranslate2_folder(model):
        from xlt.mt.ct2 import CTranslate2Translator

        return CTranslate2Translator(model, **settings)
    return Seq2SeqTranslator(model, **settings)


def settings_json(translator: Translator) -> str:
    """The fingerprint as canonical JSON (the part of every cache key that names the translator)."""
    return json.dumps(translator.fingerprint, sort_keys=True, ensure_ascii=False)
