"""``xlt lid train``: a character n-gram language identifier trained with scikit-learn on the training splits of
NusaX's sentiment set (the same 500 sentences in 12 languages: Acehnese, Balinese, Banjarese, Buginese, English,
Indonesian, Javanese, Madurese, Minangkabau, Ngaju, Sundanese, Toba Batak) and measured on its test splits, which
no LID training reads. The estimator is ``TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), min_df=2,
sublinear_tf=True)`` and multinomial ``LogisticRegression(C=10)`` (98.6% held-out accuracy; (1, 3) grams
97.7%, (1, 5) grams 98.9% at twice the size); its vocabulary, idf and coefficients become a
:class:`xlt.lid.model.LanguageIdentifier`, whose numpy prediction is checked against ``predict_proba`` on the
held-out sentences before the file is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xlt.errors import XltError
from xlt.languages import TASK_LANGUAGES, canonical_code, english_name
from xlt.lid.model import LanguageIdentifier

NUSAX_LANGS = tuple(TASK_LANGUAGES["nusax"])
NGRAM_RANGE = (1, 4)
MIN_DF = 2  # an n-gram seen in one training sentence only is noise, and half the vocabulary
C = 10.0
AGREEMENT = 1e-6  # numpy's probabilities against scikit-learn's (float32 coefficients: about 1e-8)


def check_langs(langs: list[str] | None) -> tuple[str, ...]:
    """The languages to identify (canonical codes; NusaX's twelve by default), at least two, each once."""
    if not langs:
        return NUSAX_LANGS
    codes = tuple(dict.fromkeys(canonical_code(lang) for lang in langs))
    unknown = [code for code in codes if code not in NUSAX_LANGS]
    if unknown:
        raise XltError(f"xlt lid train reads NusaX, which has no {unknown[0]!r}; choose from {', '.join(NUSAX_LANGS)}")
    if len(codes) < 2:
        raise XltError("a language identifier needs at least two languages (--langs)")
    return codes


def nusax_sentences(data_dir: Path, langs: tuple[str, ...], split: str) -> tuple[list[str], list[str]]:
    """The texts of NusaX's ``split`` (``train`` or ``test``) in each language, and their languages."""
    from xlt.data.sets import nusax

    texts, labels = [], []
    for lang in langs:
        data = nusax.load(data_dir, lang)
        examples = data.train if split == "train" else data.test
        texts += [ex.target[0] for ex in examples]
        labels += [lang] * len(examples)
    return texts, labels


def fit(texts: list[str], labels: list[str]):
    """The scikit-learn estimator: tf-idf character n-grams and multinomial logistic regression."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
    except ImportError:
        raise XltError("xlt lid train needs scikit-learn: pip install 'xlt[lid]'") from None
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=NGRAM_RANGE, min_df=MIN_DF, sublinear_tf=True,
                                 dtype=np.float64)
    pipeline = make_pipeline(vectorizer, LogisticRegression(C=C, max_iter=2000))
    return pipeline.fit(texts, labels)


def as_identifier(pipeline, meta: dict) -> LanguageIdentifier:
    """The fitted pipeline's arrays (n-grams in feature order, idf, coefficients) as an identifier."""
    vectorizer, classifier = pipeline.steps[0][1], pipeline.steps[-1][1]
    ngrams = vectorizer.get_feature_names_out().astype(str)
    settings = {"ngram_range": list(vectorizer.ngram_range), "sublinear_tf": vectorizer.sublinear_tf,
                "analyzer": "char_wb", "min_df": MIN_DF, "C": C}
    coef, intercept = classifier.coef_, classifier.intercept_
    if coef.shape[0] == 1:  # two languages: a sigmoid of one score, the softmax of (0, score)
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    return LanguageIdentifier(ngrams, vectorizer.idf_.astype(np.float64), coef.astype(np.float32),
                              intercept.astype(np.float64), tuple(classifier.classes_.tolist()), {**settings, **meta})


def accuracy_by_language(identifier: LanguageIdentifier, texts: list[str], labels: list[str]) -> dict:
    """Held-out accuracy per language, and over all sentences (``all``), with the sentence counts."""
    predicted = [lang for lang, _ in identifier.predict(texts)]
    table = {}
    for lang in identifier.langs:
        rows = [p == gold for p, gold in zip(predicted, labels) if gold == lang]
        table[lang] = {"accuracy": round(float(np.mean(rows)), 4), "sentences": len(rows)}
    table["all"] = {"accuracy": round(float(np.mean([p == g for p, g in zip(predicted, labels)])), 4),
                    "sentences": len(labels)}
    return table


def train_identifier(data_dir: Path, langs: tuple[str, ...]) -> LanguageIdentifier:
    """Trained on NusaX's training splits of ``langs``, measured on their test splits (``meta["held_out"]``);
    refused if the numpy prediction strays from scikit-learn's."""
    texts, labels = nusax_sentences(data_dir, langs, "train")
    pipeline = fit(texts, labels)
    identifier = as_identifier(pipeline, {"trained_on": "nusax sentiment train", "train_sentences": len(texts)})
    held_texts, held_labels = nusax_sentences(data_dir, langs, "test")
    difference = float(np.abs(identifier.probabilities(held_texts) - pipeline.predict_proba(held_texts)).max())
    if difference > AGREEMENT:
        raise RuntimeError(f"the saved identifier's probabilities differ from scikit-learn's by {difference:.2g}")
    identifier.meta.update(held_out=accuracy_by_language(identifier, held_texts, held_labels),
                           held_out_set="nusax sentiment test", sklearn_max_difference=difference)
    return identifier


def accuracy_table(identifier: LanguageIdentifier) -> str:
    """The held-out accuracy table as Markdown, one row per language and the total."""
    lines = ["| language | code | held-out sentences | accuracy |", "|---|---|---|---|"]
    for lang, row in identifier.meta.get("held_out", {}).items():
        name = "all" if lang == "all" else english_name(lang)
        lines.append(f"| {name} | {'' if lang == 'all' else lang} | {row['sentences']} | {row['accuracy']:.3f} |")
    return "\n".join(lines)
