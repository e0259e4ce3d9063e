"""The transformers backend of :class:`~xlt.mt.translator.Translator`: NLLB, M2M100 and OPUS-MT/Marian checkpoints."""

from __future__ import annotations

from pathlib import Path

from xlt.errors import XltError
from xlt.mt.translator import SEQ2SEQ_TYPES, Translator, files_digest, length_order


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
