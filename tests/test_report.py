"""xlt report: finished runs as one table of mean ± std over seeds, and each method against its baselines with a
paired bootstrap interval read from the runs' predictions.jsonl."""

import re

import pytest
from helpers import cli_error

from xlt.cli.main import main
from xlt.errors import XltError
from xlt.run_dir import write_run
from xlt.runs.report import FORMATS, comparison_pairs, find_runs, latex_escape, report
from xlt.scoring.bootstrap import accuracy_metric, paired_bootstrap

GOLDS = ["positive", "negative"] * 20  # 40 test examples


def _predictions(right: int) -> list[dict]:
    """The first ``right`` examples right, the rest wrong."""
    flip = {"positive": "negative", "negative": "positive"}
    return [{"id": f"row-{i}", "gold": g, "prediction": g if i < right else flip[g], "score": 0.9}
            for i, g in enumerate(GOLDS)]


def _run(root, method, lang, seed, right, fusion=None, predictions=True):
    rows = _predictions(right)
    metrics = {"task": "nusax", "method": method, "fusion": fusion, "target_lang": lang, "seed": seed,
               "metrics": {"accuracy": right / len(GOLDS), "macro_f1": 0.0},
               "gap": {"accuracy": {"absolute": 0.9 - right / len(GOLDS)}}}  # the English model's accuracy 0.9
    write_run(root / f"{lang}-{method}-seed{seed}", {"method": method}, metrics, None, rows if predictions else None)


@pytest.fixture
def study(tmp_path):
    for seed, shift in ((0, 0), (1, 2)):
        for lang in ("ace", "jv"):
            _run(tmp_path, "lora", lang, seed, 20 + shift)
            _run(tmp_path, "input-fusion", lang, seed, 30 + shift)
            _run(tmp_path, "flare", lang, seed, 36 + shift, fusion="add_relu")
    return tmp_path


def test_the_report_has_one_cell_per_method_and_language_and_intervals_per_comparison(study):
    text = report(find_runs([study]), samples=300)
    assert "| lora | 0.525 ± 0.035 | 0.525 ± 0.035 |" in text  # 20/40 and 22/40
    assert "| flare (add_relu) | 0.925 ± 0.035 | 0.925 ± 0.035 |" in text
    comparisons = re.findall(r"^\| (\S.*?) \| (.*) \| (.*) \|$", text.split("Differences")[1], re.M)[1:]
    assert [c[0] for c in comparisons] == ["input-fusion − lora", "flare (add_relu) − lora",
                                           "flare (add_relu) − input-fusion"]
    expected = paired_bootstrap(accuracy_metric, GOLDS, [[r["prediction"] for r in _predictions(n)] for n in (36, 38)],
                                [[r["prediction"] for r in _predictions(n)] for n in (20, 22)], samples=300)
    cell = f"{expected.observed:+.3f} [{expected.low:+.3f}, {expected.high:+.3f}]*"
    assert comparisons[1][1] == comparisons[1][2] == cell and expected.observed == pytest.approx(0.4)


def test_runs_without_predictions_get_no_interval_and_other_test_sets_are_refused(tmp_path):
    _run(tmp_path, "lora", "jv", 0, 20, predictions=False)
    _run(tmp_path, "flare", "jv", 0, 30, fusion="add_relu")
    assert "| flare (add_relu) − lora | n/a |" in report(find_runs([tmp_path]), samples=50)
    other = tmp_path / "other"
    _run(other, "lora", "jv", 0, 20)
    rows = (other / "jv-lora-seed0" / "predictions.jsonl").read_text().replace('"row-0"', '"row-x"')
    (other / "jv-lora-seed0" / "predictions.jsonl").write_text(rows)
    _run(other, "flare", "jv", 0, 30, fusion="add_relu")
    with pytest.raises(XltError, match="was tested on other examples than"):
        report(find_runs([other]), samples=50)


def test_the_cli_prints_and_writes_the_report_and_refuses_a_folder_without_runs(study, tmp_path, capsys):
    out = tmp_path / "report.md"
    assert main(["report", str(study), "--samples", "100", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("## nusax: accuracy, mean ± std over seeds") and out.read_text() == printed
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert cli_error(capsys) == f"no finished xlt run under {empty}"


def _expected(method: tuple[int, int], baseline: tuple[int, int], samples: int):
    """The paired bootstrap of the fixture's runs: seeds 0 and 1 with ``method`` / ``baseline`` examples right."""
    predictions = lambda rights: [[r["prediction"] for r in _predictions(n)] for n in rights]  # noqa: E731
    return paired_bootstrap(accuracy_metric, GOLDS, predictions(method), predictions(baseline), samples=samples)


COMPARED = (("input-fusion", "lora", (30, 32), (20, 22)), ("flare (add_relu)", "lora", (36, 38), (20, 22)),
            ("flare (add_relu)", "input-fusion", (36, 38), (30, 32)))


def test_csv_has_a_row_per_task_language_and_method_and_per_comparison(study):
    lines = report(find_runs([study]), samples=200, fmt="csv").splitlines()
    assert lines[:7] == [
        "row,task,metric,language,method,baseline,mean,std,seeds,gap_to_english,difference,low,high,significant",
        "mean,nusax,accuracy,ace,lora,,0.525000,0.035355,2,0.375000,,,,",  # 20/40 and 22/40; 0.9 - 0.525
        "mean,nusax,accuracy,jv,lora,,0.525000,0.035355,2,0.375000,,,,",
        "mean,nusax,accuracy,ace,input-fusion,,0.775000,0.035355,2,0.125000,,,,",
        "mean,nusax,accuracy,jv,input-fusion,,0.775000,0.035355,2,0.125000,,,,",
        "mean,nusax,accuracy,ace,flare (add_relu),,0.925000,0.035355,2,-0.025000,,,,",
        "mean,nusax,accuracy,jv,flare (add_relu),,0.925000,0.035355,2,-0.025000,,,,"]
    differences = []
    for method, baseline, a, b in COMPARED:
        d = _expected(a, b, 200)
        differences += [f"difference,nusax,accuracy,{lang},{method},{baseline},,,,,{d.observed:.6f},{d.low:.6f},"
                        f"{d.high:.6f},{str(d.excludes_zero).lower()}" for lang in ("ace", "jv")]
    assert lines[7:] == differences and len(differences) == 6
    assert lines[9].startswith("difference,nusax,accuracy,ace,flare (add_relu),lora,,,,,0.400000,")


def test_latex_is_a_booktabs_tabular_of_the_table_and_of_the_intervals(study):
    text = report(find_runs([study]), samples=200, fmt="latex")
    cells = []
    for method, baseline, a, b in COMPARED:
        d = _expected(a, b, 200)
        cell = f"${d.observed:+.3f}{'^*' if d.excludes_zero else ''}$ [${d.low:+.3f}$, ${d.high:+.3f}$]"
        cells.append(f"{method.replace('_', chr(92) + '_')} $-$ {baseline} & {cell} & {cell} \\\\")
    assert text.splitlines() == [
        "% nusax: accuracy, mean and sample standard deviation over seeds",
        r"\begin{tabular}{lrrr}", r"\toprule", r"method & ace & jv & mean \\", r"\midrule",
        r"lora & 0.525 $\pm$ 0.035 & 0.525 $\pm$ 0.035 & 0.525 \\",
        r"input-fusion & 0.775 $\pm$ 0.035 & 0.775 $\pm$ 0.035 & 0.775 \\",
        r"flare (add\_relu) & 0.925 $\pm$ 0.035 & 0.925 $\pm$ 0.035 & 0.925 \\",
        r"\bottomrule", r"\end{tabular}", "",
        "% nusax: differences in accuracy, 95 percent paired bootstrap intervals over test examples and seeds "
        "(200 samples); * the interval excludes 0",
        r"\begin{tabular}{lrr}", r"\toprule", r"comparison & ace & jv \\", r"\midrule", *cells,
        r"\bottomrule", r"\end{tabular}"]
    assert cells[1].startswith(r"flare (add\_relu) $-$ lora & $+0.400^*$ [")  # +0.4, beyond noise: marked
    assert latex_escape("a_b & 5% ± 1 − 2 #$") == r"a\_b \& 5\% $\pm$ 1 $-$ 2 \#\$"


def test_the_markdown_table_has_a_mean_over_languages_and_a_dash_for_a_missing_cell(tmp_path):
    _run(tmp_path, "lora", "ace", 0, 20)
    _run(tmp_path, "lora", "jv", 0, 30)
    _run(tmp_path, "flare", "jv", 0, 36, fusion="mul")
    lines = report(find_runs([tmp_path]), samples=50).splitlines()
    assert lines[:6] == ["## nusax: accuracy, mean ± std over seeds", "", "| method | ace | jv | mean | gap to English |",
                         "|---|---:|---:|---:|---:|", "| lora | 0.500 | 0.750 | 0.625 | 0.275 |",
                         "| flare (mul) | – | 0.900 | 0.900 | 0.000 |"]


def test_flare_with_any_fusion_is_compared_with_lora_and_input_fusion(tmp_path):
    methods = ["zero-shot", "lora", "input-fusion", "flare (add_relu)", "flare (mul)", "flare (cross_attention)"]
    assert comparison_pairs(methods) == [
        ("zero-shot", "lora"), ("input-fusion", "lora"),
        ("flare (add_relu)", "lora"), ("flare (add_relu)", "input-fusion"),
        ("flare (mul)", "lora"), ("flare (mul)", "input-fusion"),
        ("flare (cross_attention)", "lora"), ("flare (cross_attention)", "input-fusion")]
    assert comparison_pairs(["flare (mul)", "input-fusion"]) == [("flare (mul)", "input-fusion")]  # no lora run
    for fusion, right in (("add_relu", 36), ("mul", 34)):
        _run(tmp_path / fusion, "flare", "jv", 0, right, fusion=fusion)
    _run(tmp_path, "lora", "jv", 0, 20)
    _run(tmp_path, "input-fusion", "jv", 0, 30)
    labels = re.findall(r"^\| (flare \(\w+\) − [\w-]+) \|", report(find_runs([tmp_path]), samples=50), re.M)
    assert labels == ["flare (add_relu) − lora", "flare (add_relu) − input-fusion", "flare (mul) − lora",
                      "flare (mul) − input-fusion"]


def test_the_cli_writes_each_format_and_refuses_another(study, tmp_path, capsys):
    from xlt.cli.report import FORMATS as CLI_FORMATS

    assert CLI_FORMATS == FORMATS
    for fmt in FORMATS:
        out = tmp_path / f"report.{fmt}"
        assert main(["report", str(study), "--samples", "20", "--format", fmt, "--output", str(out)]) == 0
        assert capsys.readouterr().out == out.read_text() == report(find_runs([study]), samples=20, fmt=fmt)
    assert main(["report", str(study), "--format", "html"]) == 2
    assert "argument --format: invalid choice: 'html'" in capsys.readouterr().err
    with pytest.raises(XltError, match="unknown report format 'html'; choose one of: markdown, csv, latex"):
        report(find_runs([study]), samples=20, fmt="html")


# generation: corpus metrics recomputed on each draw

WORDS = "river house bird stone market child rain road song lamp".split()
REFERENCES = [f"the {WORDS[i % 10]} near the {WORDS[(3 * i + 1) % 10]} saw a {WORDS[(7 * i + 2) % 10]} at {i} today"
              for i in range(40)]


def _degraded(keep_every: int, offset: int = 0) -> list[str]:
    """Each reference with every ``keep_every``-th word dropped (where it falls depends on the sentence and
    ``offset``)."""
    return [" ".join(w for k, w in enumerate(r.split()) if (k + i + offset) % keep_every)
            for i, r in enumerate(REFERENCES)]


def _generation_run(root, task, method, outputs, golds, metrics, seed=0):
    rows = [{"id": f"s{i}", "gold": g, "prediction": p} for i, (g, p) in enumerate(zip(golds, outputs))]
    write_run(root / f"{method}-seed{seed}", {"method": method},
              {"task": task, "method": method, "fusion": None, "target_lang": "jv", "seed": seed,
               "metrics": metrics(outputs, golds)}, None, rows)


def test_translation_is_bootstrapped_as_corpus_chrf_and_a_perfect_system_beats_an_empty_one_by_100(tmp_path):
    from xlt.scoring.generation import translation_metrics

    _generation_run(tmp_path, "nusax-mt", "flare", REFERENCES, REFERENCES, translation_metrics)
    _generation_run(tmp_path, "nusax-mt", "lora", [""] * len(REFERENCES), REFERENCES, translation_metrics)
    text = report(find_runs([tmp_path]), samples=100)
    assert text.startswith("## nusax-mt: chrf, mean ± std over seeds")  # translation leads with chrF
    assert "| lora | 0.000 | 0.000 |" in text and "| flare | 100.000 | 100.000 |" in text
    assert "| flare − lora | +100.000 [+100.000, +100.000]* |" in text  # every draw: 100 - 0


def test_corpus_statistics_of_a_draw_are_sacrebleus_corpus_score_of_that_draw():
    import numpy as np
    from sacrebleu.metrics import BLEU, CHRF

    from xlt.scoring.generation import translation_statistics

    hypotheses = _degraded(3)
    draw = np.random.default_rng(1).integers(0, len(REFERENCES), len(REFERENCES))
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF())):
        statistics, corpus = translation_statistics(name)
        rows = statistics(hypotheses, REFERENCES)
        expected = metric.corpus_score([hypotheses[i] for i in draw], [[REFERENCES[i] for i in draw]]).score
        assert corpus(np.sum([rows[i] for i in draw], axis=0)) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("a, b, real", [((4, 0), (2, 0), True), ((4, 0), (4, 1), False)])
def test_the_chrf_interval_agrees_with_sacrebleus_paired_bootstrap(tmp_path, a, b, real):
    """System A drops every 4th word, B every 2nd (a real difference) or every 4th at other places (noise); the
    report's interval excludes 0 exactly where sacreBLEU's paired bootstrap calls the difference significant."""
    from sacrebleu.metrics import CHRF
    from sacrebleu.significance import PairedTest

    from xlt.scoring.generation import translation_metrics

    a, b = _degraded(*a), _degraded(*b)
    _generation_run(tmp_path, "nusax-mt", "flare", a, REFERENCES, translation_metrics)
    _generation_run(tmp_path, "nusax-mt", "lora", b, REFERENCES, translation_metrics)
    cell = re.search(r"^\| flare − lora \| (.*) \|$", report(find_runs([tmp_path]), samples=1000), re.M)[1]
    _, scores = PairedTest([("lora", b), ("flare", a)], {"chrf": CHRF()}, [REFERENCES], test_type="bs",
                           n_samples=1000)()
    baseline, system = scores["chrF2"]
    assert float(cell.split()[0]) == pytest.approx(system.score - baseline.score, abs=5e-4)
    assert cell.endswith("*") == real == (system.p_value < 0.05)


def test_slot_filling_is_bootstrapped_with_its_slot_f1(tmp_path):
    from xlt.scoring.generation import slot_metrics

    golds = [f"date: day {i}; place: {WORDS[i % 10]}" for i in range(30)]
    half = [g if i % 2 else f"date: day {i}" for i, g in enumerate(golds)]
    _generation_run(tmp_path, "massive", "flare", golds, golds, slot_metrics)
    _generation_run(tmp_path, "massive", "lora", half, golds, slot_metrics)
    text = report(find_runs([tmp_path]), samples=100, fmt="csv")
    difference = next(line for line in text.splitlines() if line.startswith("difference,"))
    observed = 1.0 - slot_metrics(half, golds)["slot_f1"]  # 45 of 60 pairs right, none wrong: F1 = 6/7
    assert difference.startswith(f"difference,massive,slot_f1,jv,flare,lora,,,,,{observed:.6f},")
    assert observed == pytest.approx(1 - 6 / 7) and difference.endswith(",true")


def test_a_runs_scores_name_the_generation_metric_that_made_them():
    from xlt.scoring.generation import GEN_METRICS, MAIN_SCORE, SCORES, metric_of_scores

    examples = {"slots": (["date: x"], ["date: x"]), "intent": (["a"], ["a"]), "json_ner": (["[]"], ["[]"]),
                "mt": (["a b"], ["a b"]), "qa": (["x"], [("x",)])}
    assert set(examples) == set(GEN_METRICS)
    for name, (preds, golds) in examples.items():
        assert tuple(GEN_METRICS[name](preds, golds)) == SCORES[name]
        assert metric_of_scores(reversed(SCORES[name])) == name and MAIN_SCORE[name] in SCORES[name]
    assert metric_of_scores(["accuracy", "macro_f1"]) is None


def test_each_run_is_scored_against_its_own_golds(tmp_path):
    """translate-test's rows hold the English version of each example and its English gold (tagging: other words,
    other tags); pairing by example must not score the baseline against the method's golds."""
    from xlt.scoring.entities import tagging_metrics

    english = [["B-PER", "O", "O"], ["O", "B-LOC"]] * 10
    target = [["B-PER", "O"], ["O", "O", "B-LOC", "O"]] * 10
    for method, golds, preds in (("translate-test", english, english),
                                 ("lora", target, [["O"] * len(g) for g in target])):
        rows = [{"id": str(i), "gold": g, "prediction": p} for i, (g, p) in enumerate(zip(golds, preds))]
        write_run(tmp_path / method, {}, {"task": "uner", "method": method, "fusion": None, "target_lang": "de",
                                          "seed": 0, "metrics": tagging_metrics(preds, golds)}, None, rows)
    assert "| translate-test − lora | +1.000 [+1.000, +1.000]* |" in report(find_runs([tmp_path]), samples=50)


# plots


def test_plots_are_pngs_of_the_table_and_of_the_gap_to_lora(study, tmp_path, capsys):
    import math

    import matplotlib.image

    from xlt.runs.report import build_tables
    from xlt.runs.report_plots import gap_matrix

    out = tmp_path / "plots"
    assert main(["report", str(study), "--samples", "50", "--plots", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["nusax-accuracy-vs-lora.png", "nusax-accuracy.png"]
    assert capsys.readouterr().err == f"wrote {out / 'nusax-accuracy.png'}, {out / 'nusax-accuracy-vs-lora.png'}\n"
    for png in out.iterdir():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
        height, width, channels = matplotlib.image.imread(png).shape
        assert height > 100 and width > 100 and channels == 4
    matrix = gap_matrix(build_tables(find_runs([study]), samples=50)[0])
    assert (matrix.methods, matrix.languages) == (("input-fusion", "flare (add_relu)"), ("ace", "jv"))
    assert matrix.values == (pytest.approx((0.25, 0.25)), pytest.approx((0.4, 0.4)))  # 0.775 and 0.925 - 0.525
    assert matrix.significant == ((True, True), (True, True))
    _run(tmp_path / "more", "zero-shot", "jv", 0, 19)  # only jv: nan for ace; 19 vs lora's 20 is noise
    matrix = gap_matrix(build_tables(find_runs([study, tmp_path / "more"]), samples=50)[0])
    assert matrix.methods[0] == "zero-shot" and math.isnan(matrix.values[0][0])
    assert matrix.values[0][1] == pytest.approx(19 / 40 - 0.525) and matrix.significant[0] == (False, False)
    assert gap_matrix(build_tables(find_runs([study / "jv-flare-seed0"]), samples=50)[0]) is None  # no lora


def test_plots_without_matplotlib_are_one_line_naming_the_extra(study, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    assert main(["report", str(study), "--plots", str(tmp_path / "plots")]) == 2
    assert cli_error(capsys) == '--plots needs matplotlib: pip install "xlt[plots]"'
    assert not (tmp_path / "plots").exists()


def test_the_table_has_the_english_models_row_flares_zeroed_row_and_the_gap_to_english(tmp_path):
    for seed, english in ((0, 0.9), (1, 0.8)):
        for lang in ("ace", "jv"):
            metrics = {"task": "nusax", "method": "flare", "fusion": "add", "target_lang": lang, "seed": seed,
                       "metrics": {"accuracy": 0.75}, "metrics_zero_source": {"accuracy": 0.5},
                       "source_metrics": {"accuracy": english}, "stage1_dir": f"/stage1/seed{seed}",
                       "gap": {"accuracy": {"absolute": english - 0.75}}}
            write_run(tmp_path / f"{lang}-{seed}", {"method": "flare"}, metrics, None, _predictions(30))
    lines = report(find_runs([tmp_path]), samples=20).splitlines()
    assert lines[2] == "| method | ace | jv | mean | gap to English |"
    assert lines[4] == "| English (stage-1 model) |  |  | 0.850 ± 0.071 | |"  # one score per English model, not per run
    assert lines[5] == "| flare (add) | 0.750 ± 0.000 | 0.750 ± 0.000 | 0.750 | 0.100 |"
    assert lines[6] == "| flare (add), English zeroed at test | 0.500 ± 0.000 | 0.500 ± 0.000 | 0.500 | – |"
    assert not any("zeroed at test −" in line or "− flare (add), English" in line for line in lines)


def test_runs_of_another_source_get_their_own_rows_and_are_compared_within_their_source(tmp_path):
    """Settings besides the cell's axes that differ between runs (here the English source) label the rows: runs of
    another source are never averaged into one cell, and FLARE meets the input-fusion of its own source."""
    for source, shift in (("gold", 8), ("pivot:id", 0)):
        for method, right in (("input-fusion", 30), ("flare", 26)):
            metrics = {"task": "nusax", "method": method, "fusion": "add" if method == "flare" else None,
                       "target_lang": "ace", "seed": 0, "metrics": {"accuracy": (right + shift) / 40}}
            config = {"method": method, "source_from": source, "seed": 0, "output_dir": f"/x/{source}-{method}"}
            write_run(tmp_path / f"{source}-{method}", config, metrics, None, _predictions(right + shift))
    text = report(find_runs([tmp_path]), samples=50)
    assert "| input-fusion [source_from=gold] | 0.950 | 0.950 |" in text
    assert "| flare (add) [source_from=pivot:id] | 0.650 | 0.650 |" in text
    comparisons = [row.split(" | ")[0] for row in text.split("Differences")[1].splitlines() if " − " in row]
    assert comparisons == ["| flare (add) [source_from=gold] − input-fusion [source_from=gold]",
                           "| flare (add) [source_from=pivot:id] − input-fusion [source_from=pivot:id]"]


def test_two_runs_of_one_cell_and_seed_are_refused_instead_of_one_hiding_the_other(tmp_path):
    _run(tmp_path, "lora", "jv", 0, 20)
    _run(tmp_path / "copy", "lora", "jv", 0, 22)
    with pytest.raises(XltError, match=rf"lora on jv has 2 runs of seed 0 with the same settings \({tmp_path}"):
        report(find_runs([tmp_path]), samples=20)
