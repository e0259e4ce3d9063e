"""A language identifier as plain arrays: the character n-grams it reads (scikit-learn's ``char_wb`` analyzer:
lower-cased words padded with one space, n-grams of 1 to 4 characters), their idf weights, and one row of
coefficients per language. A text's features are its n-gram counts times the idf, L2-normalized (as
``TfidfVectorizer``), its scores the coefficients' dot product plus the intercept, and its probabilities their
softmax (as multinomial ``LogisticRegression.predict_proba``); :mod:`xlt.lid.train` checks both agree.

The file is a ``.npz`` of numeric and text arrays plus a JSON string of metadata (settings, the held-out
accuracy table), read with ``allow_pickle=False``: loading it runs no code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xlt.errors import XltError

FORMAT = "xlt-lid-1"
ARRAYS = ("ngrams", "idf", "coef", "intercept", "langs", "meta")
_WHITE_SPACE = re.compile(r"\s\s+")


def char_wb_ngrams(text: str, low: int, high: int) -> list[str]:
    """The n-grams scikit-learn's ``analyzer="char_wb"`` reads (lower-cased; a word shorter than n counted once)."""
    grams = []
    for word in _WHITE_SPACE.sub(" ", text.lower()).split():
        word = f" {word} "
        for n in range(low, high + 1):
            offset = 0
            grams.append(word[offset:offset + n])
            while offset + n < len(word):
                offset += 1
                grams.append(word[offset:offset + n])
            if offset == 0:
                break
    return grams


@dataclass
class LanguageIdentifier:
    """The arrays of a trained identifier; ``predict`` gives each text's most likely language and its
    probability."""

    ngrams: np.ndarray  # (features,) str
    idf: np.ndarray  # (features,) float
    coef: np.ndarray  # (languages, features) float
    intercept: np.ndarray  # (languages,) float
    langs: tuple[str, ...]
    meta: dict = field(default_factory=dict)  # ngram_range, sublinear_tf, trained_on, held-out accuracy ...

    def __post_init__(self):
        self._index = {gram: i for i, gram in enumerate(self.ngrams.tolist())}

    @property
    def ngram_range(self) -> tuple[int, int]:
        low, high = self.meta.get("ngram_range", (1, 4))
        return int(low), int(high)

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The text's non-zero tf-idf features: their indices and L2-normalized values."""
        counts: dict[int, int] = {}
        for gram in char_wb_ngrams(text, *self.ngram_range):
            index = self._index.get(gram)
            if index is not None:
                counts[index] = counts.get(index, 0) + 1
        indices = np.fromiter(counts, dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        if self.meta.get("sublinear_tf"):
            tf = 1.0 + np.log(tf)
        values = tf * self.idf[indices]
        norm = np.sqrt(np.dot(values, values))
        return indices, values / norm if norm > 0 else values

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """(texts, languages): the softmax of each text's scores."""
        scores = np.empty((len(texts), len(self.langs)))
        for row, text in enumerate(texts):
            indices, values = self.features(text)
            scores[row] = self.coef[:, indices].astype(np.float64) @ values + self.intercept
        scores -= scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        """Per text: the most likely language (canonical code) and its probability."""
        if not texts:
            return []
        probs = self.probabilities(texts)
        best = probs.argmax(axis=1)
        return [(self.langs[i], float(probs[row, i])) for row, i in enumerate(best)]

    def save(self, path: str | Path) -> None:
        """The arrays as one ``.npz`` (compressed), written atomically."""
        from xlt.io import atomic_target

        with atomic_target(path, suffix=".npz") as tmp:  # the suffix keeps numpy from adding its own
            np.savez_compressed(tmp, ngrams=self.ngrams, idf=self.idf, coef=self.coef, intercept=self.intercept,
                                langs=np.array(self.langs), meta=np.array(json.dumps({"format": FORMAT, **self.meta})))


def load_identifier(path: str | Path) -> LanguageIdentifier:
    """The identifier saved by ``xlt lid train`` at ``path`` (no pickle: a file with object arrays is refused)."""
    path = Path(path)
    if not path.is_file():
        raise XltError(f"language identifier {path} does not exist (build one with xlt lid train --output {path})")
    try:
        with np.load(path, allow_pickle=False) as saved:
            arrays = {name: saved[name] for name in ARRAYS}
        meta = json.loads(str(arrays["meta"]))
    except (OSError, ValueError, KeyError, EOFError) as err:
        raise XltError(f"{path} is not a language identifier written by xlt lid train ({type(err).__name__})") \
            from None
    if not isinstance(meta, dict) or meta.pop("format", None) != FORMAT:
        raise XltError(f"{path} is not a language identifier written by xlt lid train (format is not {FORMAT})")
    return LanguageIdentifier(arrays["ngrams"], arrays["idf"], arrays["coef"], arrays["intercept"],
                              tuple(arrays["langs"].tolist()), meta)
