"""FLARE as a PEFT method: its own peft_type, reload through stock PEFT, refused options, the source cache."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import LABELS, tiny, tiny_classifier
from peft import LoraConfig, PeftModel

from xlt.cli import main
from xlt.data.examples import Example
from xlt.errors import XltError
from xlt.flare.config import FlareConfig
from xlt.methods.adapters import AdapterSettings, attach, load_adapter, save_adapter
from xlt.methods.table import get_method
from xlt.models.architectures import architecture_for
from xlt.models.loading import load_tokenizer, resolve_model
from xlt.training.batches import make_batch
from xlt.training.loop import TrainSettings, task_steps, train

SRC = Path(__file__).resolve().parents[1] / "src"
EXAMPLES = [Example(("a small test sentence",), ("the English side of it",), 0, "e0"),
            Example(("another one, longer than the first",), ("short",), 1, "e1"),
            Example(("three",), ("the third English sentence is the longest one here",), 2, "e2")]


def _batch(tok, source="text", examples=EXAMPLES):
    return make_batch(tok, examples, "target", 32, source=source)


def _fresh_base(family, tok, adapted):
    """The same task model as ``adapted``'s, without the adapter (the head copied over)."""
    base = tiny_classifier(resolve_model(f"tiny-random/{family}"), tok)
    state = {k.removeprefix("base_model.model.").replace(".base_layer.", "."): v
             for k, v in adapted.model.state_dict().items()
             if "lora_" not in k and "modules_to_save" not in k}
    missing, unexpected = base.load_state_dict(state, strict=False)
    assert not unexpected and all("classifier" not in k and "classification_head" not in k for k in missing)
    return base


@pytest.mark.parametrize("family", ["bert", "llama", "mt5"])
def test_saved_flare_adapter_names_flare_and_reloads_through_stock_peft(family, tmp_path):
    adapted, tok = tiny(family, fusion="cross_attention")
    batch = _batch(tok)
    adapted.model.eval()
    with torch.no_grad():
        logits = adapted.model(**batch.inputs).logits
    adapted.model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "FLARE" and saved["fusion"] == "cross_attention"
    assert saved["source_layer_offset"] == 1
    assert saved["causal_stacks"] == architecture_for(adapted.model.config.model_type).causal_stacks

    reloaded = PeftModel.from_pretrained(_fresh_base(family, tok, adapted), tmp_path).eval()
    assert type(reloaded.base_model).__name__ == "FlareTuner"
    assert isinstance(reloaded.peft_config["default"], FlareConfig)
    with torch.no_grad():
        again = reloaded(**batch.inputs).logits
    assert torch.equal(again, logits)


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_without_xlt_a_flare_adapter_fails_to_load_instead_of_becoming_lora(tmp_path):
    adapted, _ = tiny("bert")
    adapted.model.save_pretrained(tmp_path / "adapter")
    result = _python("from peft import PeftConfig; PeftConfig.from_pretrained('adapter')", tmp_path)
    assert result.returncode != 0 and "KeyError: 'FLARE'" in result.stderr


@pytest.mark.parametrize("order", ["import xlt\nimport peft", "import peft\nimport xlt"])
def test_import_xlt_registers_flare_whichever_is_imported_first(order, tmp_path):
    adapted, _ = tiny("bert", fusion="mul")
    adapted.model.save_pretrained(tmp_path / "adapter")
    code = f"{order}\nfrom peft import PeftConfig\nprint(type(PeftConfig.from_pretrained('adapter')).__name__)"
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["FlareConfig"]


@pytest.mark.parametrize("first", ["import xlt.flare.config", "import xlt.flare.tuner", "import xlt.flare.layer",
                                   "from xlt.flare import FlareConfig"])
def test_flare_registers_whichever_of_its_modules_imports_peft(first, tmp_path):
    """The import of PEFT that registers FLARE comes from inside a half-built FLARE module: it registers once done."""
    code = (f"{first}\nfrom peft import mapping\n"
            "print(mapping.PEFT_TYPE_TO_CONFIG_MAPPING['FLARE'].__name__, mapping.PEFT_TYPE_TO_TUNER_MAPPING['FLARE'].__name__,"
            " mapping.PEFT_TYPE_TO_PREFIX_MAPPING['FLARE'])")
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["FlareConfig", "FlareTuner", "lora_"]


def test_xlt_flare_exports_its_classes_and_loads_them_only_when_asked(tmp_path):
    from xlt.flare import FlareConfig as exported_config
    from xlt.flare import FlareLinear, FlareTuner
    from xlt.flare.layer import FlareLinear as layer_class
    from xlt.flare.tuner import FlareTuner as tuner_class

    assert (exported_config, FlareTuner, FlareLinear) == (FlareConfig, tuner_class, layer_class)
    with pytest.raises(AttributeError, match="has no attribute 'FlareModel'"):
        import xlt.flare

        xlt.flare.FlareModel
    result = _python("import sys, xlt.flare, xlt.flare.registration, xlt.flare.fusion_names\n"
                     "print(sorted(m for m in ('torch', 'peft') if m in sys.modules))", tmp_path)
    assert result.returncode == 0 and result.stdout.split() == ["[]"]


def test_the_command_line_still_starts_without_importing_torch(tmp_path):
    result = _python("import sys, xlt.cli, xlt.config, xlt.runs.preflight\n"
                     "print(sorted(m for m in ('torch', 'peft') if m in sys.modules))", tmp_path)
    assert result.returncode == 0 and result.stdout.split() == ["[]"]


def test_a_flare_adapter_loaded_into_a_lora_model_is_refused(tmp_path):
    flare, tok = tiny("bert", fusion="add")
    save_adapter(flare, tmp_path / "adapter")
    lora, _ = tiny("bert", method="lora", fusion=None)
    with pytest.raises(XltError, match=r"peft_type 'FLARE' \(model: 'LORA'\)"):
        load_adapter(lora, tmp_path / "adapter")
    other, _ = tiny("bert", fusion="add_relu")
    with pytest.raises(XltError, match=r"fusion 'add' \(model: 'add_relu'\)"):
        load_adapter(other, tmp_path / "adapter")


@pytest.mark.parametrize("option, value", [("use_dora", True), ("lora_bias", True), ("use_qalora", True),
                                           ("init_lora_weights", "pissa"), ("layer_replication", [[0, 1]])])
def test_lora_options_flare_cannot_honour_are_refused_in_one_line(option, value):
    with pytest.raises(ValueError, match=rf"^FLARE does not support {option}=") as err:
        FlareConfig(target_modules=["query"], **{option: value})
    assert "\n" not in str(err.value)


def test_every_lora_option_is_either_honoured_or_refused():
    """A LoraConfig option added by a newer PEFT fails here until FLARE decides what to do with it."""
    from dataclasses import fields

    from peft import PeftConfig

    from xlt.flare.config import HONOURED, UNSUPPORTED

    lora_options = {f.name for f in fields(LoraConfig)} - {f.name for f in fields(PeftConfig)}
    assert lora_options - set(HONOURED) - set(UNSUPPORTED) == set()
    assert not set(HONOURED) & set(UNSUPPORTED)


def test_unknown_fusion_and_offset_are_refused_by_the_config():
    with pytest.raises(XltError, match="unknown fusion 'concat'"):
        FlareConfig(target_modules=["query"], fusion="concat")
    with pytest.raises(ValueError, match="source_layer_offset must be 0 or 1, got 2"):
        FlareConfig(target_modules=["query"], source_layer_offset=2)


@pytest.mark.parametrize("training", [False, True])
def test_mixed_adapter_batches_are_refused(training):
    adapted, tok = tiny("bert")
    adapted.model.train(training)
    batch = _batch(tok)
    with pytest.raises(ValueError, match="FLARE does not support mixed adapter batches"):
        adapted.model(**batch.inputs, adapter_names=["default"] * len(EXAMPLES))


def test_a_flare_model_takes_only_flare_adapters():
    adapted, _ = tiny("bert")
    with pytest.raises(ValueError, match="Cannot combine adapters with different peft types. Found FLARE and"):
        adapted.model.add_adapter("plain", LoraConfig(target_modules=["query"]))


def test_zero_source_is_an_argument_of_the_call_and_changes_the_output():
    adapted, tok = tiny("bert")
    adapted.model.eval()
    with torch.no_grad():
        fused = adapted.model(**_batch(tok).inputs).logits
        zeroed = adapted.model(**_batch(tok, "zero").inputs).logits
        fused_again = adapted.model(**_batch(tok).inputs).logits
    assert "zero_source" in _batch(tok, "zero").inputs and not (fused - zeroed).abs().max() < 1e-4
    assert torch.equal(fused, fused_again)  # nothing stays switched after the zeroed call


@pytest.mark.parametrize("module", ["training/loop.py", "training/batches.py", "processes.py",
                                    "kinds/generation.py", "kinds/verbalizer.py", "kinds/registry.py"])
def test_training_and_decoding_code_imports_nothing_from_flare(module):
    tree = ast.parse((SRC / "xlt" / module).read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and "flare" in m]


def test_the_source_pass_runs_under_the_callers_autocast():
    adapted, tok = tiny("bert")
    seen = []
    adapted.flare.wiring.backbone.register_forward_pre_hook(
        lambda m, a: seen.append(torch.is_autocast_enabled("cpu")))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        adapted.model(**_batch(tok).inputs)
    assert seen == [True, True]  # the frozen source pass, then the target pass


def _train_twice(cache_bytes, tmp_path=None, epochs=2, seed=0):
    adapted, tok = tiny("bert", dropout=0.0, seed=seed)
    if cache_bytes is not None:
        adapted.flare.enable_source_cache(cache_bytes, tmp_path)
    examples = EXAMPLES * 3
    plan = task_steps(examples, lambda exs: _batch(tok, examples=exs), batch_size=4, epochs=epochs, seed=0)
    train(adapted.model, plan, TrainSettings(epochs=epochs, lr=1e-3, batch_size=4, show_progress=False))
    lora = {n: p.detach().clone() for n, p in adapted.model.named_parameters() if "lora_" in n}
    return adapted, lora


def test_the_cache_runs_the_source_pass_once_per_example_and_trains_alike(tmp_path):
    uncached, lora_uncached = _train_twice(None)
    cached, lora_cached = _train_twice(2**30)
    spilled, lora_spilled = _train_twice(0, tmp_path)  # every row goes to the memory-mapped file
    # 9 rows (3 distinct texts) per epoch, 2 epochs
    assert uncached.flare.source_rows_computed == 18
    assert cached.flare.source_rows_computed == 3 and len(cached.flare.source_cache) == 3
    assert spilled.flare.source_rows_computed == 3 and spilled.flare.source_cache.memory_bytes == 0
    assert spilled.flare.source_cache.spilled_bytes > 0
    for name, value in lora_uncached.items():
        torch.testing.assert_close(lora_cached[name], value, rtol=1e-4, atol=1e-5)
        assert torch.equal(lora_spilled[name], lora_cached[name])


def test_cached_states_equal_the_frozen_pass_for_any_padding_width():
    adapted, tok = tiny("llama")  # left padding
    cache = adapted.flare.enable_source_cache(2**30)
    alone = _batch(tok, examples=EXAMPLES[:1]).inputs
    with torch.no_grad():
        adapted.model.train()  # training-mode calls store rows (evaluation only reads them)
        adapted.model(**_batch(tok).inputs)  # fills the cache inside a wider, padded batch
        assert len(cache) == 3
        adapted.model.eval()
        computed = adapted.flare.source_rows_computed
        cached = adapted.model(**alone).logits
        assert adapted.flare.source_rows_computed == computed  # read from the cache
        adapted.flare.source_cache = None
        fresh = adapted.model(**alone).logits
    torch.testing.assert_close(cached, fresh, rtol=1e-5, atol=1e-6)


def test_metrics_record_source_passes_per_training_example(tmp_path):
    common = ["train", "--model", "tiny-random/bert", "--task", "nusax", "--method", "flare", "--target-lang", "jv",
              "--max-train-examples", "8", "--max-eval-examples", "4", "--epochs", "2", "--stage1-epochs", "1",
              "--stage1-max-train-examples", "8", "--batch-size", "4", "--no-show-progress",
              "--stage1-dir", str(tmp_path / "stage1")]
    assert main([*common, "--output-dir", str(tmp_path / "cached")]) == 0
    assert main([*common, "--source-cache-gb", "0", "--output-dir", str(tmp_path / "uncached")]) == 0
    cached = json.loads((tmp_path / "cached" / "metrics.json").read_text())
    uncached = json.loads((tmp_path / "uncached" / "metrics.json").read_text())
    assert cached["source_passes_per_example"] == 1.0
    assert uncached["source_passes_per_example"] == 2.0
    assert cached["metrics"].keys() == uncached["metrics"].keys()


def test_attach_builds_a_flare_tuner_for_flare_and_plain_lora_otherwise():
    path = resolve_model("tiny-random/bert")
    tok = load_tokenizer(path)
    arch = architecture_for("bert")
    settings = AdapterSettings(r=4, alpha=8, fusion="add")
    flare = attach(tiny_classifier(path, tok), get_method("flare"), arch, settings)
    lora = attach(tiny_classifier(path, tok), get_method("lora"), arch, AdapterSettings(r=4, alpha=8))
    assert type(flare.model.base_model).__name__ == "FlareTuner" and flare.flare is flare.model.base_model
    assert type(lora.model.base_model).__name__ == "LoraModel" and lora.flare is None
    assert len(LABELS) == flare.model(**_batch(tok).inputs).logits.shape[-1]
