"""xlt report: finished runs as one table of mean ± std over seeds, and each method against its baselines with a
paired bootstrap interval read from the runs' predictions.jsonl."""

import re

import pytest
from helpers import cli_error

from xlt.cli.main import main
from xlt.errors import XltError
from xlt.run_dir import write_run
from xlt.runs.report import find_runs, report
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
               "metrics": {"accuracy": right / len(GOLDS), "macro_f1": 0.0}}
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
