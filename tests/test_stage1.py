"""The English (stage-1) model: it reads the English side of the task's examples, and its cache key
follows the data's content and every setting that changes it, never file paths."""

import csv
import json
import random
import shutil

import pytest

import xlt.runs.stage1
from xlt.cli import main
from xlt.config import RunConfig
from xlt.data.examples import Example, GenExample, GenTaskData, TaskData, source_side
from xlt.errors import XltError
from xlt.runs.stage1 import stage1_dir, stage1_lr

POSITIVE = ["zz good zz", "zz great day zz", "zz lovely zz", "zz so nice zz", "zz well done zz", "zz happy zz"]
NEGATIVE = ["qq bad qq", "qq awful day qq", "qq sad qq", "qq so poor qq", "qq badly done qq", "qq angry qq"]


def _signal_only_in_english(path, rows: int, seed: int) -> None:
    """A parallel file whose English side carries the label and whose target side is another row's
    English text, marked: the target text says nothing about its own row's label."""
    rng = random.Random(seed)
    english = [(rng.choice(POSITIVE if i % 2 else NEGATIVE), "pos" if i % 2 else "neg") for i in range(rows)]
    shuffled = [text for text, _ in english]
    rng.shuffle(shuffled)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["source_text", "target_text", "label"])
        for (text, label), other in zip(english, shuffled):
            writer.writerow([text, "tgt " + other, label])


def test_custom_stage1_trains_and_tests_on_the_english_side(tmp_path, monkeypatch, capsys):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    _signal_only_in_english(train, 64, seed=1)
    _signal_only_in_english(test, 40, seed=2)
    seen = []
    real_train = xlt.runs.stage1.train

    def spy(model, plan, *args, **kwargs):
        seen.append([ex.target[0] for ex in plan[0].examples])
        return real_train(model, plan, *args, **kwargs)

    monkeypatch.setattr(xlt.runs.stage1, "train", spy)
    args = ["train", "--model", "tiny-random/bert", "--task", "custom", "--train-file", str(train),
            "--test-file", str(test), "--target-lang", "xx", "--method", "zero-shot", "--stage1-epochs", "8",
            "--stage1-lr", "3e-3", "--batch-size", "8", "--max-length", "16", "--no-show-progress",
            "--stage1-dir", str(tmp_path / "stage1"), "--output-dir", str(tmp_path / "run")]
    assert main(args) == 0
    assert len(seen) == 1 and not any(text.startswith("tgt ") for text in seen[0])  # stage 1 read source_text
    assert len(seen[0]) == 64  # every training row: nothing is held out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["source_metrics"]["accuracy"] >= 0.9  # English test, where the signal is
    assert metrics["metrics"]["accuracy"] <= 0.75  # target test: no signal, about chance
    assert metrics["source_metrics"] != metrics["metrics"]


def test_source_side_swaps_every_split_and_refuses_missing_english():
    data = TaskData("t", ("a", "b"), "en", "ace", [Example(("x",), ("e",), 1, "1")], [],
                    [Example(("y",), ("f",), 0, "2")])
    english = source_side(data)
    assert english.target_lang == "en" and english.source_lang == "en"
    assert english.train == [Example(("e",), ("e",), 1, "1")] and english.test == [Example(("f",), ("f",), 0, "2")]
    assert data.train[0].target == ("x",)  # the input is not changed
    gen = GenTaskData("g", "en", "jv", [GenExample("p", "P", "a", "A", "1")], [], [], "slots", "slots")
    assert source_side(gen).train == [GenExample("P", "P", "A", "A", "1")]
    with pytest.raises(XltError, match="example 3 has no source-language text"):
        source_side(TaskData("t", ("a",), "en", "ace", [Example(("x",), None, 0, "3")], [], []))


def _custom(tmp_path, name: str, rows: list[tuple[str, str, str]]) -> tuple[str, str]:
    folder = tmp_path / name
    folder.mkdir()
    for split in ("train", "test"):
        with (folder / f"{split}.csv").open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("source_text", "target_text", "label"), *rows])
    return str(folder / "train.csv"), str(folder / "test.csv")


ROWS = [("good", "apik", "pos"), ("bad", "elek", "neg"), ("fine", "becik", "pos")]


def _key(tmp_path, files, **settings):
    settings = {"model": "tiny-random/bert", **settings}
    cfg = RunConfig(task="custom", train_file=files[0], test_file=files[1], target_lang="jv",
                    stage1_dir=str(tmp_path / "cache"), **settings)
    return stage1_dir(cfg)


def test_stage1_key_follows_the_english_content_not_the_path(tmp_path):
    a = _custom(tmp_path, "a", ROWS)
    b = _custom(tmp_path, "b", ROWS)  # same content elsewhere
    other_target = _custom(tmp_path, "c", [(s, t + "x", y) for s, t, y in ROWS])  # only the target side differs
    edited = _custom(tmp_path, "d", [("good!", "apik", "pos"), *ROWS[1:]])  # one English sentence differs
    assert _key(tmp_path, a) == _key(tmp_path, b) == _key(tmp_path, other_target)
    assert _key(tmp_path, a) != _key(tmp_path, edited)
    for new, old in zip(edited, a):  # the same paths with new content are a new model
        shutil.copy(new, old)
    assert _key(tmp_path, a) == _key(tmp_path, edited)


@pytest.mark.parametrize("task, suffix", [("custom", ".csv"), ("custom-qa", ".jsonl"), ("custom-ner", ".jsonl")])
def test_a_renamed_copy_of_a_file_finds_the_same_english_model(tmp_path, task, suffix):
    """Rows without an id are numbered (row-N, line-N), never named after their file: a renamed copy is the
    same English examples, so the same stage-1 key (README: the key is never a path)."""
    rows = {".csv": "source_text,target_text,label\ngood,apik,pos\nbad,elek,neg\n",
            ".jsonl": {"custom-qa": json.dumps({"target_context": "Paris ist gross.", "target_question": "Was?",
                                                "answers": ["Paris"], "source_context": "Paris is big.",
                                                "source_question": "What?", "source_answers": ["Paris"]}) + "\n",
                       "custom-ner": json.dumps({"target_tokens": ["in", "Paris"], "target_tags": ["O", "B-LOC"],
                                                 "source_tokens": ["in", "Paris"],
                                                 "source_tags": ["O", "B-LOC"]}) + "\n"}.get(task)}[suffix]
    keys = []
    for name in ("train", "renamed"):
        (tmp_path / f"{name}{suffix}").write_text(rows, encoding="utf-8")
        cfg = RunConfig(task=task, train_file=str(tmp_path / f"{name}{suffix}"),
                        test_file=str(tmp_path / f"{name}{suffix}"), target_lang="de", model="tiny-random/bert",
                        stage1_dir=str(tmp_path / "cache"))
        keys.append(stage1_dir(cfg))
    assert keys[0] == keys[1]


def test_stage1_key_holds_every_setting_that_changes_the_model(tmp_path):
    files = _custom(tmp_path, "a", ROWS)
    base = _key(tmp_path, files)
    for change in ({"stage1_epochs": 2}, {"stage1_lr": 1e-4}, {"max_length": 32}, {"batch_size": 8},
                   {"pooling": "first"}, {"seed": 1}, {"bf16": True}, {"stage1_freeze_embeddings": False}):
        assert _key(tmp_path, files, **change) != base, change
    # settings stage 1 does not use share the model: stage-2 rank and dropout of a fully fine-tuned model
    assert _key(tmp_path, files, lora_r=8, lora_dropout=0.3, epochs=9, lr=1e-3) == base
    # ...nor does LoRA stage 1 (tiny llama's default): it has its own rank
    llama = dict(model="tiny-random/llama")
    assert _key(tmp_path, files, **llama) == _key(tmp_path, files, lora_r=8, lora_dropout=0.3, **llama)
    for change in ({"stage1_lora_r": 16}, {"stage1_lora_dropout": 0.0}):
        assert _key(tmp_path, files, **llama) != _key(tmp_path, files, **change, **llama), change


def test_stage1_budget_follows_the_task_and_the_stage1_method_unless_given(tmp_path, capsys):
    """English NER learns nothing at sentiment's 5e-5 x 4 and English QA little (README): uner, custom-ner and the QA
    tasks default to 2e-4 x 10. LoRA
    stage 1 (decoders) stayed near chance at 5e-5 (README, Gemma): it defaults to 2e-4 whatever the task."""
    def lr(**settings):
        return stage1_lr(RunConfig(target_lang="de", **settings))

    assert (RunConfig(task="nusax").stage1_epochs, lr(task="nusax", model="tiny-random/bert")) == (4, 5e-5)
    uner = RunConfig(task="uner", target_lang="de", model="tiny-random/bert")
    assert (uner.stage1_epochs, uner.stage1_lr, stage1_lr(uner)) == (10, None, 2e-4)
    assert (RunConfig(task="custom-ner").stage1_epochs, lr(task="panx", model="tiny-random/bert")) == (10, 5e-5)
    for task in ("mlqa", "custom-qa"):
        assert (RunConfig(task=task, target_lang="de").stage1_epochs, lr(task=task, model="tiny-random/bert")) == (
            10, 2e-4), task
    # TyDiQA's English training file (3,696 questions) is 6 times MLQA's half: 3 epochs at the QA rate
    assert (RunConfig(task="tydiqa", target_lang="sw").stage1_epochs, lr(task="tydiqa", model="tiny-random/bert")) == (
        3, 2e-4)
    # a decoder's LoRA stage 1, and an encoder's when asked for; a decoder fully fine-tuned takes the task's
    assert lr(task="nusax", model="tiny-random/llama") == lr(task="nusax", stage1_method="lora") == 2e-4
    assert lr(task="nusax", model="tiny-random/llama", stage1_method="full") == 5e-5
    given = RunConfig(task="uner", target_lang="de", stage1_epochs=3, stage1_lr=1e-3, model="tiny-random/llama")
    assert (given.stage1_epochs, stage1_lr(given)) == (3, 1e-3)
    # the resolved epochs are what config.yaml holds, so a saved run reads back equal
    assert RunConfig.from_dict(uner.to_dict()) == uner
    # the stage-1 model's key holds the rate it trained at: a default and the same rate given share a model
    files = _custom(tmp_path, "a", ROWS)
    assert _key(tmp_path, files) == _key(tmp_path, files, stage1_lr=5e-5) != _key(tmp_path, files, stage1_lr=2e-4)
    llama = dict(model="tiny-random/llama")
    assert _key(tmp_path, files, **llama) == _key(tmp_path, files, stage1_lr=2e-4, **llama)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default: 4; 10 for uner, mlqa, custom-qa, custom-ner; 3 for tydiqa)"  # tasks in the table's order in help_text
    assert "(default: 5e-05; 0.0002 for uner, mlqa, tydiqa, custom-qa, custom-ner; 0.0002 when stage 1 is LoRA)" \
        in help_text


def test_lora_stage1_trains_at_its_own_rank_whatever_the_stage2_rank(tmp_path, monkeypatch):
    """tiny llama's stage 1 is LoRA: it must train at --stage1-lora-r, not at the align run's --lora-r."""
    ranks = []
    real = xlt.runs.stage1.get_peft_model

    def spy(model, config, *args, **kwargs):
        ranks.append((config.r, config.lora_alpha, config.lora_dropout))
        return real(model, config, *args, **kwargs)

    monkeypatch.setattr(xlt.runs.stage1, "get_peft_model", spy)
    train, test = _custom(tmp_path, "a", ROWS)
    cfg = RunConfig(model="tiny-random/llama", task="custom", train_file=train, test_file=test, target_lang="jv",
                    method="align", lora_r=4, stage1_lora_r=2, stage1_lora_dropout=0.2, stage1_epochs=1,
                    max_length=16, show_progress=False, stage1_dir=str(tmp_path / "cache"))
    xlt.runs.stage1.ensure_stage1(cfg)
    assert ranks == [(2, 4, 0.2)]
