"""One row per method: what it reads, trains and which options apply come from the row, never from its name."""

import dataclasses
import re
from pathlib import Path

import pytest

from xlt.config import RunConfig
from xlt.errors import XltError
from xlt.methods.table import ALIGN_LORA_R, DEFAULT_LORA_R, METHODS, get_method, methods_with

SRC = Path(__file__).resolve().parents[1] / "src" / "xlt"


def test_every_option_a_row_names_is_a_setting():
    settings = {f.name for f in dataclasses.fields(RunConfig)}
    for method in METHODS.values():
        assert set(method.options) <= settings, method.name
    assert methods_with("fusion") == ["flare", "flare-mt"]
    assert methods_with("translator") == ["translate-test", "translate-train"]
    assert methods_with("mt_model") == ["flare-mt"] and methods_with("mixup_lambda") == ["x-mixup"]


def test_the_defaults_a_run_fills_in_come_from_its_row():
    for name, method in METHODS.items():
        cfg = RunConfig(method=name, task="nusax", target_lang="jv",
                        **({"translator": "lexicon"} if "translator" in method.options else {}),
                        **({"mt_model": "m"} if method.mt_encoder else {}))
        assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_targets) == (method.lora_r, 2 * method.lora_r,
                                                                  method.lora_targets), name
    assert (get_method("align").lora_r, get_method("lora").lora_r) == (ALIGN_LORA_R, DEFAULT_LORA_R) == (8, 64)
    assert RunConfig().stage1_lora_r == DEFAULT_LORA_R


def test_the_rows_say_what_each_method_fuses_mixes_and_trains():
    fusing = {name for name, m in METHODS.items() if m.fuses}
    assert fusing == {"flare", "flare-mt"} == {name for name, m in METHODS.items() if m.needs_source_pass}
    assert {name for name, m in METHODS.items() if m.mixes} == {"x-mixup"}
    assert {name for name, m in METHODS.items() if not m.trains} == {"zero-shot", "translate-test"}
    assert {name for name, m in METHODS.items() if m.plain_lora} == {"lora", "translate-train", "input-fusion",
                                                                      "align", "lora+align"}
    assert {name for name, m in METHODS.items() if m.fuses_source} == {"flare", "x-mixup"}
    assert [name for name, m in METHODS.items() if not m.checkpointing] == ["x-mixup"]
    get_method("x-mixup").check_family("encoder")
    for name in METHODS:  # only X-Mixup leaves a family out
        if name != "x-mixup":
            get_method(name).check_family("encoder-decoder")
    with pytest.raises(XltError, match=re.escape("x-mixup mixes the layer states of encoders and decoders with a "
                                                 "classification head; encoder-decoder models (mT5) are not supported")):
        get_method("x-mixup").check_family("encoder-decoder")


def test_no_code_branches_on_a_method_name():
    """Code asks the row; a comparison with a method's name (or an adapter kind) would be a second table."""
    names = "|".join(re.escape(name) for name in METHODS)
    pattern = re.compile(rf"""(method|adapter|\.name)\s*[!=]=\s*["']({names})["']""")
    hits = [f"{path.relative_to(SRC)}: {line.strip()}" for path in SRC.rglob("*.py")
            for line in path.read_text().splitlines() if pattern.search(line) and "stage1_method" not in line]
    assert hits == []


def test_preflight_reads_the_one_default_rank():
    from xlt.runs import preflight

    assert preflight.DEFAULT_LORA_R is DEFAULT_LORA_R
    assert RunConfig.__dataclass_fields__["stage1_lora_r"].default == DEFAULT_LORA_R


def test_adapter_settings_take_keywords_only():
    from xlt.methods.adapters import AdapterSettings

    with pytest.raises(TypeError):
        AdapterSettings(8, 16)
    assert AdapterSettings(r=8).alpha == 2 * DEFAULT_LORA_R
