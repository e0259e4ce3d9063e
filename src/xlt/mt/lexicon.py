"""A word-by-word translator from the NusaX bilingual lexicons: local language -> Indonesian -> English.

A deliberately weak stand-in for a real MT model (a baseline, and a translator that needs no
weights): each word is looked up case-insensitively, the first entry wins where a word has several,
words the lexicon lacks stay as they are (many local words are Indonesian ones), punctuation and
spacing are kept, and a capitalized word gives a capitalized translation. Entries whose local side
has several words are never matched (lookup is per word). Torch-free.
"""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

from xlt.errors import XltError
from xlt.languages import TASK_LANGUAGES, canonical_code
from xlt.languages.flores import language_name
from xlt.mt.translator import Translator

_WORD = re.compile(r"\w+")
LOCAL = tuple(code for code in TASK_LANGUAGES["nusax"] if code not in ("en", "id"))


def lexicon_folder(data_dir: str | Path | None = None) -> Path:
    from xlt.data.paths import resolve_data_dir

    return resolve_data_dir(data_dir) / "nusax" / "lexicon"


def read_lexicon(path: Path, source_column: str, target_column: str) -> dict[str, str]:
    """word -> its first translation, from a NusaX lexicon file (``,indonesian,<language>``)."""
    if not path.is_file():
        raise XltError(f"lexicon file {path} is missing")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {source_column, target_column} <= set(reader.fieldnames or ()):
            raise XltError(f"{path} has columns {reader.fieldnames}, expected {source_column} and {target_column}")
        table: dict[str, str] = {}
        for row in reader:
            word, translation = (row[source_column] or "").strip().lower(), (row[target_column] or "").strip()
            if word and translation and " " not in word:
                table.setdefault(word, translation)
    return table


def translate_words(text: str, table: dict[str, str]) -> str:
    """Each word of ``text`` through ``table``; everything else unchanged."""

    def one(match: re.Match) -> str:
        word = match.group()
        translation = table.get(word.lower())
        if translation is None:
            return word
        return translation[0].upper() + translation[1:] if word[0].isupper() else translation

    return _WORD.sub(one, text)


class LexiconTranslator(Translator):
    """Local NusaX language or Indonesian -> Indonesian or English, word by word."""

    def __init__(self, data_dir: str | Path | None = None):
        self.folder = lexicon_folder(data_dir)
        if not self.folder.is_dir():
            raise XltError(f"no NusaX lexicons in {self.folder}")
        self._tables: dict[tuple[str, str], dict[str, str]] = {}

    def _files(self, src: str, tgt: str) -> list[Path]:
        names = TASK_LANGUAGES["nusax"]
        files = []
        if src != "id":
            files.append(self.folder / f"{names[src]}.csv")
        if tgt == "en":
            files.append(self.folder / "english.csv")
        return files

    @property
    def fingerprint(self) -> dict:
        h = hashlib.sha256()
        for path in sorted(self.folder.glob("*.csv")):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
        return {"backend": "lexicon", "lexicons": h.hexdigest()[:16]}

    def check_pair(self, source_lang: str, target_lang: str) -> None:
        src, tgt = canonical_code(source_lang), canonical_code(target_lang)
        sources = ", ".join(language_name(c) for c in (*LOCAL, "id"))
        if src not in (*LOCAL, "id"):
            raise XltError(f"the lexicon translator has no word list for {language_name(src)}; "
                           f"it translates from {sources}")
        if tgt not in ("id", "en") or src == tgt:
            raise XltError(f"the lexicon translator cannot translate {language_name(src)} into "
                           f"{language_name(tgt)}; it translates into Indonesian (id) or English (en)")
        for path in self._files(src, tgt):
            if not path.is_file():
                raise XltError(f"lexicon file {path} is missing")

    def _table(self, src: str, tgt: str) -> list[dict[str, str]]:
        steps = []
        if src != "id":
            key = (src, "id")
            if key not in self._tables:
                name = TASK_LANGUAGES["nusax"][src]
                self._tables[key] = read_lexicon(self.folder / f"{name}.csv", name, "indonesian")
            steps.append(self._tables[key])
        if tgt == "en":
            if ("id", "en") not in self._tables:
                self._tables[("id", "en")] = read_lexicon(self.folder / "english.csv", "indonesian", "english")
            steps.append(self._tables[("id", "en")])
        return steps

    def translate(self, texts: list[str], source_lang: str, target_lang: str) -> list[str]:
        self.check_pair(source_lang, target_lang)
        steps = self._table(canonical_code(source_lang), canonical_code(target_lang))
        out = []
        for text in texts:
            for table in steps:
                text = translate_words(text, table)
            out.append(text)
        return out
