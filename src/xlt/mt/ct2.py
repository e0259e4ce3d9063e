"""The CTranslate2 backend: a converted NLLB/M2M100/OPUS-MT model, several times faster than transformers.

The folder is what ``ct2-transformers-converter --copy_files tokenizer.json tokenizer_config.json ...``
writes: ``model.bin`` and its vocabulary beside the original tokenizer, which tokenizes, carries the
language tags (:mod:`xlt.mt.tags`, the same rules as the transformers backend) and decodes. Needs the
optional extra ``ctranslate2``.
"""

from __future__ import annotations

import importlib.util

from xlt.errors import XltError
from xlt.mt.translator import Translator, files_digest, length_order

EXTRA = 'pip install "xlt[ctranslate2]" (in a checkout: pip install -e ".[ctranslate2]")'


def require_ctranslate2() -> None:
    """The one-line error when the optional package is missing (checked without importing it)."""
    if importlib.util.find_spec("ctranslate2") is None:
        raise XltError(f"CTranslate2 models need the ctranslate2 package: {EXTRA}")


class CTranslate2Translator(Translator):
    def __init__(self, folder: str, *, batch_size: int = 16, num_beams: int = 1, max_new_tokens: int = 128,
                 device: str | None = None, dtype: str = "default"):
        require_ctranslate2()
        import ctranslate2

        from xlt.models.loading import load_tokenizer

        for name, value in (("batch_size", batch_size), ("num_beams", num_beams), ("max_new_tokens", max_new_tokens)):
            if value < 1:
                raise XltError(f"{name} must be at least 1, got {value}")
        self.name = folder
        self.tokenizer = load_tokenizer(folder)
        self.batch_size, self.num_beams, self.max_new_tokens, self.dtype = batch_size, num_beams, max_new_tokens, dtype
        device = device or ("cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu")
        self.translator = ctranslate2.Translator(folder, device=device, compute_type=dtype)
        self._files = files_digest(folder)

    @property
    def fingerprint(self) -> dict:
        return {"backend": "ctranslate2", "model": self.name, "files": self._files, "num_beams": self.num_beams,
                "max_new_tokens": self.max_new_tokens, "compute_type": self.dtype}

    def check_pair(self, source_lang: str, target_lang: str) -> None:
        from xlt.mt.tags import plan_tags

        plan_tags(self.tokenizer, self.name, source_lang, target_lang)

    def translate(self, texts: list[str], source_lang: str, target_lang: str) -> list[str]:
        from tqdm.auto import tqdm

        from xlt.mt.tags import plan_tags

        tok = self.tokenizer
        plan = plan_tags(tok, self.name, source_lang, target_lang)
        if plan.src_lang is not None:
            tok.src_lang = plan.src_lang
        sources = [tok.convert_ids_to_tokens(ids) for ids in tok([plan.prefix + t for t in texts])["input_ids"]]
        prefix = None if plan.forced_bos_token_id is None else [tok.convert_ids_to_tokens(plan.forced_bos_token_id)]
        order = length_order([len(s) for s in sources])
        results: list[str | None] = [None] * len(texts)
        starts = range(0, len(order), self.batch_size)
        for start in tqdm(starts, desc="translate", unit="batch", disable=not self.show_progress, leave=False):
            rows = order[start:start + self.batch_size]
            out = self.translator.translate_batch(
                [sources[i] for i in rows], target_prefix=None if prefix is None else [prefix] * len(rows),
                beam_size=self.num_beams, max_decoding_length=self.max_new_tokens, sampling_topk=1)
            for i, result in zip(rows, out):
                ids = tok.convert_tokens_to_ids(result.hypotheses[0])
                results[i] = tok.decode(ids, skip_special_tokens=True).strip()
        return results  # type: ignore[return-value]
