"""The one place a translator is made from its name: the NusaX lexicon, a CTranslate2 folder or a transformers
checkpoint."""

from __future__ import annotations

from pathlib import Path

from xlt.mt.seq2seq import Seq2SeqTranslator
from xlt.mt.translator import Translator


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
