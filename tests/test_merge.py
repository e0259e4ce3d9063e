"""`xlt merge`: the merged ΔW is exactly the weighted sum, the head is the task adapter's, bad input is refused."""

import argparse
import json
import shutil

import pytest
import torch
from helpers import tiny, tiny_classifier
from safetensors.torch import load_file

from xlt.alignment.merge import merge_adapters, merge_runs, scaling
from xlt.cli import merge as merge_cli
from xlt.errors import XltError
from xlt.methods.adapters import AdapterSettings, attach, load_adapter, save_adapter
from xlt.methods.table import get_method
from xlt.models.architectures import architecture_for
from xlt.models.loading import load_tokenizer, resolve_model

PREFIX = "base_model.model."


def _delta(folder) -> dict[str, torch.Tensor]:
    """ΔW = s · B A per adapted module, from the saved tensors and config alone."""
    config = json.loads((folder / "adapter_config.json").read_text())
    state = load_file(str(folder / "adapter_model.safetensors"))
    return {k[: -len(".lora_A.weight")]: scaling(config) * state[k.replace("lora_A", "lora_B")] @ state[k]
            for k in state if k.endswith(".lora_A.weight")}


def _base(seed: int = 0):
    """The base classifier exactly as helpers.tiny builds it (same seeding, so the same head)."""
    path = resolve_model("tiny-random/bert")
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(path)
    return tiny_classifier(path, tokenizer), tokenizer


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    for i, adapter_seed in enumerate((1, 2)):
        adapted, _ = tiny("bert", "lora", fusion=None, adapter_seed=adapter_seed)
        save_adapter(adapted, root / f"a{i}")
    return root / "a0", root / "a1"


def test_exact_merge_is_the_weighted_sum(two, tmp_path):
    out = tmp_path / "merged"
    summary = merge_adapters(list(two), [0.9, 0.1], out)
    d1, d2, merged = _delta(two[0]), _delta(two[1]), _delta(out)
    assert set(merged) == set(d1) and summary["modules_merged"] == len(d1) == 4
    for module in d1:
        torch.testing.assert_close(merged[module], 0.9 * d1[module] + 0.1 * d2[module], atol=1e-6, rtol=0)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == config["lora_alpha"] == summary["rank"] == 8
    info = json.loads((out / "xlt_merge.json").read_text())
    assert info["weights"] == [0.9, 0.1] and info["ranks"] == [4, 4] and info["combination"] == "exact"

    # the merged adapter, loaded strictly, gives the logits of the base model with ΔW added by hand
    model, tokenizer = _base()
    arch = architecture_for(model.config.model_type)
    adapted = attach(model, get_method("lora"), arch, AdapterSettings(r=8, alpha=8, dropout=0.0))
    load_adapter(adapted, out)
    reference, _ = _base()
    with torch.no_grad():
        for module in d1:
            reference.get_submodule(module[len(PREFIX):]).weight += 0.9 * d1[module] + 0.1 * d2[module]
    batch = tokenizer(["halo dunya", "ora apik babar pisan"], return_tensors="pt", padding=True)
    adapted.model.eval()
    reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(adapted.model(**batch).logits, reference(**batch).logits, atol=1e-5, rtol=0)


def test_peft_cat_matches_exact_and_linear_runs(two, tmp_path):
    merge_adapters(list(two), [0.9, 0.1], tmp_path / "cat", "cat")
    exact, cat = _delta(two[0]), _delta(tmp_path / "cat")
    d2 = _delta(two[1])
    for module in exact:
        torch.testing.assert_close(cat[module], 0.9 * exact[module] + 0.1 * d2[module], atol=1e-6, rtol=0)
    assert merge_adapters(list(two), [0.5, 0.5], tmp_path / "lin", "linear")["rank"] == 4


def test_head_comes_from_the_first_adapter(tmp_path):
    heads = []
    for i in range(2):
        model, _ = _base()
        adapted = attach(model, get_method("lora"), architecture_for(model.config.model_type),
                         AdapterSettings(r=4, alpha=8, train_head=True))
        torch.manual_seed(10 + i)
        for name, p in adapted.model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                torch.nn.init.normal_(p)
        save_adapter(adapted, tmp_path / f"h{i}")
        heads.append({k: v for k, v in load_file(str(tmp_path / f"h{i}" / "adapter_model.safetensors")).items()
                      if "lora_" not in k})
    assert set(heads[0]) == {PREFIX + "classifier.weight", PREFIX + "classifier.bias"}
    summary = merge_adapters([tmp_path / "h0", tmp_path / "h1"], [0.9, 0.1], tmp_path / "m")
    merged = load_file(str(tmp_path / "m" / "adapter_model.safetensors"))
    for key, value in heads[0].items():
        assert torch.equal(merged[key], value) and not torch.equal(merged[key], heads[1][key])
    assert summary["head_source"].endswith("h0") and summary["heads_dropped"][0].endswith("h1")
    assert json.loads((tmp_path / "m" / "adapter_config.json").read_text())["modules_to_save"] == ["classifier"]


def test_flare_adapters_are_refused(two, tmp_path):
    flare, _ = tiny("bert", "flare", fusion="add")
    save_adapter(flare, tmp_path / "flare")
    with pytest.raises(XltError, match="FLARE"):
        merge_adapters([two[0], tmp_path / "flare"], [0.5, 0.5], tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key, value, message", [
    ("base_model_name_or_path", "/elsewhere/model", "different models"),
    ("target_modules", ["query", "key"], "other modules"),
])
def test_mismatched_adapters_are_refused(two, tmp_path, key, value, message):
    other = tmp_path / "other"
    shutil.copytree(two[1], other)
    config = json.loads((other / "adapter_config.json").read_text())
    (other / "adapter_config.json").write_text(json.dumps({**config, key: value}))
    with pytest.raises(XltError, match=message):
        merge_adapters([two[0], other], [0.5, 0.5], tmp_path / "out")


def _cli(*argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    merge_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["merge", *argv])


@pytest.mark.parametrize("argv, message", [
    (["--adapters", "a", "--weights", "1"], "at least 2"),
    (["--adapters", "a", "b", "--weights", "0.9"], "1 values for 2 adapters"),
    (["--adapters", "a", "b", "--weights", "0.9", "nan"], "finite"),
    (["--adapters", "a", "b", "--weights", "0.9", "0.1", "--combination", "average"], "unknown --combination"),
    (["--adapters", "/nonexistent/a", "/nonexistent/b", "--weights", "0.9", "0.1"], "no LoRA adapter"),
])
def test_cli_validation(tmp_path, argv, message):
    with pytest.raises(XltError, match=message):
        merge_cli.run(_cli(*argv, "--output-dir", str(tmp_path / "out")))


def test_train_merge_evaluate(tmp_path, capsys):
    from test_cli import QUICK

    from xlt.cli import main
    from xlt.runs.evaluate import evaluate_run

    runs = [tmp_path / "task", tmp_path / "align"]
    for run, lr in zip(runs, ("1e-3", "5e-3")):
        assert main(["train", *QUICK, "--method", "lora", "--lr", lr, "--output-dir", str(run)]) == 0
    task_metrics = json.loads((runs[0] / "metrics.json").read_text())
    out = tmp_path / "merged"
    assert merge_cli.run(_cli("--adapters", *map(str, runs), "--weights", "1", "0", "--output-dir", str(out))) == 0
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["stage1_dir"] == task_metrics["stage1_dir"] and len(saved["merged_from"]) == 2
    result = evaluate_run(out)  # weight 0 on the second adapter: the task run's predictions again
    assert result["metrics"] == task_metrics["metrics"]
    assert result["matches_stored"] is None  # a merge stores no metrics until it is evaluated
    card = (out / "adapter" / "README.md").read_text()
    ids = [json.loads((run / ".xlt-run").read_text())["run_id"] for run in runs]
    assert f"| merged from | 1.0 · `task` (lora, run {ids[0]}), 0.0 · `align` (lora, run {ids[1]}) " \
           "(exact; head of the first) |" in card
    assert str(tmp_path) not in card  # the card names runs, not this machine's paths
    assert "Not evaluated when written" in card
    merge_runs(runs, [0.9, 0.1], out, overwrite=True)  # an earlier merge is replaced only when asked
    assert set(evaluate_run(out)["metrics"]) == {"accuracy", "macro_f1"}


def _tree(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", ["an input", "inside an input", "around the inputs"])
def test_output_overlapping_an_input_is_refused_before_writing(two, where):
    root = two[0].parent
    output = {"an input": two[0], "inside an input": two[1] / "merged", "around the inputs": root}[where]
    before = _tree(root)
    with pytest.raises(XltError) as err:
        merge_cli.run(_cli("--adapters", str(two[0]), str(two[1]), "--weights", "0.9", "0.1",
                           "--output-dir", str(output)))
    given = two[1] if where == "inside an input" else two[0]
    assert str(err.value) == f"--output-dir {output} overlaps the input {given}; write the merge to another folder"
    assert _tree(root) == before and not (two[1] / "merged").exists()


def test_overlap_is_found_through_symlinks_and_dots(two, tmp_path):
    (tmp_path / "link").symlink_to(two[0].parent)
    output = tmp_path / "link" / "." / two[0].name
    with pytest.raises(XltError, match="overlaps the input"):
        merge_adapters(list(two), [0.5, 0.5], output)


@pytest.mark.parametrize("library, cls", [("os", "system"), ("xlt_crafted_payload", "BertForSequenceClassification")])
def test_peft_combinations_never_import_what_adapter_config_names(two, tmp_path, monkeypatch, library, cls):
    """A saved file must never choose what code runs: PEFT combinations merge on a skeleton built from
    the LoRA factors, so a crafted auto_mapping or base model name is never imported or loaded."""
    import sys

    marker = tmp_path / "payload-ran"
    (tmp_path / "xlt_crafted_payload.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "class BertForSequenceClassification:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    crafted = []
    for i, folder in enumerate(two):
        shutil.copytree(folder, tmp_path / f"c{i}")
        config = json.loads((tmp_path / f"c{i}" / "adapter_config.json").read_text())
        config["auto_mapping"] = {"parent_library": library, "base_model_class": cls}
        config["base_model_name_or_path"] = "/nonexistent/model"
        (tmp_path / f"c{i}" / "adapter_config.json").write_text(json.dumps(config))
        crafted.append(tmp_path / f"c{i}")
    merge_adapters(crafted, [0.5, 0.5], tmp_path / "out", "linear")
    merge_adapters(list(two), [0.5, 0.5], tmp_path / "plain", "linear")
    assert not marker.exists() and "xlt_crafted_payload" not in sys.modules
    got = load_file(str(tmp_path / "out" / "adapter_model.safetensors"))
    want = load_file(str(tmp_path / "plain" / "adapter_model.safetensors"))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
