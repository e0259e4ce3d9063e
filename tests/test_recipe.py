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
