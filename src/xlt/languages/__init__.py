"""Language codes: one canonical code per language, many accepted spellings.

The canonical code is the ISO 639-1 code where the language has one, else the ISO 639-3 code
(so ``jv`` for Javanese but ``ace`` for Acehnese). Codes, 639-3 codes, names and MASSIVE locales
(``jv-ID``) are all accepted, case-insensitively; ``-`` and spaces count as ``_``
(``Toba Batak`` -> ``bbc``).

=========  ==========  ======================  =========================================
canonical  ISO 639-3   other accepted names    folder/file name
=========  ==========  ======================  =========================================
ace        ace         acehnese, achinese      nusax: acehnese
ban        ban         balinese                nusax: balinese
bjn        bjn         banjarese, banjar       nusax: banjarese
bug        bug         buginese                nusax: buginese
en         eng         english                 nusax: english, xnli: en, massive: en-US, panx: en, uner: English
id         ind         indonesian              nusax: indonesian, massive: id-ID, panx: id
jv         jav         javanese                nusax: javanese, massive: jv-ID, panx: jv
mad        mad         madurese                nusax: madurese
min        min         minangkabau             nusax: minangkabau
nij        nij         ngaju                   nusax: ngaju
su         sun         sundanese               nusax: sundanese
bbc        bbc         toba_batak              nusax: toba_batak
ar         ara         arabic                  xnli: ar, massive: ar-SA
bg         bul         bulgarian               xnli: bg
de         deu         german                  xnli: de, massive: de-DE, panx: de, uner: German
el         ell         greek                   xnli: el, massive: el-GR
es         spa         spanish                 xnli: es, massive: es-ES
fr         fra         french                  xnli: fr, massive: fr-FR
hi         hin         hindi                   xnli: hi, massive: hi-IN
ru         rus         russian                 xnli: ru, massive: ru-RU, uner: Russian
sw         swa, swh    swahili                 xnli: sw, massive: sw-KE, panx: sw
th         tha         thai                    xnli: th, massive: th-TH
tr         tur         turkish                 xnli: tr, massive: tr-TR
ur         urd         urdu                    xnli: ur, massive: ur-PK
vi         vie         vietnamese              xnli: vi, massive: vi-VN
zh         zho         chinese                 xnli: zh, massive: zh-CN, uner: Chinese
af         afr         afrikaans               massive: af-ZA
az         aze, azj    azerbaijani             massive: az-AZ
cy         cym         welsh                   massive: cy-GB
is         isl         icelandic               massive: is-IS
ja         jpn         japanese                massive: ja-JP
ko         kor         korean                  massive: ko-KR
tl         tgl         tagalog, filipino       massive: tl-PH, panx: tl
ms         msa, zsm    malay                   panx: ms
my         mya         burmese                 panx: my
yo         yor         yoruba                  panx: yo
pt         por         portuguese              uner: Portuguese
sv         swe         swedish                 uner: Swedish
bn         ben         bengali, bangla         tydiqa: bn
fi         fin         finnish                 tydiqa: fi
te         tel         telugu                  tydiqa: te
cs         ces         czech                   wmt23: cs
he         heb         hebrew                  wmt23: he
uk         ukr         ukrainian               wmt23: uk
=========  ==========  ======================  =========================================

Task ``massive-intent`` uses the same locale files as ``massive``; ``uner`` names the ``<Name>-PUD``
folder (its files are ``<code>_pud-ud-test.iob2``). ``mlqa`` (ar de en es hi vi zh) and ``tydiqa``
(ar bn en fi id ko ru sw te) name their files by the canonical code, as does ``wmt23`` (en cs he ja ru uk zh).
"""

from __future__ import annotations

from xlt.errors import XltError

# canonical code -> (ISO 639-3 codes, names); the first 639-3 code is the one hubs use.
_LANGUAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ace": (("ace",), ("acehnese", "achinese")),
    "ban": (("ban",), ("balinese",)),
    "bjn": (("bjn",), ("banjarese", "banjar")),
    "bug": (("bug",), ("buginese",)),
    "en": (("eng",), ("english",)),
    "id": (("ind",), ("indonesian",)),
    "jv": (("jav",), ("javanese",)),
    "mad": (("mad",), ("madurese",)),
    "min": (("min",), ("minangkabau",)),
    "nij": (("nij",), ("ngaju",)),
    "su": (("sun",), ("sundanese",)),
    "bbc": (("bbc",), ("toba_batak",)),
    "ar": (("ara",), ("arabic",)),
    "bg": (("bul",), ("bulgarian",)),
    "de": (("deu",), ("german",)),
    "el": (("ell",), ("greek",)),
    "es": (("spa",), ("spanish",)),
    "fr": (("fra",), ("french",)),
    "hi": (("hin",), ("hindi",)),
    "ru": (("rus",), ("russian",)),
    "sw": (("swa", "swh"), ("swahili",)),
    "th": (("tha",), ("thai",)),
    "tr": (("tur",), ("turkish",)),
    "ur": (("urd",), ("urdu",)),
    "vi": (("vie",), ("vietnamese",)),
    "zh": (("zho",), ("chinese",)),
    "af": (("afr",), ("afrikaans",)),
    "az": (("aze", "azj"), ("azerbaijani",)),
    "cy": (("cym",), ("welsh",)),
    "is": (("isl",), ("icelandic",)),
    "ja": (("jpn",), ("japanese",)),
    "ko": (("kor",), ("korean",)),
    "tl": (("tgl",), ("tagalog", "filipino")),
    "ms": (("msa", "zsm"), ("malay",)),
    "my": (("mya",), ("burmese",)),
    "yo": (("yor",), ("yoruba",)),
    "pt": (("por",), ("portuguese",)),
    "sv": (("swe",), ("swedish",)),
    "bn": (("ben",), ("bengali", "bangla")),
    "fi": (("fin",), ("finnish",)),
    "te": (("tel",), ("telugu",)),
    "cs": (("ces",), ("czech",)),
    "he": (("heb",), ("hebrew",)),
    "uk": (("ukr",), ("ukrainian",)),
}

# canonical code -> MASSIVE locale (its file name); locales are accepted as language spellings too.
_MASSIVE: dict[str, str] = {
    "af": "af-ZA", "ar": "ar-SA", "az": "az-AZ", "cy": "cy-GB", "de": "de-DE", "el": "el-GR",
    "en": "en-US", "es": "es-ES", "fr": "fr-FR", "hi": "hi-IN", "id": "id-ID", "is": "is-IS",
    "ja": "ja-JP", "jv": "jv-ID", "ko": "ko-KR", "ru": "ru-RU", "sw": "sw-KE", "th": "th-TH",
    "tl": "tl-PH", "tr": "tr-TR", "ur": "ur-PK", "vi": "vi-VN", "zh": "zh-CN",
}

_ALIASES: dict[str, str] = {
    alias: code
    for code, (iso3, names) in _LANGUAGES.items()
    for alias in (code, *iso3, *names)
}
_ALIASES.update({locale.lower().replace("-", "_"): code for code, locale in _MASSIVE.items()})

_NUSAX = ("ace", "ban", "bjn", "bug", "en", "id", "jv", "mad", "min", "nij", "su", "bbc")
_XNLI = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
_PANX = ("de", "en", "id", "jv", "ms", "my", "sw", "tl", "yo")
_UNER = ("en", "de", "pt", "ru", "sv", "zh")  # the PUD treebanks: the same 1,000 sentences in each
_MLQA = ("ar", "de", "en", "es", "hi", "vi", "zh")
_TYDIQA = ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te")
_WMT23 = ("en", "cs", "he", "ja", "ru", "uk", "zh")  # English and the references of its 7-way parallel pairs

# task -> canonical code -> the name its folders/files use
TASK_LANGUAGES: dict[str, dict[str, str]] = {
    "nusax": {code: _LANGUAGES[code][1][0] for code in _NUSAX},
    "xnli": {code: code for code in _XNLI},
    "massive": _MASSIVE,
    "massive-intent": _MASSIVE,
    "panx": {code: code for code in _PANX},
    "uner": {code: _LANGUAGES[code][1][0].capitalize() for code in _UNER},
    "mlqa": {code: code for code in _MLQA},
    "tydiqa": {code: code for code in _TYDIQA},
    "wmt23": {code: code for code in _WMT23},
}


def _normalize(lang: str) -> str:
    return lang.strip().lower().replace("-", "_").replace(" ", "_")


def canonical_code(lang: str) -> str:
    """The canonical code of ``lang`` (any code or name in the table above)."""
    code = _ALIASES.get(_normalize(str(lang)))
    if code is None:
        raise XltError(
            f"unknown language {lang!r}; known: {', '.join(sorted(_LANGUAGES))} "
            "(ISO 639-1/639-3 codes or names, see xlt.languages)"
        )
    return code


def iso639_3(lang: str) -> str:
    """The ISO 639-3 code (e.g. for Hub configs named ``jav``, ``sun``)."""
    return _LANGUAGES[canonical_code(lang)][0][0]


def dataset_name(task: str, lang: str) -> str:
    """The name the task's folders/files use for ``lang`` ('javanese' for nusax, 'sw' for xnli,
    'sw-KE' for massive)."""
    names = TASK_LANGUAGES.get(task)
    if names is None:
        raise XltError(f"no language table for task {task!r}; known: {', '.join(TASK_LANGUAGES)}")
    supported = ", ".join(f"{c} ({n})" if c != n else c for c, n in names.items())
    try:
        code = canonical_code(lang)
    except XltError:
        raise XltError(f"unknown language {lang!r} for task {task}; supported: {supported}") from None
    if code not in names:
        raise XltError(f"task {task} has no language {lang!r}; supported: {supported}")
    return names[code]


def english_name(lang: str) -> str:
    """'Acehnese', 'Toba Batak': how prompts and messages name a language (any spelling :func:`canonical_code`
    accepts)."""
    return _LANGUAGES[canonical_code(lang)][1][0].replace("_", " ").title()


def iso639_3_codes(lang: str) -> tuple[str, ...]:
    """The ISO 639-3 codes of ``lang``, the usual one first (OPUS-MT's ``>>xxx<<`` tags)."""
    return _LANGUAGES[canonical_code(lang)][0]


KNOWN_CODES = frozenset(_LANGUAGES)  # the canonical code of every language xlt knows
