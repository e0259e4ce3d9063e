"""Language codes: one canonical code per language, many accepted spellings.

The canonical code is the ISO 639-1 code where the language has one, else the ISO 639-3 code
(so ``jv`` for Javanese but ``ace`` for Acehnese). Codes, 639-3 codes and names are all accepted,
case-insensitively; ``-`` and spaces count as ``_`` (``Toba Batak`` -> ``bbc``).

=========  ==========  ======================  ======================
canonical  ISO 639-3   other accepted names    folder/file name
=========  ==========  ======================  ======================
ace        ace         acehnese, achinese      nusax: acehnese
ban        ban         balinese                nusax: balinese
bjn        bjn         banjarese, banjar       nusax: banjarese
bug        bug         buginese                nusax: buginese
en         eng         english                 nusax: english, xnli: en
id         ind         indonesian              nusax: indonesian
jv         jav         javanese                nusax: javanese
mad        mad         madurese                nusax: madurese
min        min         minangkabau             nusax: minangkabau
nij        nij         ngaju                   nusax: ngaju
su         sun         sundanese               nusax: sundanese
bbc        bbc         toba_batak              nusax: toba_batak
ar         ara         arabic                  xnli: ar
bg         bul         bulgarian               xnli: bg
de         deu         german                  xnli: de
el         ell         greek                   xnli: el
es         spa         spanish                 xnli: es
fr         fra         french                  xnli: fr
hi         hin         hindi                   xnli: hi
ru         rus         russian                 xnli: ru
sw         swa, swh    swahili                 xnli: sw
th         tha         thai                    xnli: th
tr         tur         turkish                 xnli: tr
ur         urd         urdu                    xnli: ur
vi         vie         vietnamese              xnli: vi
zh         zho         chinese                 xnli: zh
=========  ==========  ======================  ======================
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
}

_ALIASES: dict[str, str] = {
    alias: code
    for code, (iso3, names) in _LANGUAGES.items()
    for alias in (code, *iso3, *names)
}

_NUSAX = ("ace", "ban", "bjn", "bug", "en", "id", "jv", "mad", "min", "nij", "su", "bbc")
_XNLI = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")

# task -> canonical code -> the name its folders/files use
TASK_LANGUAGES: dict[str, dict[str, str]] = {
    "nusax": {code: _LANGUAGES[code][1][0] for code in _NUSAX},
    "xnli": {code: code for code in _XNLI},
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
    """The name the task's folders/files use for ``lang`` ('javanese' for nusax, 'sw' for xnli)."""
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
