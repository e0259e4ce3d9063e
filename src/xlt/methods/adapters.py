"""Stage-2 methods: what each one reads, whether it trains, and which adapter it attaches.

| method          | reads                      | trains            |
|-----------------|----------------------------|-------------------|
| zero-shot       | target text                | nothing           |
| translate-test  | English text of the example| nothing           |
| lora            | target text                | LoRA (q, v)       |
| translate-train | English train set machine-translated into the target | LoRA (q, v) |
| input-fusion    | English + target, 2× length| LoRA (q, v)       |
| flare           | target text + English pass | FLARE LoRA (q, v) |
| flare-mt        | target text + MT encoder pass of it | FLARE LoRA (q, v) + MT projection |
| x-mixup         | target text mixed with the English at a middle layer (cross-attention) | LoRA (q, v) + mixing module |
| align           | English-target pairs       | LoRA (all linear), contrastive loss only |
| lora+align      | target text + pairs        | LoRA (all linear), task and contrastive steps alternating |
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file

from xlt.errors import XltError
from xlt.flare.config import FlareConfig
from xlt.methods.table import DEFAULT_LORA_R, Method
from xlt.models.architectures import Architecture
from xlt.run_dir import ADAPTER_CONFIG, ADAPTER_INFO, ADAPTER_WEIGHTS, set_base_model


@dataclass(frozen=True, kw_only=True)
class AdapterSettings:
    """The adapter's settings, by keyword only (eleven fields: a positional call would bind them by position)."""

    r: int = DEFAULT_LORA_R
    alpha: int = 2 * DEFAULT_LORA_R
    dropout: float = 0.1
    fusion: str | None = None
    source_layer_offset: int = 1
    train_head: bool = False
    all_linear: bool = False  # LoRA on every linear projection of the layers (alignment), not just q, v
    pooling: str | None = None  # the task head's pooling (xlt.models.classifier); None where nothing pools
    mt_encoder: str | None = None  # FLARE-MT: the MT model whose encoder states are fused
    mt_hidden_size: int | None = None  # FLARE-MT: their width
    mixup: object | None = None  # x-mixup: xlt.methods.xmixup.MixupSettings (None: its defaults)


def lora_targets(model: torch.nn.Module, arch: Architecture, all_linear: bool) -> list[str]:
    """The attention projections of the table row, or every ``nn.Linear`` inside the layer stacks."""
    if not all_linear:
        return list(arch.targets)
    backbone = model.base_model
    names = set()
    for stack in arch.stacks:
        for layer in backbone.get_submodule(stack.layers):
            names |= {name for name, m in layer.named_modules() if isinstance(m, torch.nn.Linear)}
    return sorted(names)


def lora_config(method: Method, arch: Architecture, settings: AdapterSettings,
                model: torch.nn.Module | None = None) -> LoraConfig:
    if method.attention_only and settings.all_linear:
        raise XltError("FLARE adapts the attention query/value projections only; drop --lora-targets all-linear")
    saved = (list(arch.head) if settings.train_head else []) + (["xmixup"] if method.mixes else [])
    common = dict(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=lora_targets(model, arch, settings.all_linear) if settings.all_linear else list(arch.targets),
        modules_to_save=saved or None,  # x-mixup: its mixing module (xlt.methods.xmixup.XMIXUP) trains and is saved
    )
    if method.fuses:
        return FlareConfig(
            fusion=settings.fusion, source_layer_offset=settings.source_layer_offset, causal_stacks=arch.causal_stacks,
            mt_encoder=settings.mt_encoder, mt_hidden_size=settings.mt_hidden_size, **common
        )
    return LoraConfig(**common)


@dataclass
class AdaptedModel:
    """A task model, the method it runs and its adapter settings (the PEFT model itself for methods that train)."""

    model: torch.nn.Module
    method: Method
    settings: AdapterSettings | None = None
    mt_input: object | None = None  # FLARE-MT: how batches tokenize the target text for the MT encoder
    mixup: object | None = None  # x-mixup: its hooks, xlt.methods.xmixup.MixupWiring (the module and its settings)

    @property
    def source(self):
        """What batches give the model to fuse or mix (xlt.training.batches.source_inputs): the English text
        for FLARE and X-Mixup, the MT encoder's input for FLARE-MT, nothing for the other methods."""
        if self.method.mt_encoder:
            return self.mt_input
        return "text" if self.method.fuses_source else None

    @property
    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    @property
    def flare(self):
        """The FLARE tuner (source cache, pass counts), or None for other methods."""
        return self.model.base_model if self.method.fuses else None


def attach(model: torch.nn.Module, method: Method, arch: Architecture, settings: AdapterSettings) -> AdaptedModel:
    """Wrap the English task model for ``method``; methods that do not train get it frozen."""
    if not method.trains:
        for p in model.parameters():
            p.requires_grad_(False)
        return AdaptedModel(model, method, settings)
    if method.mixes:
        return attach_xmixup(model, method, arch, settings)
    return AdaptedModel(get_peft_model(model, lora_config(method, arch, settings, model)), method, settings)


def attach_xmixup(model: torch.nn.Module, method: Method, arch: Architecture,
                  settings: AdapterSettings) -> AdaptedModel:
    """LoRA (q, v) plus X-Mixup's mixing module (added before PEFT wraps the model, which then trains and
    saves it as ``modules_to_save``) and the hooks that run the source pass and mix (xlt.methods.xmixup)."""
    from xlt.methods.xmixup import MixupSettings, MixupWiring, add_mixup

    mixing = settings.mixup or MixupSettings()
    module = add_mixup(model, mixing)
    peft_model = get_peft_model(model, lora_config(method, arch, settings, model))
    return AdaptedModel(peft_model, method, settings, mixup=MixupWiring(model, arch, module))


def _mixup_info(adapted: AdaptedModel) -> dict | None:
    from xlt.methods.xmixup import describe

    return None if adapted.mixup is None else describe(adapted.mixup)


# adapter_config.json keys that change what an adapter computes; a load under other values is refused
SAVED_SETTINGS = ("peft_type", "r", "lora_alpha", "target_modules", "fusion", "source_layer_offset", "use_dora",
                  "use_rslora", "lora_bias", "modules_to_save", "mt_encoder", "mt_hidden_size")


def _comparable(config: dict, key: str):
    value = config.get(key)
    return sorted(value) if isinstance(value, (list, tuple, set)) else value


def check_adapter_settings(adapted: AdaptedModel, folder: str | Path, adapter_name: str = "default") -> None:
    """Refuse an adapter saved under other settings than the model's adapter ``adapter_name`` it is loaded into
    (an ``add_relu`` adapter has the same tensors as an ``add`` one and would otherwise load silently)."""
    folder = Path(folder)
    try:
        saved = json.loads((folder / ADAPTER_CONFIG).read_text())
        info = json.loads((folder / ADAPTER_INFO).read_text())
    except (OSError, ValueError) as err:
        raise XltError(f"adapter at {folder} has no readable {ADAPTER_CONFIG} and {ADAPTER_INFO}: {err}") from None
    live = adapted.model.peft_config[adapter_name].to_dict()
    live["peft_type"] = str(getattr(live["peft_type"], "value", live["peft_type"]))
    differ = [f"{key} {_comparable(saved, key)!r} (model: {_comparable(live, key)!r})" for key in SAVED_SETTINGS
              if _comparable(saved, key) != _comparable(live, key)]
    pooling = adapted.settings.pooling if adapted.settings else None
    if info.get("pooling") != pooling:
        differ.append(f"pooling {info.get('pooling')!r} (model: {pooling!r})")
    if info.get("mixup") != _mixup_info(adapted):
        differ.append(f"mixup {info.get('mixup')!r} (model: {_mixup_info(adapted)!r})")
    if differ:
        raise XltError(f"adapter at {folder} was saved with other settings: {'; '.join(differ)}")


def save_adapter(adapted: AdaptedModel, folder: str | Path, card: str | None = None,
                 state_dict: dict | None = None, base_model: str | None = None) -> None:
    """Adapter weights as safetensors + PEFT config, written to a temp dir and renamed into place.

    PEFT's boilerplate model card (README.md) is replaced by ``card``, or left out without one. ``state_dict``:
    the whole model's tensors as training's accelerator gathered them (``Trained.state_dict``; under FSDP or
    ZeRO-3 the module's own are shards); PEFT takes the adapter's from it. ``base_model``: the English (stage-1)
    model's folder the adapter was trained on, recorded as PEFT's ``base_model_name_or_path`` (xlt's pooled
    classifier leaves it empty) and as ``base_model`` in xlt_adapter.json.
    """
    from xlt.io import building_dir, write_text_atomic

    with building_dir(folder) as tmp:
        adapted.model.save_pretrained(tmp, safe_serialization=True,
                                      **({} if state_dict is None else {"state_dict": state_dict}))
        if not (tmp / ADAPTER_WEIGHTS).exists():
            raise RuntimeError(f"PEFT wrote no {ADAPTER_WEIGHTS}")
        (tmp / "README.md").unlink(missing_ok=True)
        if card is not None:
            write_text_atomic(tmp / "README.md", card)
        pooling = adapted.settings.pooling if adapted.settings else None
        info = {"method": adapted.method.name, "pooling": pooling}
        if adapted.mixup is not None:
            info["mixup"] = _mixup_info(adapted)
        if base_model is not None:
            info["base_model"] = base_model
            set_base_model(tmp, base_model)
        write_text_atomic(tmp / ADAPTER_INFO, json.dumps(info) + "\n")


def load_adapter(adapted: AdaptedModel, folder: str | Path, adapter_name: str = "default") -> int:
    """Load saved adapter weights into a freshly attached adapter (``adapter_name``: a further adapter added to
    the PEFT model, as a routed bank holds one per language); every tensor must match.

    A PEFT load reports missing/unexpected keys instead of failing; here any mismatch is an
    error, so a checkpoint can never "load" while leaving the adapter at its initialization.
    Returns the number of tensors loaded.
    """
    path = Path(folder) / ADAPTER_WEIGHTS
    if not path.exists():
        raise XltError(f"no adapter weights at {path}")
    check_adapter_settings(adapted, folder, adapter_name)
    state = load_file(str(path))
    try:
        result = set_peft_model_state_dict(adapted.model, state, adapter_name=adapter_name)
    except KeyError as err:  # PEFT looks up each modules_to_save tensor (X-Mixup's module) by name
        raise XltError(f"adapter at {folder} does not match the model: 1 missing tensor ({err.args[0]!r}, "
                       "a trained module's)") from None
    unexpected = list(result.unexpected_keys)
    expected = {n for n, p in adapted.model.named_parameters() if p.requires_grad} if adapter_name == "default" \
        else {n for n, _ in adapted.model.named_parameters() if f".{adapter_name}." in n}  # PEFT names them by it
    missing = sorted(expected & set(result.missing_keys))
    if unexpected or missing or not state:
        raise XltError(
            f"adapter at {folder} does not match the model: {len(missing)} missing, {len(unexpected)} unexpected "
            f"tensors (e.g. {(missing + unexpected)[:2]})"
        )
    return len(state)

