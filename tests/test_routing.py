"""Several languages in one model (issue 25): ``xlt lid train``'s identifier (scikit-learn's, stored without
pickle, its numpy prediction equal to scikit-learn's) and ``xlt predict --run-dirs`` / ``xlt.RoutedPredictor``:
each row answered by the run of its language, LoRA runs of one English model from one PEFT model in mixed batches,
exactly as each run answers alone; FLARE rows by their own run; the low-confidence fallback; refusals in one line
before any model loads."""

import json

import numpy as np
import pytest
from helpers import cli_error

import xlt
from xlt.cli.main import main
from xlt.data.registry import load_task
from xlt.lid.model import char_wb_ngrams, load_identifier
from xlt.lid.train import fit, nusax_sentences, train_identifier

QUICK = ["--task", "nusax", "--max-train-examples", "24", "--max-eval-examples", "20", "--epochs", "2",
         "--stage1-epochs", "1", "--stage1-max-train-examples", "24", "--lora-r", "4", "--lora-alpha", "8",
         "--batch-size", "8", "--lr", "0.02", "--no-show-progress", "--model", "tiny-random/bert"]
LORA_LANGS = ("ace", "bug", "jv")
LID_LANGS = ("ace", "ban", "bug", "jv")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny NusaX runs sharing one English model: lora for ace, bug and jv, flare for ban."""
    root = tmp_path_factory.mktemp("routed")
    for lang, method in (*((lang, "lora") for lang in LORA_LANGS), ("ban", "flare")):
        assert main(["train", *QUICK, "--target-lang", lang, "--method", method, "--output-dir",
                     str(root / lang)]) == 0
    return {lang: root / lang for lang in (*LORA_LANGS, "ban")}


@pytest.fixture(scope="module")
def lid_file(tmp_path_factory, data_dir):
    path = tmp_path_factory.mktemp("lid") / "lid.npz"
    train_identifier(data_dir, LID_LANGS).save(path)
    return path


def _test_rows(data_dir, langs=(*LORA_LANGS, "ban"), count=6, start=0) -> list[dict]:
    """NusaX test rows (no run's training saw them) of each language, with their English side and language."""
    rows = []
    for lang in langs:
        for ex in load_task("nusax", lang, data_dir=data_dir).test[start:start + count]:
            rows.append({"id": f"{lang}-{ex.id}", "target_text": ex.target[0], "source_text": ex.source[0],
                         "lang": lang})
    return rows


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _largest_difference(first: list[dict], second: list[dict]) -> float:
    return max(abs(a["probabilities"][k] - b["probabilities"][k]) for a, b in zip(first, second)
               for k in a["probabilities"])


def _own(run_dir, rows):
    """The run's own predictions on ``rows`` (xlt.Predictor, one run)."""
    return xlt.Predictor.from_run_dir(run_dir).predict(rows)


def test_the_numpy_identifier_is_scikit_learns_and_loads_without_pickle(data_dir, lid_file):
    texts, labels = nusax_sentences(data_dir, LID_LANGS, "train")
    pipeline = fit(texts, labels)
    analyzer = pipeline.steps[0][1].build_analyzer()
    for text in ("Lon  galak  that!", "a I ok", "Ngon HOTEL\tlon", ""):
        assert char_wb_ngrams(text, 1, 4) == analyzer(text)
    held_out, gold = nusax_sentences(data_dir, LID_LANGS, "test")
    identifier = load_identifier(lid_file)
    assert np.abs(identifier.probabilities(held_out) - pipeline.predict_proba(held_out)).max() <= 1e-6
    with np.load(lid_file, allow_pickle=False) as saved:  # plain arrays only: no object array needs pickle
        assert sorted(saved.files) == ["coef", "idf", "intercept", "langs", "meta", "ngrams"]
    table = identifier.meta["held_out"]
    assert set(table) == {*LID_LANGS, "all"} and table["all"]["sentences"] == len(gold) == 1600
    assert all(table[lang]["accuracy"] >= 0.95 for lang in LID_LANGS)
    predicted = [lang for lang, _ in identifier.predict(held_out)]
    assert table["all"]["accuracy"] == round(float(np.mean([p == g for p, g in zip(predicted, gold)])), 4)


def test_xlt_lid_train_prints_and_stores_the_held_out_table(tmp_path, capsys):
    out = tmp_path / "lid.npz"
    assert main(["lid", "train", "--langs", "jv", "sundanese", "--output", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[:2] == ["| language | code | held-out sentences | accuracy |", "|---|---|---|---|"]
    assert [line.split(" | ")[:3] for line in printed[2:5]] == [["| Javanese", "jv", "400"],
                                                                ["| Sundanese", "su", "400"], ["| all", "", "800"]]
    assert printed[5].startswith(f"language identifier for 2 languages written to {out} (")
    identifier = load_identifier(out)
    assert identifier.langs == ("jv", "su") and identifier.meta["ngram_range"] == [1, 4]
    assert out.stat().st_size < 1_000_000
    assert main(["lid", "train", "--langs", "jv", "de", "--output", str(tmp_path / "x.npz")]) == 2
    assert cli_error(capsys) == ("xlt lid train reads NusaX, which has no 'de'; choose from ace, ban, bjn, bug, en, "
                                 "id, jv, mad, min, nij, su, bbc")
    assert main(["lid", "train", "--output", str(out)]) == 2
    assert cli_error(capsys) == f"{out} exists; choose another --output or pass --overwrite"
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(xlt.errors.XltError, match="is not a language identifier written by xlt lid train"):
        load_identifier(tmp_path / "bad.npz")


def test_routed_rows_get_each_runs_own_predictions_from_one_mixed_batch(tmp_path, runs, data_dir, capsys):
    """The lang column routes; the three LoRA runs answer from one PEFT model (one English model, three adapters,
    per-row adapter_names), the FLARE run its own rows: each row's answer is its run's own (<= 1e-5)."""
    rows = _test_rows(data_dir)
    ordered = [runs[lang] for lang in (*LORA_LANGS, "ban")]
    capsys.readouterr()
    assert main(["predict", "--run-dirs", *map(str, ordered), "--input", str(_write_jsonl(tmp_path / "in.jsonl", rows)),
                 "--output", str(tmp_path / "out.jsonl"), "--no-show-progress"]) == 0
    assert capsys.readouterr().out == (f"24 predictions written to {tmp_path / 'out.jsonl'} ("
                                       + ", ".join(f"6 by {run}" for run in ordered) + ")\n")
    routed = _jsonl(tmp_path / "out.jsonl")
    assert [(r["id"], r["lang"], r["run"]) for r in routed] == [(row["id"], row["lang"], str(runs[row["lang"]]))
                                                                 for row in rows]
    assert all("lid_confidence" not in r for r in routed)
    for lang, run_dir in runs.items():
        mine = [r for r in routed if r["lang"] == lang]
        own = _own(run_dir, [row for row in rows if row["lang"] == lang])
        assert [r["label"] for r in mine] == [o["label"] for o in own]
        assert _largest_difference(mine, own) <= 1e-5
    ace_rows = [row for row in rows if row["lang"] == "ace"]  # the adapters differ: a wrong route would show
    assert _largest_difference(_own(runs["jv"], ace_rows), _own(runs["ace"], ace_rows)) > 1e-3


def test_one_peft_model_holds_the_lora_runs_and_grouped_batches_agree(runs, data_dir):
    routed = xlt.RoutedPredictor.from_run_dirs([runs[lang] for lang in (*LORA_LANGS, "ban")])
    (bank, banked), (single, alone) = sorted(routed.engines, key=lambda engine: -len(engine[1]))
    assert banked == {0, 1, 2} and alone == {3}
    assert sorted(bank.predictor.adapted.model.peft_config) == ["default", "run1", "run2"]
    assert type(single.predictor.adapted.model.peft_config["default"]).__name__ == "FlareConfig"
    rows = _test_rows(data_dir, LORA_LANGS, count=5, start=10)
    mixed = routed.predict(rows)
    routed.mixed_batches = False
    assert _largest_difference(routed.predict(rows), mixed) <= 1e-5


def test_the_identifier_routes_rows_without_a_lang_column(tmp_path, runs, data_dir, lid_file):
    rows = _test_rows(data_dir, LORA_LANGS, count=8, start=20)
    texts = [row["target_text"] for row in rows]
    (tmp_path / "mixed.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert main(["predict", "--run-dirs", *(str(runs[lang]) for lang in LORA_LANGS), "--lid", str(lid_file),
                 "--input", str(tmp_path / "mixed.txt"), "--output", str(tmp_path / "out.jsonl"),
                 "--no-show-progress"]) == 0
    routed = _jsonl(tmp_path / "out.jsonl")
    guesses = load_identifier(lid_file).predict(texts)
    assert [(r["lang"], r["lid_confidence"]) for r in routed] == [(lang, round(p, 6)) for lang, p in guesses]
    assert sum(r["lang"] == row["lang"] for r, row in zip(routed, rows)) >= 22  # of 24: the identifier is accurate
    for r, (lang, p) in zip(routed, guesses):
        wanted = runs[lang] if lang in LORA_LANGS and p >= 0.5 else runs[LORA_LANGS[0]]
        assert r["run"] == str(wanted)
    for run_dir in {r["run"] for r in routed}:
        mine = [r for r in routed if r["run"] == run_dir]
        assert _largest_difference(mine, _own(run_dir, [r["text"] for r in mine])) <= 1e-5


def test_unsure_and_unknown_languages_go_to_the_default_run(runs, data_dir, lid_file):
    rows = [{k: v for k, v in row.items() if k != "lang"} for row in _test_rows(data_dir, LORA_LANGS, count=6)]
    identifier = load_identifier(lid_file)
    confidences = sorted(p for _, p in identifier.predict([row["target_text"] for row in rows]))
    threshold = (confidences[8] + confidences[9]) / 2  # 9 rows below it
    rows.append({"target_text": rows[0]["target_text"], "lang": "su"})  # a language no run answers
    routed = xlt.RoutedPredictor.from_run_dirs([runs[lang] for lang in LORA_LANGS], lid=identifier,
                                               default_run=runs["bug"], min_confidence=threshold).predict(rows)
    unsure = [r for r in routed if r.get("lid_confidence", 1) < threshold]
    assert len(unsure) == 9 and all(r["run"] == str(runs["bug"]) for r in unsure)
    assert all(r["run"] == str(runs[r["lang"]]) for r in routed[:-1] if r["lid_confidence"] >= threshold
               and r["lang"] in LORA_LANGS)
    assert (routed[-1]["lang"], routed[-1]["run"]) == ("su", str(runs["bug"])) and "lid_confidence" not in routed[-1]
    assert _largest_difference(unsure, _own(runs["bug"], [r["text"] for r in unsure])) <= 1e-5


def _no_model_loads(monkeypatch):
    import xlt.runs.predict as predict
    import xlt.runs.rebuild as rebuild

    def fail(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(rebuild, "rebuild_model", fail)
    monkeypatch.setattr(predict, "rebuild_model", fail)


def test_bad_routing_is_refused_in_one_line_before_any_model_loads(tmp_path, runs, data_dir, capsys, monkeypatch):
    other = tmp_path / "xnli"
    assert main(["train", "--task", "xnli", "--target-lang", "sw", "--method", "lora", "--model", "tiny-random/bert",
                 "--max-train-examples", "8", "--max-eval-examples", "4", "--stage1-max-train-examples", "8",
                 "--epochs", "1", "--stage1-epochs", "1", "--batch-size", "4", "--lora-r", "4", "--no-show-progress",
                 "--output-dir", str(other)]) == 0
    _no_model_loads(monkeypatch)
    rows = _test_rows(data_dir, ("jv", "ban"), count=2)
    given = _write_jsonl(tmp_path / "in.jsonl", rows)
    (tmp_path / "plain.txt").write_text("Aku seneng banget\n", encoding="utf-8")
    capsys.readouterr()

    def refused(*argv: str, input_file=given) -> str:
        assert main(["predict", "--input", str(input_file), "--output", str(tmp_path / "out.jsonl"), *argv]) == 2
        return cli_error(capsys)

    ace, jv, ban = (str(runs[lang]) for lang in ("ace", "jv", "ban"))
    assert refused("--run-dirs", jv, str(other)) == (
        f"routed runs must share their task and labels: {jv} and {other} differ (task nusax vs xnli)")
    assert refused("--run-dir", jv, "--run-dirs", ace) == (
        "give --run-dir (one run) or --run-dirs (runs routed by language), not both")
    assert refused("--run-dirs", jv, ace, "--lid", str(tmp_path / "none.npz")) == (
        f"language identifier {tmp_path / 'none.npz'} does not exist (build one with xlt lid train --output "
        f"{tmp_path / 'none.npz'})")
    assert refused("--run-dirs", jv, ace, input_file=tmp_path / "plain.txt") == (
        "row 1 has no lang column; identify its language with --lid FILE (built by xlt lid train)")
    assert refused("--run-dir", jv, "--lid", "lid.npz") == (
        "--lid routes inputs between --run-dirs; with one --run-dir leave it out")
    assert refused("--run-dirs", jv, jv) == f"{jv} and {jv} both answer jv; give one run per language"
    assert refused("--run-dirs", jv, ace, "--default-run", ban) == f"--default-run {ban} is not one of --run-dirs"
    assert refused("--run-dirs", jv, ace, "--min-confidence", "1.5") == (
        "--min-confidence must be a probability between 0 and 1, got 1.5")
    no_english = _write_jsonl(tmp_path / "no-english.jsonl", [{k: v for k, v in row.items() if k != "source_text"}
                                                              for row in rows])
    assert refused("--run-dirs", jv, ban, input_file=no_english) == (
        f"row 3 goes to {ban} (flare), which reads the English version of each input: it has no source_text; add "
        "the column or translate with --translator MODEL")
    assert not (tmp_path / "out.jsonl").exists()
