"""FLORES-200 codes (the language tags of NLLB-200) for every language in :mod:`xlt.languages`.

One table, checked against NLLB-200's own list of 202 codes. Macrolanguages take the variety
FLORES-200 covers: Arabic is Modern Standard Arabic ``arb_Arab`` (there is no ``ara_Arab``),
Swahili is ``swh_Latn``, Azerbaijani is North Azerbaijani ``azj_Latn`` (no ``aze_Latn``),
Chinese is Simplified ``zho_Hans``, Malay is Standard Malay ``zsm_Latn``. Madurese, Ngaju and Toba Batak are not in FLORES-200.
Torch-free.
"""

from __future__ import annotations

from xlt.errors import XltError
from xlt.languages import KNOWN_CODES, canonical_code, english_name

# canonical xlt code -> FLORES-200 code, or None where FLORES-200 has no such language
FLORES200: dict[str, str | None] = {
    "ace": "ace_Latn", "ban": "ban_Latn", "bjn": "bjn_Latn", "bug": "bug_Latn", "en": "eng_Latn",
    "id": "ind_Latn", "jv": "jav_Latn", "mad": None, "min": "min_Latn", "nij": None, "su": "sun_Latn",
    "bbc": None,
    "ar": "arb_Arab", "bg": "bul_Cyrl", "de": "deu_Latn", "el": "ell_Grek", "es": "spa_Latn",
    "fr": "fra_Latn", "hi": "hin_Deva", "ru": "rus_Cyrl", "sw": "swh_Latn", "th": "tha_Thai",
    "tr": "tur_Latn", "ur": "urd_Arab", "vi": "vie_Latn", "zh": "zho_Hans",
    "af": "afr_Latn", "az": "azj_Latn", "cy": "cym_Latn", "is": "isl_Latn", "ja": "jpn_Jpan",
    "ko": "kor_Hang", "tl": "tgl_Latn",
    "ms": "zsm_Latn", "my": "mya_Mymr", "pt": "por_Latn", "sv": "swe_Latn", "yo": "yor_Latn",
    "bn": "ben_Beng", "fi": "fin_Latn", "te": "tel_Telu",
    "cs": "ces_Latn", "he": "heb_Hebr", "uk": "ukr_Cyrl",
}
assert set(FLORES200) == KNOWN_CODES, "every xlt language needs a FLORES-200 entry (None if absent)"


def flores_code(lang: str) -> str:
    """The FLORES-200 code of ``lang`` (any spelling :func:`xlt.languages.canonical_code` accepts)."""
    code = canonical_code(lang)
    flores = FLORES200[code]
    if flores is None:
        raise XltError(f"{language_name(code)} is not a FLORES-200 language, so NLLB-style models have no tag for it")
    return flores


def language_name(lang: str) -> str:
    """'Acehnese (ace)': how messages name a language."""
    code = canonical_code(lang)
    return f"{english_name(code)} ({code})"
