"""Which token tells a translation model its source and target language, read off its tokenizer.

Four styles, told apart by the tokenizer's vocabulary:

* ``flores`` (NLLB-200): FLORES-200 codes such as ``ace_Latn`` are tokens. The source tag goes on the
  tokenizer's ``src_lang`` (NLLB puts it first), or is prepended to the text where the tokenizer has no
  ``src_lang``; the target tag is forced as the first generated token.
* ``m2m`` (M2M100): tokens ``__en__``; ``src_lang`` takes the bare code, the target is forced.
* ``opus-target`` (multi-target OPUS-MT): the target tag ``>>ind<<`` (ISO 639-3) starts the source text;
  nothing is forced. The source side has no tag: it is checked against the declared ``source_lang``.
* ``none`` (OPUS-MT pair models): no tags at all. The pair the model was trained on is read from
  ``source_lang``/``target_lang`` in its ``tokenizer_config.json`` (OPUS-MT checkpoints record it
  there) and any other pair is refused; a model that declares no pair is refused too. A declared
  code xlt does not know (a group such as ``mul``) cannot be checked: it is accepted with a warning.

A language the tokenizer has no tag for is an error naming the language and the model, never a fallback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from xlt.errors import XltError, warn
from xlt.languages import canonical_code, iso639_3_codes
from xlt.languages.flores import flores_code, language_name

_OPUS_TAG = re.compile(r">>[A-Za-z_]+<<")


@dataclass(frozen=True)
class TagPlan:
    """How one (source, target) request reaches the model."""

    src_lang: str | None  # value for ``tokenizer.src_lang``; None: leave it
    prefix: str  # text put before every source sentence ("" for none)
    forced_bos_token_id: int | None  # the target tag, forced as the first generated token


def tag_style(tokenizer) -> str:
    vocab = tokenizer.get_vocab()
    if "eng_Latn" in vocab:
        return "flores"
    if "__en__" in vocab:
        return "m2m"
    if any(token.startswith(">>") and _OPUS_TAG.fullmatch(token) for token in vocab):
        return "opus-target"
    return "none"


def plan_tags(tokenizer, model: str, source_lang: str, target_lang: str) -> TagPlan:
    """The tags for translating ``source_lang`` -> ``target_lang`` with ``model``'s tokenizer."""
    src, tgt = canonical_code(source_lang), canonical_code(target_lang)
    style = tag_style(tokenizer)
    vocab = tokenizer.get_vocab()

    def need(token: str, code: str) -> int:
        if token not in vocab:
            raise XltError(f"model {model} has no language tag for {language_name(code)}: "
                           f"its tokenizer lacks {token!r}")
        return vocab[token]

    if style in ("flores", "m2m"):
        if style == "flores":
            src_token, tgt_token = _flores(src, model), _flores(tgt, model)
            src_value = src_token
        else:
            src_token, tgt_token, src_value = f"__{src}__", f"__{tgt}__", src
        need(src_token, src)
        forced = need(tgt_token, tgt)
        if hasattr(tokenizer, "src_lang"):
            return TagPlan(src_value, "", forced)
        return TagPlan(None, src_token + " ", forced)
    declared_src, declared_tgt = (tokenizer.init_kwargs.get(k) for k in ("source_lang", "target_lang"))
    _check_declared(model, "source", declared_src, src)
    if style == "opus-target":
        for iso3 in iso639_3_codes(tgt):
            if f">>{iso3}<<" in vocab:
                return TagPlan(None, f">>{iso3}<< ", None)
        need(f">>{iso639_3_codes(tgt)[0]}<<", tgt)
    _check_declared(model, "target", declared_tgt, tgt)
    return TagPlan(None, "", None)


def _flores(code: str, model: str) -> str:
    try:
        return flores_code(code)
    except XltError as err:
        raise XltError(f"model {model} cannot translate {language_name(code)}: {err}") from None


def _check_declared(model: str, side: str, declared, code: str) -> None:
    """A tagless side: the language the model declares for it must be the one asked for."""
    if not declared:
        raise XltError(f"model {model} has no language tags and does not declare its {side} language "
                       f"({side}_lang in tokenizer_config.json), so xlt cannot check {language_name(code)}")
    try:
        declared_code = canonical_code(str(declared))
    except XltError:
        warn(f"model {model} declares {side} language {declared!r}, which xlt cannot check against "
             f"{language_name(code)}")
        return
    if declared_code != code:
        raise XltError(f"model {model} translates {side} language {language_name(declared_code)} only, "
                       f"not {language_name(code)}")
