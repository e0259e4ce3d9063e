"""Metrics on hand-computed cases."""

import math

import pytest

from xlt.runs.report import FinishedRun, build_table, markdown_table
from xlt.runs.results import format_mean_std, gap_to_source, mean_std
from xlt.scoring.classification import accuracy, classification_metrics, macro_f1

# golds 0 0 0 1 1 2 / preds 0 0 1 1 2 2:
#   class 0: tp 2 fp 0 fn 1 -> F1 4/5;  class 1: tp 1 fp 1 fn 1 -> 1/2;  class 2: tp 1 fp 1 fn 0 -> 2/3
#   class 3 occurs in neither -> excluded.
GOLDS = [0, 0, 0, 1, 1, 2]
PREDS = [0, 0, 1, 1, 2, 2]


def test_accuracy_and_macro_f1():
    assert accuracy(PREDS, GOLDS) == pytest.approx(4 / 6)
    assert macro_f1(PREDS, GOLDS, num_labels=4) == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)
    assert classification_metrics(PREDS, GOLDS, 4) == {
        "accuracy": pytest.approx(4 / 6), "macro_f1": pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)}


def test_macro_f1_counts_a_gold_class_never_predicted_as_zero():
    # class 0: tp 1 fp 1 fn 0 -> 2/3; class 1: tp 0 fn 1 -> 0
    assert macro_f1([0, 0], [0, 1], 2) == pytest.approx(1 / 3)
    assert macro_f1([1, 1], [1, 1], 3) == 1.0


def test_length_mismatch():
    with pytest.raises(ValueError, match="2 predictions for 3 gold labels"):
        accuracy([0, 1], [0, 1, 2])


def test_mean_std():
    mean, std = mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and std == pytest.approx(math.sqrt(5 / 3))
    assert mean_std([0.7]) == (0.7, 0.0)


def test_gap_to_source():
    gap = gap_to_source(0.8, 0.6)
    assert gap["absolute"] == pytest.approx(0.2)
    assert gap["relative"] == pytest.approx(0.25)


def run(method, lang, seed, acc, fusion=None):
    return {"task": "nusax", "method": method, "fusion": fusion, "target_lang": lang, "seed": seed,
            "metrics": {"accuracy": acc, "macro_f1": acc - 0.1}}


def test_one_table_of_mean_and_std_per_method_and_language():
    """The report's table (xlt.runs.report), which the demo's summary prints too."""
    rows = [
        run("flare", "jv", 1, 0.80, fusion="add"), run("flare", "jv", 2, 0.82, fusion="add"),
        run("flare", "su", 1, 0.70, fusion="add"), run("flare", "su", 2, 0.74, fusion="add"),
        run("lora", "jv", 1, 0.75), run("lora", "su", 1, 0.65),
    ]
    runs = [FinishedRun.from_row(row) for row in rows]
    table = build_table(runs, "accuracy", samples=0, keep_order=True)
    assert len(table.cells) == 4 and table.comparisons == ()
    jv = table.cells["flare (add)", "jv"]
    assert jv.seeds == (1, 2) and jv.mean == pytest.approx(0.81) and jv.std == pytest.approx(math.sqrt(2) * 0.01)
    assert build_table(runs, "macro_f1", 0).cells["flare (add)", "jv"].mean == pytest.approx(0.71)

    assert markdown_table(table) == [
        "| method | jv | su | mean |",
        "|---|---:|---:|---:|",
        "| flare (add) | 0.810 ± 0.014 | 0.720 ± 0.028 | 0.765 |",
        "| lora | 0.750 | 0.650 | 0.700 |",
    ]
    assert "| lora | 0.650 | 0.550 | 0.600 |" in markdown_table(build_table(runs, "macro_f1", 0, keep_order=True))


def test_format_mean_std_shows_no_std_for_one_value():
    assert format_mean_std([0.7]) == "0.700"
    assert format_mean_std([0.8, 0.82]) == "0.810 ± 0.014"


def demo_row(method, lang, seed, acc, fusion=None, train=64, **extra):
    """A results.jsonl row as the demo writes it."""
    return {**run(method, lang, seed, acc, fusion), "train_examples": train, "test_examples": 80,
            "stage1_examples": {"train": 500, "test": 80}, "source_metrics": {"accuracy": 0.9 + seed / 100,
                                                                             "macro_f1": 0.85},
            "gap": {"accuracy": {"absolute": 0.9 + seed / 100 - acc}}, **extra}


def test_summary_of_one_seed_states_its_setup_and_shows_no_std():
    from xlt.runs.demo import summary_markdown

    rows = [demo_row("zero-shot", "jv", 0, 0.5, train=0), demo_row("translate-test", "jv", 0, 0.75, train=0),
            demo_row("lora", "jv", 0, 0.625), demo_row("lora", "su", 0, 0.6)]
    text = summary_markdown(rows, "tiny-random/bert", quick=True)
    assert "±" not in text  # never "± 0.000" for one seed
    lines = text.splitlines()
    assert lines[:7] == [
        "# xlt demo: NusaX sentiment, tiny-random/bert, English → target", "",
        "- 1 seed (0); one run per cell, no standard deviation",
        "- stage 1 (English): 500 training and 80 test examples",
        "- stage 2 (each target language): 64 training and 80 test examples",
        "- **`--quick` run**: fewer examples and epochs than the full demo; a smoke test, not results",
        "- translate-test reads the gold (human) English version of each test example, not a machine translation: "
        "an upper bound for translate-test",
    ]
    assert "| English (stage-1 model) |  |  | 0.900 | |" in lines  # the report's English row (demo and report alike)
    assert "| lora | 0.625 | 0.600 | 0.613 | 0.288 |" in lines  # gaps 0.275 and 0.300 (0.2875 in binary: 0.288)


def test_summary_of_three_seeds_shows_mean_and_std():
    from xlt.runs.demo import summary_markdown

    rows = [demo_row("lora", "jv", seed, acc, train=train) for seed, acc, train in ((0, 0.6, 64), (1, 0.7, 60),
                                                                                    (2, 0.8, 64))]
    text = summary_markdown(rows)
    lines = text.splitlines()
    assert lines[2:5] == ["- 3 seeds (0, 1, 2); cells are mean ± sample standard deviation over seeds",
                          "- stage 1 (English): 500 training and 80 test examples",
                          "- stage 2 (each target language): 60–64 training and 80 test examples"]
    assert "--quick" not in text and "translate-test" not in text
    assert "| English (stage-1 model) |  | 0.910 ± 0.010 | |" in lines
    assert "| lora | 0.700 ± 0.100 | 0.700 | 0.210 |" in lines  # gaps 0.300, 0.210, 0.120


def test_summary_says_when_sizes_were_not_recorded():
    from xlt.runs.demo import summary_markdown

    row = {k: v for k, v in demo_row("lora", "jv", 0, 0.6).items() if k != "stage1_examples"}
    assert "- stage 1 (English): example counts not recorded (runs of an older xlt)" in summary_markdown([row])


def test_the_demo_summary_prints_the_reports_table_and_intervals_against_lora_and_input_fusion(tmp_path):
    """One implementation: the demo's tables and paired intervals are xlt report's on the same runs."""
    from xlt.run_dir import write_run
    from xlt.runs.demo import summary_markdown
    from xlt.runs.report import find_runs, report

    golds = ["positive", "negative"] * 20
    rows = []
    for seed in (0, 1):
        for method, fusion, right in (("lora", None, 20), ("input-fusion", None, 30), ("flare", "add_relu", 34)):
            right += 2 * seed
            row = {**demo_row(method, "jv", seed, right / 40, fusion), "output_dir": str(tmp_path / f"{method}{seed}")}
            predictions = [{"id": str(i), "gold": g, "prediction": g if i < right else "neutral"}
                           for i, g in enumerate(golds)]
            write_run(row["output_dir"], {}, row, None, predictions)
            rows.append(row)
    text = summary_markdown(rows, samples=200)
    ours = report(find_runs([tmp_path]), samples=200)
    comparisons = [line for line in ours.splitlines() if " − " in line]
    assert [line.split(" |")[0] for line in comparisons] == [
        "| input-fusion − lora", "| flare (add_relu) − lora", "| flare (add_relu) − input-fusion"]
    section = text.split("## accuracy")[1].split("## macro_f1")[0]
    assert "| flare (add_relu) | 0.875 ± 0.035 | 0.875 |" in section  # 34/40 and 36/40
    assert all(line in section.splitlines() for line in comparisons)
    assert "(200 samples)" in section and "+0.350 [" in section  # flare − lora: (34 + 36 - 20 - 22) / 80
    assert " − " not in summary_markdown(rows, samples=0).split("## macro_f1")[0]  # no intervals asked: none
