"""``xlt predict`` and ``xlt.Predictor``: a finished run's predictions on the user's rows are the ones ``xlt
evaluate`` computes for the same rows (the run's predictions.jsonl), for every kind; bad input is refused in
one line before any model loads."""

import csv
import json

import pytest
import yaml
from helpers import cli_error

import xlt
from xlt.cli.main import main
from xlt.data.registry import load_task
from xlt.run_dir import read_predictions
from xlt.scoring.classification import accuracy

QUICK = ["--task", "nusax", "--target-lang", "jv", "--max-train-examples", "24", "--max-eval-examples", "20",
         "--epochs", "1", "--stage1-epochs", "1", "--stage1-max-train-examples", "24", "--lora-r", "4",
         "--lora-alpha", "8", "--batch-size", "8", "--no-show-progress", "--model", "tiny-random/bert"]
LABELS = ("negative", "neutral", "positive")


@pytest.fixture(scope="module")
def nusax_runs(tmp_path_factory):
    """Tiny NusaX runs by method, trained on first use."""
    root, done = tmp_path_factory.mktemp("runs"), {}

    def run(method: str):
        if method not in done:
            assert main(["train", *QUICK, "--method", method, "--output-dir", str(root / method)]) == 0
            done[method] = root / method
        return done[method]

    return run


def _test_rows_csv(path, data_dir):
    """NusaX's jv test rows the runs were tested on (no training split holds them), as the user's CSV."""
    test = load_task("nusax", "jv", data_dir=data_dir).test[:20]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "target_text", "source_text"])
        writer.writerows([ex.id, ex.target[0], ex.source[0]] for ex in test)
    return path


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("method", ["lora", "flare", "input-fusion"])
def test_predict_on_test_rows_gives_the_runs_own_predictions_and_accuracy(tmp_path, nusax_runs, data_dir, method,
                                                                           capsys):
    run_dir = nusax_runs(method)
    rows_in = _test_rows_csv(tmp_path / "new.csv", data_dir)
    capsys.readouterr()
    assert main(["predict", "--run-dir", str(run_dir), "--input", str(rows_in), "--output",
                 str(tmp_path / "out.jsonl"), "--no-show-progress"]) == 0
    assert capsys.readouterr().out == f"20 predictions written to {tmp_path / 'out.jsonl'}\n"
    predicted, stored = _jsonl(tmp_path / "out.jsonl"), read_predictions(run_dir)
    assert [p["id"] for p in predicted] == [s["id"] for s in stored]
    assert [p["label"] for p in predicted] == [s["prediction"] for s in stored]
    assert max(abs(p["probability"] - s["score"]) for p, s in zip(predicted, stored)) <= 1e-6
    assert all(set(p) == {"id", "text", "label", "probability", "probabilities"} for p in predicted)
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-5 for p in predicted)
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    golds = [LABELS.index(s["gold"]) for s in stored]
    assert accuracy([LABELS.index(p["label"]) for p in predicted], golds) == pytest.approx(metrics["accuracy"])


def test_the_python_predictor_and_the_csv_output_give_the_same_predictions(tmp_path, nusax_runs, data_dir):
    run_dir = nusax_runs("lora")
    assert main(["predict", "--run-dir", str(run_dir), "--input", str(_test_rows_csv(tmp_path / "in.csv", data_dir)),
                 "--output", str(tmp_path / "out.csv"), "--no-show-progress"]) == 0
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["id", "text", "label", "probability", *(f"probability_{lab}" for lab in LABELS)]
    stored = read_predictions(run_dir)
    test = load_task("nusax", "jv", data_dir=data_dir).test[:20]
    predictor = xlt.Predictor.from_run_dir(run_dir)
    rows = predictor.predict([ex.target[0] for ex in test])  # plain strings: lora reads the target text only
    assert [r["label"] for r in rows] == [t["label"] for t in table] == [s["prediction"] for s in stored]
    assert [r["probability"] for r in rows] == [float(t["probability"]) for t in table]
    assert "id" not in rows[0] and rows[0]["text"] == test[0].target[0]
    assert predictor.predict([]) == []


def test_flare_takes_its_english_from_a_translator(tmp_path, nusax_runs, data_dir):
    """--translator writes the English side a row lacks: the same predictions as that English given in a column."""
    from xlt.mt.factory import load_translator

    predictor = xlt.Predictor.from_run_dir(nusax_runs("flare"), translator="lexicon",
                                           translation_cache=str(tmp_path / "mt.sqlite"))
    texts = [ex.target[0] for ex in load_task("nusax", "jv", data_dir=data_dir).test[:6]]
    english = load_translator("lexicon", data_dir=str(data_dir)).translate(texts, "jv", "en")
    translated = predictor.predict(texts)
    given = predictor.predict([{"target_text": t, "source_text": e} for t, e in zip(texts, english)])
    assert translated == given and len(translated) == 6


def _no_model_loads(monkeypatch):
    import xlt.runs.predict as predict
    import xlt.runs.rebuild as rebuild

    def fail(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(rebuild, "rebuild_model", fail)
    monkeypatch.setattr(predict, "rebuild_model", fail)


def test_flare_without_an_english_side_is_refused_before_any_model_loads(tmp_path, nusax_runs, capsys, monkeypatch):
    run_dir = nusax_runs("flare")
    _no_model_loads(monkeypatch)
    (tmp_path / "in.txt").write_text("Iya bener, deknen lagi jaga warung.\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", "--run-dir", str(run_dir), "--input", str(tmp_path / "in.txt"), "--output",
                 str(tmp_path / "out.jsonl")]) == 2
    assert cli_error(capsys) == ("method flare reads the English version of each input: row 1 has no source_text; "
                                 "add the column or translate with --translator MODEL")
    assert not (tmp_path / "out.jsonl").exists()


def test_bad_input_output_and_run_dirs_are_refused_in_one_line(tmp_path, nusax_runs, capsys, monkeypatch):
    run_dir = nusax_runs("lora")
    _no_model_loads(monkeypatch)
    (tmp_path / "in.xlsx").write_text("x", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    (tmp_path / "in.txt").write_text("apik\n", encoding="utf-8")
    (tmp_path / "mine.jsonl").write_text("the user's own file\n", encoding="utf-8")
    capsys.readouterr()

    def refused(*argv: str, run: str = str(run_dir)) -> str:
        assert main(["predict", "--run-dir", run, *argv]) == 2
        return cli_error(capsys)

    out = ["--output", str(tmp_path / "out.jsonl")]
    assert refused("--input", str(tmp_path / "in.xlsx"), *out) == (
        f"{tmp_path / 'in.xlsx'}: unsupported input type '.xlsx'; use .txt (one text per line), .csv or .jsonl")
    assert refused("--input", str(tmp_path / "empty.txt"), *out) == f"{tmp_path / 'empty.txt'}: no rows to predict"
    assert refused("--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "mine.jsonl")) == (
        f"{tmp_path / 'mine.jsonl'} exists; choose another --output or pass --overwrite")
    assert (tmp_path / "mine.jsonl").read_text(encoding="utf-8") == "the user's own file\n"
    assert refused("--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "out.txt")) == (
        f"{tmp_path / 'out.txt'}: predictions are written as .jsonl or .csv, not '.txt'")
    (tmp_path / "half").mkdir()
    assert refused("--input", str(tmp_path / "in.txt"), *out, run=str(tmp_path / "half")) == (
        f"{tmp_path / 'half'} is not a finished run: config.yaml is missing")
    assert not (tmp_path / "out.jsonl").exists()


def test_overwrite_replaces_the_output_file(tmp_path, nusax_runs):
    (tmp_path / "in.txt").write_text("apik\nala\n", encoding="utf-8")
    (tmp_path / "out.jsonl").write_text("old\n", encoding="utf-8")
    assert main(["predict", "--run-dir", str(nusax_runs("lora")), "--input", str(tmp_path / "in.txt"), "--output",
                 str(tmp_path / "out.jsonl"), "--overwrite", "--no-show-progress"]) == 0
    assert [row["text"] for row in _jsonl(tmp_path / "out.jsonl")] == ["apik", "ala"]


def _train_small(tmp_path, task: str, target: str, *extra: str):
    out = tmp_path / task
    assert main(["train", "--task", task, "--target-lang", target, "--method", "lora", "--model", "tiny-random/bert",
                 "--max-train-examples", "8", "--max-eval-examples", "6", "--stage1-max-train-examples", "8",
                 "--epochs", "1", "--stage1-epochs", "1", "--batch-size", "4", "--lora-r", "4", "--lora-alpha", "8",
                 "--no-show-progress", "--output-dir", str(out), *extra]) == 0
    return out


def test_a_tagging_run_predicts_the_tags_it_was_evaluated_with(tmp_path, data_dir):
    run_dir = _train_small(tmp_path, "uner", "de", "--max-length", "48")
    test = load_task("uner", "de", data_dir=data_dir).test[:6]
    lines = [json.dumps({"id": ex.id, "target_tokens": list(ex.tokens)}) for ex in test]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["predict", "--run-dir", str(run_dir), "--input", str(tmp_path / "in.jsonl"), "--output",
                 str(tmp_path / "out.jsonl"), "--no-show-progress"]) == 0
    predicted = _jsonl(tmp_path / "out.jsonl")
    assert [p["tags"] for p in predicted] == [s["prediction"] for s in read_predictions(run_dir)]
    assert [p["tokens"] for p in predicted] == [list(ex.tokens) for ex in test]
    text = xlt.Predictor.from_run_dir(run_dir).predict([" ".join(test[0].tokens)])  # words split on white space
    assert text[0]["tags"] == predicted[0]["tags"] and set(text[0]) == {"tokens", "tags"}


def test_an_extractive_qa_run_predicts_the_answers_it_was_evaluated_with(tmp_path, data_dir, capsys):
    run_dir = _train_small(tmp_path, "mlqa", "de", "--qa-max-length", "256", "--doc-stride", "16")
    test = load_task("mlqa", "de", data_dir=data_dir).test[:6]
    lines = [json.dumps({"id": ex.id, "question": ex.question, "context": ex.context}) for ex in test]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["predict", "--run-dir", str(run_dir), "--input", str(tmp_path / "in.jsonl"), "--output",
                 str(tmp_path / "out.jsonl"), "--no-show-progress"]) == 0
    predicted = _jsonl(tmp_path / "out.jsonl")
    assert [p["answer"] for p in predicted] == [s["prediction"] for s in read_predictions(run_dir)]
    assert [set(p) for p in predicted] == [{"id", "question", "answer"}] * 6
    (tmp_path / "q.txt").write_text("Wer?\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", "--run-dir", str(run_dir), "--input", str(tmp_path / "q.txt"), "--output",
                 str(tmp_path / "q.jsonl")]) == 2
    assert cli_error(capsys) == (f"{tmp_path / 'q.txt'}: a question needs its paragraph; give extractive QA rows as "
                                 ".csv or .jsonl with target_question and target_context")


def test_a_generation_run_predicts_the_text_it_was_evaluated_with(tmp_path, data_dir):
    out = tmp_path / "massive"
    assert main(["train", "--task", "massive", "--target-lang", "jv", "--method", "lora", "--model",
                 "tiny-random/llama", "--max-train-examples", "8", "--max-eval-examples", "4",
                 "--stage1-max-train-examples", "8", "--epochs", "1", "--stage1-epochs", "1", "--batch-size", "4",
                 "--lora-r", "4", "--lora-alpha", "8", "--max-answer-length", "8", "--no-show-progress",
                 "--output-dir", str(out)]) == 0
    test = load_task("massive", "jv", data_dir=data_dir).test[:4]
    rows = xlt.Predictor.from_run_dir(out).predict([ex.prompt_target for ex in test])
    assert [r["generated"] for r in rows] == [s["prediction"] for s in read_predictions(out)]
    assert [set(r) for r in rows] == [{"text", "generated"}] * 4


def _travel(run_dir, tmp_path, monkeypatch):
    """Issue 25's travel: xlt export, the folder copied to a new directory of a machine without the data: its
    data directory (config.yaml's data_dir, which names this machine's, and $XLT_DATA_DIR) an empty folder."""
    import shutil

    assert main(["export", "--run-dir", str(run_dir), "--output-dir", str(tmp_path / "export")]) == 0
    copy = tmp_path / "elsewhere" / "model"
    shutil.copytree(tmp_path / "export", copy)
    empty = tmp_path / "no-data"
    empty.mkdir()
    config = (copy / "config.yaml").read_text(encoding="utf-8")
    recorded = yaml.safe_load(config).get("data_dir")  # None: a custom task's run reads only the user's files
    if recorded is not None:
        (copy / "config.yaml").write_text(config.replace(f"data_dir: {recorded}\n", f"data_dir: {empty}\n"),
                                          encoding="utf-8")
    assert yaml.safe_load((copy / "config.yaml").read_text(encoding="utf-8")).get("data_dir") in (None, str(empty))
    monkeypatch.setenv("XLT_DATA_DIR", str(empty))
    return copy


@pytest.mark.parametrize("method", ["lora", "flare"])
def test_an_exported_run_copied_elsewhere_predicts_what_the_run_predicted(tmp_path, nusax_runs, data_dir, capsys,
                                                                          monkeypatch, method):
    """Issue 25's travel check through predict: xlt export, the folder copied to a new directory, xlt predict there
    (its English model read from its own stage1/, relative to the run; its task from task_shell.json, with no data
    set on the machine) gives the run's own predictions."""
    run_dir = nusax_runs(method)
    rows_in = _test_rows_csv(tmp_path / "new.csv", data_dir)  # read before the data is hidden
    copy = _travel(run_dir, tmp_path, monkeypatch)
    assert main(["predict", "--run-dir", str(copy), "--input", str(rows_in), "--output", str(tmp_path / "out.jsonl"),
                 "--no-show-progress"]) == 0
    predicted, stored = _jsonl(tmp_path / "out.jsonl"), read_predictions(run_dir)
    assert [(p["id"], p["label"]) for p in predicted] == [(s["id"], s["prediction"]) for s in stored]
    assert max(abs(p["probability"] - s["score"]) for p, s in zip(predicted, stored)) <= 1e-6
    assert xlt.Predictor.from_run_dir(copy).labels == LABELS
    assert main(["evaluate", "--run-dir", str(copy)]) == 2  # evaluation reads the test set, by nature
    assert "no-data" in cli_error(capsys)


def test_an_exported_tagging_run_predicts_without_its_data_set(tmp_path, data_dir, monkeypatch):
    run_dir = _train_small(tmp_path, "uner", "de", "--max-length", "48")
    test = load_task("uner", "de", data_dir=data_dir).test[:6]
    lines = [json.dumps({"id": ex.id, "target_tokens": list(ex.tokens)}) for ex in test]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    copy = _travel(run_dir, tmp_path, monkeypatch)
    assert main(["predict", "--run-dir", str(copy), "--input", str(tmp_path / "in.jsonl"), "--output",
                 str(tmp_path / "out.jsonl"), "--no-show-progress"]) == 0
    predicted = _jsonl(tmp_path / "out.jsonl")
    assert [p["tags"] for p in predicted] == [s["prediction"] for s in read_predictions(run_dir)]


def test_an_exported_custom_run_predicts_after_the_users_files_are_gone(tmp_path, monkeypatch):
    """A custom task reads the user's --train-file and --test-file: the exported folder predicts without them
    (xlt predict checks them only for a run that reads its data)."""
    rows = [(f"{'good' if i % 2 else 'bad'} w{i}", f"{'apik' if i % 2 else 'elek'} w{i}", "pos" if i % 2 else "neg")
            for i in range(16)]
    for name in ("train.csv", "test.csv"):
        with open(tmp_path / name, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("source_text", "target_text", "label"), *rows])
    with open(tmp_path / "in.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("target_text", "source_text"), *((t, s) for s, t, _ in rows)])
    run_dir = _train_small(tmp_path, "custom", "jv", "--train-file", str(tmp_path / "train.csv"), "--test-file",
                           str(tmp_path / "test.csv"), "--max-eval-examples", "16")
    copy = _travel(run_dir, tmp_path, monkeypatch)
    (tmp_path / "train.csv").unlink()
    (tmp_path / "test.csv").unlink()
    assert main(["predict", "--run-dir", str(copy), "--input", str(tmp_path / "in.csv"), "--output",
                 str(tmp_path / "out.jsonl"), "--no-show-progress"]) == 0
    predicted, stored = _jsonl(tmp_path / "out.jsonl"), read_predictions(run_dir)
    assert [p["label"] for p in predicted] == [s["prediction"] for s in stored] and len(predicted) == 16
    assert max(abs(p["probability"] - s["score"]) for p, s in zip(predicted, stored)) <= 1e-6
    assert xlt.Predictor.from_run_dir(copy).labels == ("neg", "pos")
    assert main(["export", "--run-dir", str(copy), "--output-dir", str(tmp_path / "again")]) == 0  # its own shell
    assert (tmp_path / "again" / "task_shell.json").read_text() == (copy / "task_shell.json").read_text()
