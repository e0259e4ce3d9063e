"""--source-from mt:MODEL for extractive QA: FLARE and input-fusion read each question and paragraph machine-
translated into English (the paragraph sentence by sentence), which gives TyDiQA, not parallel, an English side;
translate-test (English answer spans) stays refused."""

import json

import pytest
from helpers import cli_error

from xlt.cli import main
from xlt.data.examples import QAExample, QATaskData
from xlt.mt.translated_data import split_sentences, translated_qa_source

MT = "tiny-random/m2m100"


def test_a_paragraph_is_cut_after_sentence_final_punctuation_and_at_line_breaks():
    assert split_sentences("  Hii ni sentensi. Ya pili!  Tatu?\nNne 3.5 hapa\u061f Tano\u0964 Sita  ") == [
        "Hii ni sentensi.", "Ya pili!", "Tatu?", "Nne 3.5 hapa\u061f", "Tano\u0964", "Sita"]
    assert split_sentences("one sentence without an end") == ["one sentence without an end"]
    assert split_sentences("   ") == []


class UpperCase:
    """A stand-in MT model that upper-cases, and records what it was asked to translate."""

    fingerprint = {"model": "upper-case"}

    def __init__(self):
        self.calls: list[list[str]] = []

    def check_pair(self, source_lang, target_lang):
        assert (source_lang, target_lang) == ("sw", "en")

    def translate(self, texts, source_lang, target_lang):
        self.calls.append(list(texts))
        return [t.upper() for t in texts]


def _qa(id_: str, question: str, context: str, answer: str, gold_english: bool = False) -> QAExample:
    english = ("What?", "Gold English.", ("Gold",), (0,)) if gold_english else (None, None, None, None)
    return QAExample(question, context, (answer,), (context.index(answer),), *english, id=id_)


def test_each_distinct_question_and_sentence_is_translated_once_and_chrf_is_scored_only_against_a_gold():
    shared = "Jiji ni Nairobi."  # a sentence of two paragraphs: translated once
    train = [_qa("a", "Nini?", f"{shared} Jibu ni moja.", "moja"),
             _qa("b", "Nini?", f"{shared}\nJibu ni mbili.", "mbili")]
    test = [_qa("c", "Wapi?", "Hapa ni Mombasa. Sawa!", "Mombasa", gold_english=True)]
    english = QATaskData("tydiqa", "en", "en", [_qa("e", "What?", "It is one.", "one")], [], [])
    data = QATaskData("tydiqa", "en", "sw", train, [], test, english=english)
    mt = UpperCase()
    translated, quality = translated_qa_source(data, mt, cache=None)
    assert sorted(mt.calls[0]) == sorted(["Nini?", shared, "Jibu ni moja.", "Jibu ni mbili.", "Wapi?",
                                          "Hapa ni Mombasa.", "Sawa!"]) and len(mt.calls) == 1
    first, second = translated.train
    assert (first.source_question, first.source_context) == ("NINI?", "JIJI NI NAIROBI. JIBU NI MOJA.")
    assert second.source_context == "JIJI NI NAIROBI. JIBU NI MBILI."  # the line break joined by a space
    assert (first.question, first.context, first.answers) == (train[0].question, train[0].context, ("moja",))
    assert first.source_answers is None and first.source_answer_starts is None  # no English spans
    assert translated.test[0].source_context == "HAPA NI MOMBASA. SAWA!"
    assert set(quality) == {"test", "signature"} and quality["test"]["sentences"] == 1  # the one gold English
    assert translated.english is english  # stage 1's English data stays the gold one
    only_test, _ = translated_qa_source(data, UpperCase(), None, splits=("test",))
    assert only_test.train == train  # a split the method does not read keeps its text


def test_the_cache_serves_a_second_translation(tmp_path):
    from xlt.mt.cache import TranslationCache

    data = QATaskData("tydiqa", "en", "sw", [_qa("a", "Nini?", "Moja. Mbili.", "Moja")], [], [],
                      english=QATaskData("tydiqa", "en", "en", [], [], []))
    cache = TranslationCache(tmp_path / "mt.sqlite")
    first, second = UpperCase(), UpperCase()
    translated_qa_source(data, first, cache)
    again, _ = translated_qa_source(data, second, cache)
    assert len(first.calls[0]) == 3 and second.calls == [] and len(cache) == 3
    assert again.train[0].source_context == "MOJA. MBILI."
    cache.close()


def _tydiqa(root):
    """A TyDiQA-GoldP folder (English and Swahili training and dev files) of two-sentence paragraphs whose first
    sentence is the same in every paragraph of a language, so it is translated once."""
    def squad(lang: str, split: str, paragraphs: range) -> dict:
        return {"version": "1.1", "data": [{"paragraphs": [
            {"context": f"{lang} ni lugha. Jibu ni neno{k} hapa.", "qas": [
                {"id": f"{lang}-{split}-{k}", "question": f"{lang} swali {k}?",
                 "answers": [{"text": f"neno{k}", "answer_start": len(f"{lang} ni lugha. Jibu ni ")}]}]}
            for k in paragraphs]}]}

    (root / "tydiqa-goldp" / "train").mkdir(parents=True)
    for lang in ("en", "sw"):
        (root / "tydiqa-goldp" / "train" / f"tydiqa.goldp.{lang}.train.json").write_text(
            json.dumps(squad(lang, "train", range(4))))
        (root / "tydiqa-goldp" / f"tydiqa.goldp.{lang}.dev.json").write_text(
            json.dumps(squad(lang, "dev", range(4, 7))))
    return root


def _args(tmp_path, task: str, target: str, method: str, name: str, model: str = "tiny-random/bert",
          *extra: str) -> list[str]:
    args = ["train", "--task", task, "--target-lang", target, "--method", method, "--model", model,
            "--max-train-examples", "4", "--max-eval-examples", "3", "--stage1-max-train-examples", "4",
            "--epochs", "1", "--stage1-epochs", "1", "--qa-max-length", "128", "--batch-size", "4",
            "--lora-r", "4", "--no-show-progress", "--stage1-dir", str(tmp_path / "s1"),
            "--translation-cache", str(tmp_path / "mt.sqlite"), "--output-dir", str(tmp_path / name), *extra]
    return args + (["--doc-stride", "16"] if model == "tiny-random/bert" else [])


def _counting_translations(monkeypatch) -> list[list[str]]:
    """What the MT model is asked to translate, call by call."""
    from xlt.mt.seq2seq import Seq2SeqTranslator

    calls, real = [], Seq2SeqTranslator.translate
    monkeypatch.setattr(Seq2SeqTranslator, "translate",
                        lambda self, texts, *a: calls.append(list(texts)) or real(self, texts, *a))
    return calls


def test_flare_on_tydiqa_fuses_the_machine_translated_question_and_paragraph(tmp_path, monkeypatch, capsys):
    import xlt.kinds.extractive_qa as qa
    from xlt.mt.cache import TranslationCache, translate_cached
    from xlt.mt.factory import load_translator

    root = _tydiqa(tmp_path / "data")
    fused, real = [], qa._source_windows
    monkeypatch.setattr(qa, "_source_windows", lambda tok, examples, *a: fused.extend(examples) or real(
        tok, examples, *a))
    calls = _counting_translations(monkeypatch)
    assert main(_args(tmp_path, "tydiqa", "sw", "flare", "run", "tiny-random/bert", "--source-from", f"mt:{MT}",
                      "--data-dir", str(root))) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["source_from"], metrics["translator"]) == (f"mt:{MT}", MT) and "source_chrf" not in metrics
    assert metrics["train_examples"] == 4 and metrics["test_examples"] == 3
    # each distinct question and sentence of the 4 + 3 questions read went to the MT model once
    sentences = [s for ex in fused for s in (ex.question, *split_sentences(ex.context))]
    assert len({ex.id for ex in fused}) == 7 and sorted(t for c in calls for t in c) == sorted(set(sentences))
    assert len(set(sentences)) == 1 + 2 * 7  # "sw ni lugha." shared
    # the English FLARE read is the translation of each example's own Swahili, sentence by sentence
    cache = TranslationCache(tmp_path / "mt.sqlite")
    done = translate_cached(load_translator(MT), sentences, "sw", "en", cache)
    assert done.misses == 0 and len(cache) == len(set(sentences))
    english = dict(zip(sentences, done.translations))
    for ex in fused:
        assert ex.source_question == english[ex.question]
        assert ex.source_context == " ".join(english[s] for s in split_sentences(ex.context))
    cache.close()
    # a second run reads every translation from the cache; so does xlt evaluate, which scores the run again
    calls.clear()
    assert main(["evaluate", "--run-dir", str(tmp_path / "run")]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["matches_stored"] is True and calls == []
    assert main(_args(tmp_path, "tydiqa", "sw", "input-fusion", "again", "tiny-random/bert", "--source-from",
                      f"mt:{MT}", "--data-dir", str(root))) == 0
    assert calls == []


def test_flare_on_mlqa_replaces_the_gold_english_and_scores_it_on_a_decoder(tmp_path):
    args = _args(tmp_path, "mlqa", "de", "flare", "run", "tiny-random/llama", "--source-from", f"mt:{MT}",
                 "--max-answer-length", "4")
    assert main(args) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["translator"] == MT and set(metrics["metrics"]) == {"exact_match", "f1"}
    quality = metrics["source_chrf"]  # against MLQA's gold English of the same questions
    assert quality["train"]["sentences"] == 4 and quality["test"]["sentences"] == 3
    assert quality["signature"].startswith("nrefs:1|case:mixed")


def _no_model(monkeypatch):
    import xlt.mt.factory
    import xlt.runs.stage2

    monkeypatch.setattr(xlt.mt.factory, "load_translator", lambda *a, **k: pytest.fail("loaded an MT model"))
    monkeypatch.setattr(xlt.runs.stage2, "ensure_stage1", lambda *a, **k: pytest.fail("reached stage 1"))


@pytest.mark.parametrize("method", ["flare", "input-fusion"])
def test_tydiqa_with_its_gold_english_names_source_from_mt(tmp_path, capsys, monkeypatch, method):
    _no_model(monkeypatch)
    assert main(_args(tmp_path, "tydiqa", "sw", method, "run")) == 2
    assert cli_error(capsys) == (f"method {method} needs the English version of each example, and task tydiqa is not "
                                 "parallel; give it one with --source-from mt:MODEL (the question and paragraph "
                                 "machine-translated into English), or use zero-shot or lora")
    assert not (tmp_path / "s1").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("task, target", [("tydiqa", "sw"), ("mlqa", "de")])
def test_translate_test_on_machine_translated_qa_is_refused_before_any_model(tmp_path, capsys, monkeypatch, task,
                                                                             target):
    _no_model(monkeypatch)
    assert main(_args(tmp_path, task, target, "translate-test", "run", "tiny-random/bert", "--translator", MT)) == 2
    assert cli_error(capsys) == (f"translate-test on extractive QA ({task}) scores answer spans of the English "
                                 "paragraph, which machine translation does not carry; use flare or input-fusion "
                                 "with --source-from mt:MODEL")
    assert not (tmp_path / "s1").exists() and not (tmp_path / "run").exists()
