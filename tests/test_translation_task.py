"""Task nusax-mt: translation as a task of decoders and mT5, scored with sacreBLEU BLEU and chrF."""

import csv
import json

import pytest

from xlt.cli import main
from xlt.data.examples import source_side
from xlt.data.paths import resolve_data_dir
from xlt.data.prompts import get_template
from xlt.data.registry import load_task
from xlt.data.sets.nusax_mt import stage1_language
from xlt.errors import XltError
from xlt.scoring.generation import get_metric


def _column(split: str, name: str) -> list[str]:
    with open(resolve_data_dir() / "nusax" / "mt" / f"{split}.csv", newline="", encoding="utf-8") as f:
        return [row[name] for row in csv.DictReader(f)]


def test_a_run_translates_source_into_target_and_stage1_into_indonesian():
    data = load_task("nusax-mt", "ace", "en")
    english, acehnese, indonesian = (_column("test", c) for c in ("english", "acehnese", "indonesian"))
    assert (len(data.train), len(data.valid), len(data.test)) == (500, 100, 400)
    ex = data.test[7]
    assert ex.prompt_target == f"English: {english[7]}\nAcehnese:" and ex.answer == acehnese[7]
    assert ex.prompt_source == f"English: {english[7]}\nIndonesian:" and ex.answer_source == indonesian[7]
    stage1 = source_side(data)  # what the task model of stage 1 learns: English -> Indonesian
    assert stage1.target_lang == "id" and stage1.test[7].prompt_target == ex.prompt_source
    assert stage1.test[7].answer == indonesian[7]
    prompt = get_template("mt").prompt(ex.prompt_target)
    assert prompt.startswith("Translate the sentence into the language named on the last line.\nEnglish: ")
    assert prompt.endswith("\nAcehnese:")


def test_stage1_translates_into_english_when_the_source_is_indonesian():
    assert (stage1_language("en"), stage1_language("jv"), stage1_language("indonesian")) == ("id", "id", "en")
    data = load_task("nusax-mt", "jv", "id")
    assert data.test[0].prompt_source.endswith("\nEnglish:") and data.test[0].answer_source == _column("test", "english")[0]
    with pytest.raises(XltError, match="another --target-lang, got ace -> ace"):
        load_task("nusax-mt", "ace", "ace")


def test_bleu_and_chrf_are_sacrebleus_corpus_scores():
    metric = get_metric("mt")
    refs = ["the cat sat on the mat", "a dog barked loudly at night"]
    assert metric(refs, refs) == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0)}
    scores = metric([" the cat sat on a mat\n", "completely different words"], refs)
    from sacrebleu import corpus_bleu, corpus_chrf

    hyps = ["the cat sat on a mat", "completely different words"]  # outputs are stripped before scoring
    assert scores["bleu"] == pytest.approx(corpus_bleu(hyps, [refs]).score)
    assert scores["chrf"] == pytest.approx(corpus_chrf(hyps, [refs]).score)
    assert 0 < scores["bleu"] < scores["chrf"] < 100


def _args(tmp_path, model, method):
    return ["train", "--task", "nusax-mt", "--target-lang", "ace", "--method", method, "--model", model,
            "--max-train-examples", "8", "--max-eval-examples", "6", "--stage1-max-train-examples", "8",
            "--epochs", "1", "--stage1-epochs", "1", "--batch-size", "4", "--max-answer-length", "12",
            "--lora-r", "4", "--align-max-pairs", "8", "--no-show-progress",
            "--stage1-dir", str(tmp_path / "stage1"), "--output-dir", str(tmp_path / method)]


@pytest.mark.parametrize("model, method", [("tiny-random/llama", "lora"), ("tiny-random/mt5", "lora"),
                                           ("tiny-random/qwen2", "lora+align")])
def test_nusax_mt_trains_evaluates_and_reloads(tmp_path, capsys, model, method):
    assert main(_args(tmp_path, model, method)) == 0
    metrics = json.loads((tmp_path / method / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"bleu", "chrf"} and set(metrics["source_metrics"]) == {"bleu", "chrf"}
    assert metrics["metric_signatures"]["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert metrics["metric_signatures"]["chrf"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0")
    assert metrics["target_lang"] == "ace" and metrics["test_examples"] == 6
    capsys.readouterr()
    assert main(["evaluate", "--run-dir", str(tmp_path / method)]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["matches_stored"] is True and again["metrics"] == metrics["metrics"]


@pytest.mark.parametrize("method", ["flare", "input-fusion", "translate-test"])
def test_methods_that_read_another_version_of_the_input_are_refused(tmp_path, capsys, method):
    assert main(_args(tmp_path, "tiny-random/llama", method)) == 2
    err = capsys.readouterr().err.strip()
    assert f"method {method} reads another version of the input" in err and len(err.splitlines()) == 1
    assert not (tmp_path / method).exists() and not (tmp_path / "stage1").exists()


def _wmt23(name: str) -> list[str]:
    folder = resolve_data_dir() / "wmt23"
    path = folder / "sources" / name if name.endswith(".src.en") else folder / "references" / name
    return path.read_text(encoding="utf-8").rstrip("\n").split("\n")


def test_wmt23_splits_the_7_way_test_set_in_halves_and_stage1_translates_into_czech():
    data = load_task("wmt23", "uk", "en")
    english = _wmt23("generaltest2023.en-uk.src.en")
    ukrainian, czech = _wmt23("generaltest2023.en-uk.ref.refA.uk"), _wmt23("generaltest2023.en-cs.ref.refA.cs")
    assert len(english) == 2074 and (len(data.train), len(data.valid), len(data.test)) == (1037, 0, 1037)
    rows = {split: [int(ex.id.split("-")[1]) for ex in getattr(data, split)] for split in ("train", "test")}
    assert sorted(rows["train"] + rows["test"]) == list(range(2074))  # two disjoint halves of every segment
    i, ex = rows["test"][5], data.test[5]
    assert ex.prompt_target == f"English: {english[i]}\nUkrainian:" and ex.answer == ukrainian[i]
    assert ex.prompt_source == f"English: {english[i]}\nCzech:" and ex.answer_source == czech[i]
    assert (data.source_lang, data.target_lang) == ("cs", "uk")
    into_czech = load_task("wmt23", "czech", "en")  # stage 1 cannot translate into the target itself
    assert into_czech.source_lang == "ru" and into_czech.test[5].answer_source == _wmt23(
        "generaltest2023.en-ru.ref.refA.ru")[i]
    assert [ex.id for ex in into_czech.test] == [ex.id for ex in data.test]  # one split for every language


@pytest.mark.parametrize("target, source, message", [
    ("de", "en", "task wmt23 has no language 'de'; supported: en, cs, he, ja, ru, uk, zh"),
    ("uk", "zh", "--source-lang must be en, got zh"),
    ("en", "en", "--target-lang one of cs, he, ja, ru, uk, zh"),
])
def test_wmt23_directions_it_does_not_have_are_named(target, source, message):
    with pytest.raises(XltError, match=message):
        load_task("wmt23", target, source)


def test_wmt23_parallel_set_gives_the_task_halves_for_alignment_and_retrieval():
    from xlt.data.parallel import load_parallel

    data = load_task("wmt23", "he", "en")
    train = load_parallel("wmt23", ["en", "he", "ja"], split="train")
    assert list(train) == ["en", "he", "ja"] and len(train["he"]) == 1037
    assert train["he"] == [ex.answer for ex in data.train]
    test = load_parallel("wmt23", ["en", "he"])  # retrieval's default split: the task's test half
    assert test["he"] == [ex.answer for ex in data.test]
    assert test["en"][0] == data.test[0].prompt_target.removeprefix("English: ").removesuffix("\nHebrew:")
    with pytest.raises(XltError, match="wmt23 has no split 'valid'"):
        load_parallel("wmt23", ["en", "he"], split="valid")


def test_wmt23_trains_and_scores_bleu_and_chrf_on_a_tiny_decoder(tmp_path, capsys):
    args = _args(tmp_path, "tiny-random/llama", "lora")
    args[args.index("nusax-mt")], args[args.index("ace")] = "wmt23", "zh"
    assert main(args) == 0
    metrics = json.loads((tmp_path / "lora" / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"bleu", "chrf"} and metrics["metrics"]["chrf"] >= 0
    assert (metrics["task"], metrics["target_lang"], metrics["test_examples"]) == ("wmt23", "zh", 6)
    # BLEU into Chinese is tokenized as WMT scores it; stage 1 (into Czech) with 13a, and both are recorded
    assert "|tok:zh|" in metrics["metric_signatures"]["bleu"]
    assert "|tok:13a|" in metrics["source_metric_signatures"]["bleu"]
    args[args.index("lora")] = "flare"
    assert main(args) == 2
    assert "method flare reads another version of the input, which for wmt23" in capsys.readouterr().err


def test_bleu_tokenizes_chinese_and_japanese_as_wmt_does_and_never_falls_back():
    from xlt.scoring.generation import bleu_tokenizer

    assert [bleu_tokenizer(lang) for lang in ("zh", "Japanese", "ko", "cs", "xx-unknown")] == [
        "zh", "ja-mecab", "ko-mecab", "13a", "13a"]
    metric = get_metric("mt", "zh")
    hyp, ref = ["我们今天去北京。"], ["我们明天去北京。"]  # one character differs
    from sacrebleu import corpus_bleu

    assert metric(hyp, ref)["bleu"] == pytest.approx(corpus_bleu(hyp, [ref], tokenize="zh").score)
    assert metric(hyp, ref)["bleu"] > get_metric("mt", "en")(hyp, ref)["bleu"] == 0.0  # 13a: one unsplit word


def test_a_bleu_tokenizer_whose_package_is_missing_is_refused_before_anything_loads(tmp_path, capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "MeCab" else find_spec(name, *a))
    args = _args(tmp_path, "tiny-random/llama", "lora")
    args[args.index("nusax-mt")], args[args.index("ace")] = "wmt23", "ja"
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == ("xlt: error: BLEU into ja uses sacreBLEU's ja-mecab tokenizer, which "
                                               "needs MeCab: pip install 'sacrebleu[ja]'")
    assert not (tmp_path / "lora").exists() and not (tmp_path / "stage1").exists()
