"""A run resolves once: its model's architecture and its data are read once per distinct need, and the stage-1
cache key (the English model's folder name) stays what it was, so cached English models are reused."""

import json
import os

import pytest

from xlt.config import RunConfig
from xlt.runs.stage1 import stage1_dir

FIXED_NS = 1_700_000_000_000_000_000  # the model folder's file times, which the key reads
CUSTOM = "source_text,target_text,label\ngood,apik,pos\nbad,elek,neg\nfine,becik,pos\n"
CUSTOM_MT = "source_text,target_text\ngood day,dina apik\n"
CUSTOM_QA = json.dumps({"target_context": "Paris ist gross.", "target_question": "Was?", "answers": ["Paris"],
                        "source_context": "Paris is big.", "source_question": "What?",
                        "source_answers": ["Paris"]}) + "\n"


def _model_folder(name: str, model_type: str) -> str:
    """A local model folder (in the working directory) whose config.json is all the key reads of it."""
    os.mkdir(name)
    config = os.path.join(name, "config.json")
    with open(config, "w", encoding="utf-8") as f:
        f.write(json.dumps({"model_type": model_type}))
    os.utime(config, ns=(FIXED_NS, FIXED_NS))
    return name


@pytest.mark.parametrize("model_type, task, suffix, rows, settings, key", [
    ("bert", "custom", ".csv", CUSTOM, {}, "seed0-7761af94b3d87d95"),
    ("bert", "custom", ".csv", CUSTOM, {"method": "flare", "pooling": "first", "bf16": True}, "seed0-1e8002e85a2208d5"),
    ("llama", "custom", ".csv", CUSTOM, {"method": "align", "lora_r": 4}, "seed0-a60f9212fa28630f"),
    ("bert", "custom-qa", ".jsonl", CUSTOM_QA, {}, "seed0-addfecc03806e61c"),
    ("llama", "custom-qa", ".jsonl", CUSTOM_QA, {"seed": 3}, "seed3-c1397a7a62a094f7"),
    ("llama", "custom-mt", ".csv", CUSTOM_MT, {}, "seed0-50580699286310a1"),
    ("bert", "custom", ".csv", CUSTOM, {"method": "x-mixup"}, "seed0-7761af94b3d87d95"),
])
def test_stage1_key_is_pinned(tmp_path, monkeypatch, model_type, task, suffix, rows, settings, key):
    """The stage-1 folder name of a fixed config and data: the digest of ``stage1_settings``. A change here
    orphans every cached English model; make it only on purpose."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / f"data{suffix}"
    data.write_text(rows, encoding="utf-8")
    cfg = RunConfig(task=task, train_file=str(data), test_file=str(data), target_lang="jv",
                    model=_model_folder("model", model_type), stage1_dir="cache", **settings)
    assert stage1_dir(cfg) == tmp_path.joinpath("cache", "model", task, key).relative_to(tmp_path)


def _counting(monkeypatch) -> dict[str, int]:
    """Counts of the expensive look-ups of one run: the task's data files read (``load_task``, wherever a module
    imported it) and the model configs xlt reads for an architecture (``AutoConfig.from_pretrained`` called from
    xlt's own modules, not from inside transformers' model loading)."""
    import sys

    from transformers import AutoConfig

    import xlt.data.registry

    counts = {"load_task": 0, "architecture": 0}
    real_load, real_config = xlt.data.registry.load_task, AutoConfig.from_pretrained

    def load_task(*args, **kwargs):
        counts["load_task"] += 1
        return real_load(*args, **kwargs)

    def from_pretrained(*args, **kwargs):
        if sys._getframe(1).f_globals.get("__name__", "").startswith("xlt."):
            counts["architecture"] += 1
        return real_config(*args, **kwargs)

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("xlt.") and getattr(module, "load_task", None) is real_load:
            monkeypatch.setattr(module, "load_task", load_task)
    monkeypatch.setattr(AutoConfig, "from_pretrained", from_pretrained)
    return counts


TINY_TRAIN = ["train", "--model", "tiny-random/bert", "--task", "nusax", "--target-lang", "jv",
              "--max-train-examples", "8", "--max-eval-examples", "8", "--stage1-max-train-examples", "8",
              "--epochs", "1", "--stage1-epochs", "1", "--max-length", "16", "--batch-size", "4",
              "--no-show-progress"]


@pytest.mark.parametrize("argv, expected", [
    # stage 2's target side and stage 1's English side are cut from one read of (target, en); before the Run:
    # load_task 2 times, the architecture 13 times (stage1_method 8, resolve_defaults 3, stage 1's build,
    # build_model)
    (["--method", "flare"], {"load_task": 1, "architecture": 1}),
    # a pivot's text is a second read, (target, id); the gold English of pivot_chrf is stage 1's read (before: 3)
    (["--method", "flare", "--source-from", "pivot:id"], {"load_task": 2, "architecture": 1}),
    # a decoder writes QA answers: the conversion of both sides asks the one architecture (before: 15 look-ups)
    (["--model", "tiny-random/llama", "--task", "mlqa", "--target-lang", "de", "--method", "lora",
      "--qa-max-length", "64", "--max-answer-length", "4"], {"load_task": 1, "architecture": 1}),
])
def test_one_run_reads_its_data_and_architecture_once(tmp_path, monkeypatch, argv, expected):
    """``xlt train`` reads the task's files once per pair of languages it reads (target and English for both
    stages, target and pivot for stage 2 with --source-from pivot:LANG) and the model's architecture once."""
    from xlt.cli import main

    counts = _counting(monkeypatch)
    assert main([*TINY_TRAIN, *argv, "--stage1-dir", str(tmp_path / "stage1"), "--output-dir",
                 str(tmp_path / "run")]) == 0
    assert counts == expected


@pytest.mark.parametrize("task, target", [("nusax", "jv"), ("panx", "de")])
def test_both_stages_cut_their_data_from_one_read_without_changing_it(task, target):
    """Stage 2's target side and stage 1's English side share the files' read (PAN-X's English splits are an object
    inside it): each stage's limits cut a copy, never the read the other stage is cut from."""
    from xlt.runs.recipe import Run, load_data

    run = Run(RunConfig(task=task, target_lang=target, max_train_examples=3, stage1_max_train_examples=5,
                        max_eval_examples=4, model="tiny-random/bert"))
    read = run.task_files("en")
    sizes = (len(read.train), len(read.test), *((len(read.english.train), len(read.english.test))
                                               if getattr(read, "english", None) else ()))
    assert (len(run.data.train), len(run.data.test), len(run.english.train), len(run.english.test)) == (3, 4, 5, 4)
    assert run.english.target_lang == "en" and run.data.target_lang != "en"
    assert run.task_files("en") is read and min(sizes) > 5  # one read, uncut
    assert sizes == (len(read.train), len(read.test), *((len(read.english.train), len(read.english.test))
                                                        if getattr(read, "english", None) else ()))
    assert load_data(run) == run.data and load_data(run) is not run.data  # the same data, a new object each call
