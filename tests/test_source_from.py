"""--source-from: stage 1 stays on the English side; stage 2 reads or fuses another version of each example."""

import csv
import json

import pytest

from xlt.cli import main
from xlt.config import RunConfig
from xlt.data.paths import resolve_data_dir
from xlt.errors import XltError
from xlt.runs.recipe import load_data


def _nusax(lang: str) -> dict[str, str]:
    path = resolve_data_dir() / "nusax" / "sentiment" / lang / "train.csv"
    with open(path, newline="", encoding="utf-8") as f:
        return {row["id"]: row["text"] for row in csv.DictReader(f)}


def test_pivot_source_is_the_same_example_in_the_pivot_language():
    cfg = RunConfig(task="nusax", method="flare", target_lang="ace", source_from="pivot:indonesian",
                    max_train_examples=20)
    assert cfg.source_from == "pivot:id" and cfg.source_text_lang == "id"
    stage2, stage1 = load_data(cfg), load_data(cfg, stage1=True)
    indonesian, english, acehnese = _nusax("indonesian"), _nusax("english"), _nusax("acehnese")
    assert [ex.source[0] for ex in stage2.train] == [indonesian[ex.id] for ex in stage2.train]
    assert [ex.target[0] for ex in stage2.train] == [acehnese[ex.id] for ex in stage2.train]
    # stage 1 trains on English whatever stage 2 fuses
    assert [ex.target[0] for ex in stage1.train[:20]] == [english[ex.id] for ex in stage1.train[:20]]


@pytest.mark.parametrize("value, message", [
    ("pivot", "source_from must be gold, pivot:LANG, mt:MODEL or lexicon, got 'pivot'"),
    ("silver", "source_from must be gold, pivot:LANG, mt:MODEL or lexicon, got 'silver'"),
    ("pivot:ace", "source_from pivot:ace must differ from the target and the source language"),
    ("pivot:xx", "unknown language 'xx'"),
])
def test_bad_source_from_is_one_line(value, message):
    with pytest.raises(XltError, match=message):
        RunConfig(task="nusax", method="flare", target_lang="ace", source_from=value)


def test_pivot_is_refused_for_a_custom_file():
    with pytest.raises(XltError, match="needs a parallel data set"):
        RunConfig(task="custom", method="flare", target_lang="xx", source_from="pivot:id")


def test_a_flare_run_records_its_source(tmp_path):
    args = ["train", "--model", "tiny-random/bert", "--task", "nusax", "--method", "flare", "--target-lang", "bug",
            "--source-from", "pivot:id", "--max-train-examples", "8", "--max-eval-examples", "8", "--epochs", "1",
            "--stage1-epochs", "1", "--stage1-max-train-examples", "8", "--batch-size", "4", "--no-show-progress",
            "--stage1-dir", str(tmp_path / "stage1"), "--output-dir", str(tmp_path / "run")]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["source_lang"], metrics["source_from"], metrics["target_lang"]) == ("en", "pivot:id", "bug")
    assert metrics["stage1_examples"]["train"] == 8


COMMON = ["--model", "tiny-random/bert", "--task", "nusax", "--target-lang", "ace", "--max-train-examples", "8",
          "--max-eval-examples", "12", "--epochs", "1", "--stage1-epochs", "1", "--stage1-max-train-examples", "8",
          "--batch-size", "4", "--no-show-progress"]


def _run(tmp_path, name, *extra) -> dict:
    out = tmp_path / name
    assert main(["train", *COMMON, *extra, "--stage1-dir", str(tmp_path / "stage1"),
                 "--translation-cache", str(tmp_path / "mt.sqlite"), "--output-dir", str(out)]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_flare_on_lexicon_english_reports_its_chrf_against_the_gold(tmp_path):
    from xlt.mt.chrf import corpus_chrf
    from xlt.mt.lexicon import LexiconTranslator

    metrics = _run(tmp_path, "flare-lexicon", "--method", "flare", "--source-from", "lexicon")
    assert metrics["source_from"] == "lexicon" and metrics["translator"] == "lexicon"
    quality = metrics["source_chrf"]
    assert quality["train"]["sentences"] == 8 and quality["test"]["sentences"] == 12
    # the same number straight from the translator and the gold English of the 12 test rows
    cfg = RunConfig(task="nusax", method="flare", target_lang="ace", max_eval_examples=12)
    test = load_data(cfg).test
    hyp = LexiconTranslator().translate([ex.target[0] for ex in test], "ace", "en")
    assert quality["test"]["chrf"] == round(corpus_chrf(hyp, [ex.source[0] for ex in test]).score, 2)
    assert quality["signature"].startswith("nrefs:1|case:mixed")


def test_translate_test_with_a_translator_reads_its_english(tmp_path):
    metrics = _run(tmp_path, "tt", "--method", "translate-test", "--translator", "tiny-random/m2m100")
    assert metrics["source_from"] == "mt:tiny-random/m2m100" and set(metrics["source_chrf"]) == {"test", "signature"}
    gold = _run(tmp_path, "tt-gold", "--method", "translate-test")
    assert gold["source_from"] == "gold" and "source_chrf" not in gold


def test_translate_train_trains_on_the_translated_english_training_set(tmp_path, monkeypatch):
    import xlt.runs.stage2

    seen = []
    real = xlt.runs.stage2.task_steps
    monkeypatch.setattr(xlt.runs.stage2, "task_steps", lambda examples, *a, **k: seen.append(list(examples)) or real(
        examples, *a, **k))
    metrics = _run(tmp_path, "tr", "--method", "translate-train", "--translator", "tiny-random/m2m100")
    assert metrics["translator"] == "tiny-random/m2m100" and metrics["trainable_params"] > 0
    cfg = RunConfig(task="nusax", method="lora", target_lang="ace", max_train_examples=8)
    gold = load_data(cfg).train
    trained = seen[-1]
    assert [ex.id for ex in trained] == [ex.id for ex in gold] and [ex.label for ex in trained] == [
        ex.label for ex in gold]
    assert all(t.target != g.target for t, g in zip(trained, gold))  # the translation, not the human target


@pytest.mark.parametrize("extra, message", [
    (["--method", "lora", "--translator", "lexicon"], "--translator is for translate-test and translate-train"),
    (["--method", "translate-train"], "translate-train needs --translator MODEL"),
    (["--method", "translate-test", "--translator", "lexicon", "--source-from", "pivot:id"],
     "translate-test reads either --translator's English or --source-from pivot:id, not both"),
    (["--method", "zero-shot", "--source-from", "lexicon"], "which 'zero-shot' never reads"),
    (["--method", "flare", "--source-from", "mt:"], "source_from must be gold, pivot:LANG, mt:MODEL or lexicon"),
])
def test_bad_translation_settings_are_one_line(extra, message, tmp_path, capsys):
    assert main(["train", *COMMON, *extra, "--output-dir", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err


def test_a_language_the_lexicon_lacks_is_refused_by_name_before_any_model(tmp_path, capsys, monkeypatch):
    import xlt.runs.stage2

    monkeypatch.setattr(xlt.runs.stage2, "ensure_stage1", lambda cfg: pytest.fail("reached stage 1"))
    args = ["train", "--model", "tiny-random/bert", "--task", "xnli", "--target-lang", "de", "--method", "flare",
            "--source-from", "lexicon", "--output-dir", str(tmp_path / "x")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("xlt: error: the lexicon translator has no word list for German (de); it translates from "
                          "Acehnese (ace), Balinese (ban)") and err.count("\n") == 1


def test_the_mt_demo_suite_compares_sources_and_reports_their_chrf(tmp_path):
    from xlt.runs.demo import MT_SUITE, DemoPlan, run_demo

    plan = DemoPlan(languages=("ace",), seeds=(0,), max_train_examples=8, max_eval_examples=8, epochs=1,
                    stage1_epochs=1, stage1_max_train_examples=8, bf16=False)
    table = run_demo(tmp_path, plan, model="tiny-random/bert", show_progress=False, suite="mt")
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["method"] for r in rows] == [m.name for m in MT_SUITE]
    by_name = {r["method"]: r for r in rows}
    assert by_name["flare [lexicon MT]"]["source_from"] == "lexicon"
    assert by_name["flare [Indonesian pivot]"]["source_from"] == "pivot:id"
    assert by_name["translate-test [gold]"]["source_from"] == "gold"
    lexicon = by_name["flare [lexicon MT]"]["source_chrf"]["test"]["chrf"]
    pivot = by_name["flare [Indonesian pivot]"]["source_chrf"]["test"]["chrf"]
    assert f"| lexicon | ace | {lexicon:.1f} |" in table and f"| pivot:id | ace | {pivot:.1f} |" in table
    assert "A pivot is another language, not a translation into English" in table
    assert "| flare [lexicon MT] (add_relu), English zeroed at test |" in table
    assert "reads the gold (human) English" in table  # the gold translate-test row is still an upper bound
