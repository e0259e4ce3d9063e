"""Adding a data set is one module and one row (docs/new-dataset.md): a toy classification set with a parallel
English side, registered from outside xlt, runs zero-shot, lora and flare end to end."""

import csv
import importlib.util
import json
import sys

import pytest

from xlt.cli import main
from xlt.config import RunConfig
from xlt.data.examples import TaskData
from xlt.data.registry import TASKS, TaskSpec, get_task, load_task, register_task
from xlt.errors import XltError

# the new module, as docs/new-dataset.md shows it: xlt/data/sets/toy.py, or any module of the user's
TOY_MODULE = '''
"""Task ``toy``: two labels, one CSV per split (toy/train.csv, toy/test.csv) with one text column per language."""

from pathlib import Path

from xlt.data.examples import Example, TaskData
from xlt.data.formats.user_file import read_table
from xlt.errors import XltError
from xlt.languages import canonical_code

LABELS = ("no", "yes")
LANGUAGES = {"en": "en", "jv": "jv"}  # canonical code -> the column holding that language's text


def load(root: Path, target_lang: str, source_lang: str = "en") -> TaskData:
    target, source = canonical_code(target_lang), canonical_code(source_lang)
    for code in (target, source):
        if code not in LANGUAGES:
            raise XltError(f"task toy has no language {code!r}; supported: {', '.join(LANGUAGES)}")
    splits = {}
    for split in ("train", "test"):
        path = root / "toy" / f"{split}.csv"
        rows = read_table(path, ("id", "label", LANGUAGES[target], LANGUAGES[source]))
        for row_no, r in enumerate(rows, 1):
            if r["label"] not in LABELS:
                raise XltError(f"{path}: row {row_no} has label {r['label']!r}, expected one of {LABELS}")
        splits[split] = [Example((r[LANGUAGES[target]],), (r[LANGUAGES[source]],), LABELS.index(r["label"]), r["id"])
                         for r in rows]
    return TaskData("toy", LABELS, source, target, splits["train"], [], splits["test"])
'''

TRAIN, TEST = 40, 16


def _write_toy_data(root):
    """40 training and 16 test rows; the label shows in the text (good/apik: yes, bad/ala: no)."""
    folder = root / "toy"
    folder.mkdir(parents=True)
    for split, count, start in (("train", TRAIN, 0), ("test", TEST, TRAIN)):
        with (folder / f"{split}.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["id", "label", "en", "jv"])
            writer.writeheader()
            for i in range(start, start + count):
                yes = i % 2 == 0
                writer.writerow({"id": f"t{i}", "label": "yes" if yes else "no",
                                 "en": f"this one is {'good' if yes else 'bad'}, number {i}",
                                 "jv": f"iki {'apik' if yes else 'ala'}, nomer {i}"})


def _import_module(path):
    spec = importlib.util.spec_from_file_location("toy_data_set", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def toy(tmp_path):
    """The new module written and imported, its data under tmp_path/data, and its one row registered."""
    (tmp_path / "toy_data_set.py").write_text(TOY_MODULE, encoding="utf-8")
    module = _import_module(tmp_path / "toy_data_set.py")
    _write_toy_data(tmp_path / "data")
    register_task(TaskSpec("toy", module.load, "classification", "a two-label toy set, parallel by id",
                             languages=module.LANGUAGES))
    yield tmp_path / "data"
    del TASKS["toy"]
    sys.modules.pop("toy_data_set", None)


def test_the_registered_row_loads_and_is_a_task_like_the_others(toy):
    data = load_task("toy", "javanese", data_dir=toy)
    assert isinstance(data, TaskData) and (len(data.train), len(data.test)) == (TRAIN, TEST)
    assert data.test[0].target == ("iki apik, nomer 40",) and data.test[0].source == ("this one is good, number 40",)
    assert [ex.label for ex in data.test[:2]] == [1, 0] and data.target_lang == "jv"
    assert get_task("toy").stage1_budget is None and RunConfig(task="toy").stage1_epochs == 4
    with pytest.raises(XltError, match="^task toy has no language 'de'; supported: en, jv$"):
        load_task("toy", "de", data_dir=toy)
    assert get_task("toy").refuses == ()  # parallel sentence classification: every method runs on it
    assert RunConfig(task="toy", method="x-mixup").task == "toy"


@pytest.mark.parametrize("method", ["zero-shot", "lora", "flare"])
def test_the_toy_set_runs_end_to_end(toy, tmp_path, method):
    out = tmp_path / method
    args = ["train", "--task", "toy", "--data-dir", str(toy), "--target-lang", "jv", "--method", method,
            "--model", "tiny-random/bert", "--epochs", "1", "--stage1-epochs", "1", "--batch-size", "8",
            "--max-length", "16", "--lora-r", "4", "--lora-alpha", "8", "--no-show-progress",
            "--output-dir", str(out)]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["task"], metrics["method"], metrics["target_lang"]) == ("toy", method, "jv")
    assert metrics["test_examples"] == TEST
    assert 0.0 <= metrics["metrics"]["accuracy"] <= 1.0
    if method == "flare":
        assert 0.0 <= metrics["metrics_zero_source"]["accuracy"] <= 1.0
    else:
        assert "metrics_zero_source" not in metrics
    if method != "zero-shot":
        assert metrics["train_examples"] == TRAIN


def test_without_the_row_the_task_is_unknown(tmp_path, capsys):
    assert "toy" not in TASKS
    assert main(["train", "--task", "toy", "--output-dir", str(tmp_path / "run")]) == 2
    assert "invalid choice: 'toy'" in capsys.readouterr().err


def test_the_docs_show_this_module():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "new-dataset.md").read_text(encoding="utf-8")
    shown = doc.split("```python\n")[1].split("```")[0]
    assert shown.strip() == TOY_MODULE.strip()
    assert 'register_task(TaskSpec("toy", toy.load, "classification", "a two-label toy set, parallel by id",' in doc
