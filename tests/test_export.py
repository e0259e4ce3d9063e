"""Models that travel: a stage-1 classifier loads with stock transformers after ``import xlt``, an adapter names
its base, and ``xlt export`` writes one folder that a copy elsewhere (fresh process, empty cache) evaluates
identically; ``--push-to-hub`` hands that folder to huggingface_hub."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import cli_error

import xlt
from xlt.cli.main import main
from xlt.config import RunConfig
from xlt.methods.adapters import load_adapter
from xlt.models.classifier import HEAD_INFO, HEAD_WEIGHTS, PooledClassifier, convert_head_files, saved_layout
from xlt.models.loading import load_tokenizer
from xlt.runs.adapted_model import build_model
from xlt.runs.recipe import Run

SRC = str(Path(xlt.__file__).resolve().parents[1])
QUICK = ["--model", "tiny-random/bert", "--task", "nusax", "--target-lang", "jv", "--max-train-examples", "16",
         "--max-eval-examples", "12", "--epochs", "1", "--stage1-epochs", "1", "--stage1-max-train-examples", "16",
         "--lora-r", "4", "--lora-alpha", "8", "--batch-size", "8", "--no-show-progress"]
TEXTS = ["aku seneng banget karo panganan iki", "ora apik"]
ENGLISH = ["I really like this food", "not good"]


def _train(root: Path, method: str, *extra: str) -> Path:
    out = root / method
    assert main(["train", *QUICK, "--method", method, *extra, "--output-dir", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {"lora": _train(root, "lora"), "flare": _train(root, "flare", "--fusion", "add")}


def _stage1(run: Path) -> Path:
    return Path(json.loads((run / "metrics.json").read_text())["stage1_dir"])


def _env(cache: Path) -> dict:
    return {**os.environ, "PYTHONPATH": SRC, "XLT_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _xlt_model(run_dir: Path):
    """The run's model as ``xlt evaluate`` builds it (English model + adapter)."""
    cfg = RunConfig.from_yaml(run_dir / "config.yaml")
    stage1 = run_dir / json.loads((run_dir / "metrics.json").read_text())["stage1_dir"]
    run = Run(cfg, architecture_from=str(stage1))
    adapted, tokenizer = build_model(run, stage1, run.data)
    load_adapter(adapted, run_dir / "adapter")
    return adapted.model.eval(), tokenizer


def _inputs(tokenizer, flare: bool) -> dict:
    batch = dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))
    if flare:
        english = tokenizer(ENGLISH, padding=True, return_tensors="pt")
        batch.update(source_input_ids=english["input_ids"], source_attention_mask=english["attention_mask"])
    return batch


def test_a_stage1_classifier_loads_with_stock_auto_classes_and_its_labels(runs):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from xlt.models.auto_classes import PooledClassifierForSequenceClassification

    stage1 = _stage1(runs["lora"])
    assert json.loads((stage1 / "config.json").read_text())["model_type"] == "xlt-pooled-classifier"
    stock = AutoModelForSequenceClassification.from_pretrained(stage1).eval()
    assert type(stock) is PooledClassifierForSequenceClassification
    assert stock.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert stock.config.label2id == {"negative": 0, "neutral": 1, "positive": 2}
    assert AutoConfig.from_pretrained(stage1).backbone_config.model_type == "bert"
    ours = PooledClassifier.from_pretrained(str(stage1), ("negative", "neutral", "positive"), "mean", "encoder").eval()
    batch = _inputs(load_tokenizer(str(stage1)), flare=False)
    with torch.no_grad():
        assert torch.equal(stock(**batch).logits, ours(**batch).logits)


def test_import_xlt_alone_teaches_transformers_the_classifier_without_torch_until_transformers_loads(runs):
    code = ("import sys, xlt; assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
            "from transformers import AutoModelForSequenceClassification as A\n"
            f"print(type(A.from_pretrained({str(_stage1(runs['lora']))!r})).__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(Path("/nonexistent")),
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "PooledClassifierForSequenceClassification"


def test_an_adapter_names_its_stage1_model(runs):
    run = runs["flare"]
    stage1 = json.loads((run / "metrics.json").read_text())["stage1_dir"]
    assert json.loads((run / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == stage1
    assert json.loads((run / "adapter" / "xlt_adapter.json").read_text())["base_model"] == stage1
    card = (run / "adapter" / "README.md").read_text()
    front = card.split("---\n")[1]
    assert f"base_model: {'/'.join(Path(stage1).parts[-3:])}\n" in front and stage1 not in card


def _old_layout(stage1: Path, target: Path) -> None:
    """``stage1`` as an older xlt wrote it: the backbone folder, classifier.safetensors and xlt_classifier.json."""
    from safetensors.torch import save_file

    model = PooledClassifier.from_pretrained(str(stage1), ("negative", "neutral", "positive"), "mean", "encoder")
    shutil.copytree(stage1, target, ignore=shutil.ignore_patterns("config.json", "model.safetensors"))
    model.backbone.save_pretrained(target)
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if k.startswith("classifier.")},
              str(target / HEAD_WEIGHTS))
    (target / HEAD_INFO).write_text(json.dumps({"labels": list(model.labels), "pooling": "mean"}) + "\n")


def test_a_stage1_folder_in_the_old_layout_still_loads_and_converts(runs, tmp_path):
    stage1 = _stage1(runs["lora"])
    _old_layout(stage1, tmp_path / "old")
    assert json.loads((tmp_path / "old" / "config.json").read_text())["model_type"] == "bert"
    assert saved_layout(tmp_path / "old") == "head-files" and saved_layout(stage1) == "pretrained"
    labels = ("negative", "neutral", "positive")
    batch = _inputs(load_tokenizer(str(stage1)), flare=False)
    with torch.no_grad():
        expected = PooledClassifier.from_pretrained(str(stage1), labels, "mean", "encoder").eval()(**batch).logits
        old = PooledClassifier.from_pretrained(str(tmp_path / "old"), labels, "mean", "encoder").eval()
        assert torch.equal(old(**batch).logits, expected)
        convert_head_files(tmp_path / "old", tmp_path / "new")
        from transformers import AutoModelForSequenceClassification

        stock = AutoModelForSequenceClassification.from_pretrained(tmp_path / "new").eval()
        assert torch.equal(stock(**batch).logits, expected)
    assert (tmp_path / "new" / "stage1.json").is_file() and not (tmp_path / "new" / HEAD_INFO).exists()


def _evaluate_copy(export: Path, tmp_path: Path) -> dict:
    """``xlt evaluate`` on a copy of ``export`` in a new directory, in a fresh process with an empty cache."""
    copy = tmp_path / "elsewhere" / "model"
    shutil.copytree(export, copy)
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    done = subprocess.run([sys.executable, "-m", "xlt.cli", "evaluate", "--run-dir", str(copy)], capture_output=True,
                          text=True, env=_env(cache), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [p for p in cache.rglob("config.json")]  # no model was built or fetched into the cache
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("method", ["lora", "flare"])
def test_an_exported_folder_copied_elsewhere_evaluates_identically_and_loads_with_stock_peft(runs, method, tmp_path,
                                                                                              capsys):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "export"
    assert main(["export", "--run-dir", str(runs[method]), "--output-dir", str(out)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"output_dir": str(out)}
    assert sorted(p.name for p in out.iterdir()) == [".xlt-run", "README.md", "adapter", "config.yaml", "metrics.json",
                                                     "predictions.jsonl", "stage1", "task_shell.json"]
    assert json.loads((out / "metrics.json").read_text())["stage1_dir"] == "stage1"
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == "../stage1"
    assert json.loads((out / "adapter" / "xlt_adapter.json").read_text())["base_model"] == "../stage1"
    assert (out / "stage1" / "tokenizer.json").is_file() and not (out / "stage1" / ".xlt-complete").exists()
    result = _evaluate_copy(out, tmp_path)
    assert (result["matches_stored"], result["predictions_match"]) == (True, True)
    ours, tokenizer = _xlt_model(out)
    stock = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(out / "stage1"),
                                      out / "adapter").eval()
    assert stock.peft_config["default"].peft_type == ("FLARE" if method == "flare" else "LORA")
    batch = _inputs(tokenizer, flare=method == "flare")
    with torch.no_grad():
        assert torch.equal(stock(**batch).logits, ours(**batch).logits)


def test_an_old_layout_stage1_exports_in_the_new_layout_and_evaluates(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs["lora"], run)
    _old_layout(_stage1(run), tmp_path / "old-stage1")
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "stage1_dir": str(tmp_path / "old-stage1")}))
    assert main(["evaluate", "--run-dir", str(run)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["matches_stored"] is True
    assert main(["export", "--run-dir", str(run), "--output-dir", str(tmp_path / "export")]) == 0
    assert saved_layout(tmp_path / "export" / "stage1") == "pretrained"
    assert _evaluate_copy(tmp_path / "export", tmp_path)["matches_stored"] is True


def test_export_refuses_an_existing_folder_unless_overwrite(runs, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", "--run-dir", str(runs["lora"]), "--output-dir", str(out)]) == 0
    capsys.readouterr()
    assert main(["export", "--run-dir", str(runs["lora"]), "--output-dir", str(out)]) == 2
    assert cli_error(capsys) == (f"--output-dir {out} holds a finished xlt run; pass --overwrite to replace it, "
                                 "or choose a new folder")
    assert main(["export", "--run-dir", str(runs["lora"]), "--output-dir", str(out), "--overwrite"]) == 0
    capsys.readouterr()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    assert main(["export", "--run-dir", str(runs["lora"]), "--output-dir", str(tmp_path / "mine"), "--overwrite"]) == 2
    assert "holds files xlt did not write (notes.txt)" in cli_error(capsys)
    assert main(["export", "--run-dir", str(runs["lora"]), "--output-dir", str(runs["lora"] / "x")]) == 2
    assert cli_error(capsys) == f"--output-dir {runs['lora'] / 'x'} overlaps the run {runs['lora']}; export to " \
                                "another folder"
    assert main(["export", "--run-dir", str(tmp_path), "--output-dir", str(tmp_path / "e")]) == 2
    assert cli_error(capsys) == f"{tmp_path} is not a finished run: config.yaml is missing"


def test_push_to_hub_uploads_the_exported_folder(runs, tmp_path, capsys, monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo",
                        lambda self, repo_id, **kw: calls.append(("create_repo", repo_id, kw)))

    def upload_folder(self, **kw):
        calls.append(("upload_folder", sorted(p.name for p in Path(kw["folder_path"]).iterdir()), kw))
        return "https://huggingface.co/me/jv-lora/commit/abc"

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    out = tmp_path / "export"
    assert main(["export", "--run-dir", str(runs["lora"]), "--output-dir", str(out), "--push-to-hub", "me/jv-lora",
                 "--private"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["pushed"] == \
        "https://huggingface.co/me/jv-lora/commit/abc"
    (create, upload) = calls
    assert create == ("create_repo", "me/jv-lora", {"private": True, "exist_ok": True, "repo_type": "model"})
    assert upload[1] == [".xlt-run", "README.md", "adapter", "config.yaml", "metrics.json", "predictions.jsonl",
                         "stage1", "task_shell.json"]
    assert upload[2]["repo_id"] == "me/jv-lora" and upload[2]["folder_path"] == str(out)
    assert upload[2]["ignore_patterns"] == [".xlt-run"]
    assert main(["export", "--run-dir", str(runs["lora"]), "--output-dir", str(tmp_path / "e2"),
                 "--push-to-hub", "not a repo"]) == 2
    assert cli_error(capsys).startswith("--push-to-hub 'not a repo' is not a Hub repository id: ")
    assert main(["export", "--run-dir", str(runs["lora"]), "--output-dir", str(tmp_path / "e2"), "--private"]) == 2
    assert cli_error(capsys) == "--private needs --push-to-hub REPO"
    assert len(calls) == 2 and not (tmp_path / "e2").exists()
