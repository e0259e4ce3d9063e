"""--source-from: stage 1 stays on the English side; stage 2 reads or fuses another version of each example."""

import csv
import json

import pytest

from xlt.cli import main
from xlt.config import RunConfig
from xlt.errors import XltError
from xlt.stage1 import load_data
from xlt.data.tasks import resolve_data_dir


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
    ("pivot", "source_from must be gold or pivot:LANG, got 'pivot'"),
    ("silver", "source_from must be gold or pivot:LANG, got 'silver'"),
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
