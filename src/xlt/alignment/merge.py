"""Merge LoRA modules by weighted averaging (Liu & Niehues): a task adapter plus an alignment adapter.

``exact`` stores ΔW = Σ_i w_i · s_i · B_i A_i without approximation at the summed rank R = Σ r_i
(A stacked by rows, scaled B blocks side by side, scaling 1), so no base model is needed. The other
combinations are PEFT's ``add_weighted_adapter`` types, run on the base model named in the adapters.
Only the first adapter's task head (``modules_to_save``) is kept: a merged model has one head.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from xlt.alignment.merge_names import COMBINATIONS
from xlt.errors import XltError, echo
from xlt.io import building_dir, failed_writes_named, file_sha256, write_json, write_text_atomic
from xlt.models.loading import read_json_object
from xlt.run_dir import (ADAPTER_CONFIG, ADAPTER_INFO, ADAPTER_WEIGHTS, CARD, MARKER, check_replaceable, missing_files,
                         model_card, output_lock, run_id, stage1_dir_of, write_marker, write_run)

MERGE_INFO = "xlt_merge.json"
LORA_KEYS = (".lora_A.weight", ".lora_B.weight")


def adapter_folder(path: str | Path) -> Path:
    """A run directory's ``adapter/`` or an adapter folder itself."""
    path = Path(path)
    for folder in (path / "adapter", path):
        if (folder / ADAPTER_WEIGHTS).is_file() and (folder / ADAPTER_CONFIG).is_file():
            return folder
    raise XltError(f"no LoRA adapter at {path} (expected {ADAPTER_WEIGHTS} and {ADAPTER_CONFIG})")


def read_adapter_config(folder: Path) -> dict:
    """The adapter's PEFT config, checked for what a merge reads: a JSON object of a plain LoRA adapter
    with its rank, alpha and target modules (a broken or hand-edited file is one line naming it)."""
    path = folder / ADAPTER_CONFIG
    config = read_json_object(path)
    if "fusion" in config:
        raise XltError(f"{folder} is a FLARE adapter: its update depends on the source input and cannot be merged")
    if config.get("peft_type") != "LORA" or config.get("use_dora") or config.get("lora_bias"):
        raise XltError(f"{folder} is not a plain LoRA adapter (peft_type LORA, no DoRA, no LoRA bias; {path} says "
                       f"peft_type {echo(config.get('peft_type'))}); only plain LoRA can be merged")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise XltError(f"{folder} uses per-module ranks (rank_pattern/alpha_pattern), which merge does not support")
    r, alpha, targets = config.get("r"), config.get("lora_alpha"), config.get("target_modules")
    if type(r) is not int or r < 1:
        raise XltError(f"{path}: r must be a positive integer (the LoRA rank), got {echo(r)}")
    if type(alpha) not in (int, float) or not (math.isfinite(alpha) and alpha > 0):
        raise XltError(f"{path}: lora_alpha must be a positive number, got {echo(alpha)}")
    if not (isinstance(targets, str) and targets) and not (
            isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets)):
        raise XltError(f"{path}: target_modules must name the adapted modules (a list of names), got {echo(targets)}")
    return config


def _read(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    return read_adapter_config(folder), load_file(str(folder / ADAPTER_WEIGHTS))


def _split(state: dict[str, torch.Tensor], folder: Path) -> tuple[dict[str, tuple], dict[str, torch.Tensor]]:
    """{module: (A, B)} and the remaining (head) tensors."""
    lora, head = {}, {}
    for key, tensor in state.items():
        if key.endswith(LORA_KEYS):
            lora.setdefault(key[: -len(".lora_A.weight")], {})[key[-len("A.weight")]] = tensor
        elif ".lora_" in key:
            raise XltError(f"{folder} holds an unsupported LoRA tensor {key!r}")
        else:
            head[key] = tensor
    return {m: (t["A"], t["B"]) for m, t in lora.items()}, head


def scaling(config: dict) -> float:
    r, alpha = config["r"], config["lora_alpha"]
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def _check(configs: list[dict], loras: list[dict], folders: list[Path]) -> None:
    base = configs[0].get("base_model_name_or_path")
    targets = sorted(configs[0].get("target_modules") or [])
    for config, lora, folder in zip(configs[1:], loras[1:], folders[1:]):
        if config.get("base_model_name_or_path") != base:
            raise XltError(f"{folder} adapts base model {config.get('base_model_name_or_path')!r}, "
                           f"{folders[0]} adapts {base!r}: adapters of different models cannot be merged")
        if sorted(config.get("target_modules") or []) != targets or set(lora) != set(loras[0]):
            raise XltError(f"{folder} adapts other modules than {folders[0]} "
                           f"({sorted(config.get('target_modules') or [])} vs {targets}); merge needs the same ones")


def _exact(configs: list[dict], loras: list[dict], weights: list[float]) -> dict[str, torch.Tensor]:
    out = {}
    for module in loras[0]:
        dtype = loras[0][module][0].dtype
        a = torch.cat([lora[module][0].float() for lora in loras], dim=0)
        b = torch.cat([w * scaling(c) * lora[module][1].float() for lora, c, w in zip(loras, configs, weights)], dim=1)
        out[f"{module}.lora_A.weight"] = a.to(dtype).contiguous()
        out[f"{module}.lora_B.weight"] = b.to(dtype).contiguous()
    return out


def _skeleton(loras: list[dict]) -> torch.nn.Module:
    """A module tree with a bias-free ``Linear`` at each adapted path, shaped from the LoRA factors.

    PEFT's combinations read only the factors, so no base model is loaded: nothing named in an
    adapter's files (``base_model_name_or_path``, ``auto_mapping``) chooses what code runs or what is
    downloaded, and custom heads (xlt's pooled classifier) merge like any other."""
    root = torch.nn.Module()
    for module, (a, b) in loras[0].items():
        *parents, leaf = module.removeprefix("base_model.model.").split(".")
        parent = root
        for name in parents:
            if name not in parent._modules:
                parent.add_module(name, torch.nn.Module())
            parent = parent._modules[name]
        parent.add_module(leaf, torch.nn.Linear(a.shape[1], b.shape[0], bias=False))
    return root


def _with_peft(configs: list[dict], loras: list[dict], weights: list[float], combination: str) -> tuple[dict, int]:
    """PEFT's add_weighted_adapter on a skeleton of the adapted modules; heads are added back by the caller."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    model = _skeleton(loras)
    names = [f"a{i}" for i in range(len(configs))]
    peft_model = None
    for name, config, lora in zip(names, configs, loras):
        fields = {k: v for k, v in config.items() if k in LoraConfig.__dataclass_fields__}
        lora_config = LoraConfig(**{**fields, "modules_to_save": None, "inference_mode": True})
        if peft_model is None:
            peft_model = get_peft_model(model, lora_config, adapter_name=name)
        else:
            peft_model.add_adapter(name, lora_config)
        state = {f"{m}.lora_{ab}.weight": t for m, pair in lora.items() for ab, t in zip("AB", pair)}
        if set_peft_model_state_dict(peft_model, state, adapter_name=name).unexpected_keys:
            raise XltError(f"adapter {name} does not fit the modules of the first adapter")
    try:
        peft_model.add_weighted_adapter(names, weights, "merged", combination_type=combination)
    except ValueError as err:
        raise XltError(f"--combination {combination}: {str(err).splitlines()[0]}") from None
    state = get_peft_model_state_dict(peft_model, adapter_name="merged")
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}, peft_model.peft_config["merged"].r


def english_model_of(adapter: str | Path) -> str | None:
    """The stage-1 model (``stage1_dir`` in metrics.json) an adapter was trained on, when it sits in a run
    directory (given as the run or as its ``adapter/``); None for a bare adapter folder. PEFT's
    ``base_model_name_or_path`` cannot tell: xlt's pooled classifiers leave it empty."""
    folder = adapter_folder(adapter)
    run = folder.parent if folder.name == "adapter" else None
    if run is None or not (run / "metrics.json").is_file():
        return None
    stage1 = stage1_dir_of(run, read_json_object(run / "metrics.json"))
    return None if stage1 is None else str(stage1)


def check_same_english_model(adapters: list[str | Path]) -> None:
    """Refuse adapters trained on different stage-1 (English task) models: each is a change to its own
    model's weights, and their sum fits neither (the runs differ in model, task, seed or stage-1 settings)."""
    known = [(adapter, english_model_of(adapter)) for adapter in adapters]
    known = [(adapter, stage1) for adapter, stage1 in known if stage1 is not None]
    for adapter, stage1 in known[1:]:
        if Path(stage1).resolve() != Path(known[0][1]).resolve():
            raise XltError(f"{adapter} was trained on the English model {stage1}, {known[0][0]} on {known[0][1]}: "
                           "adapters of different stage-1 models cannot be merged")


def check_output(inputs: list[str | Path], output: str | Path) -> None:
    """Refuse an output that is one of the inputs, lies inside one, or contains one: writing it would
    overwrite what is being merged. Compared as resolved paths, before anything is written."""
    out = Path(output).resolve()
    for given in inputs:
        path = Path(given).resolve()
        if out == path or out.is_relative_to(path) or path.is_relative_to(out):
            raise XltError(f"--output-dir {output} overlaps the input {given}; write the merge to another folder")


def _merge(adapters: list[str | Path], weights: list[float], combination: str) -> tuple[dict, dict, dict]:
    """(tensors, adapter config, summary) of the weighted merge; reads the inputs, writes nothing."""
    if combination not in COMBINATIONS:
        raise XltError(f"unknown combination {combination!r}; choose one of: {', '.join(COMBINATIONS)}")
    if len(adapters) < 2 or len(adapters) != len(weights):
        raise XltError(f"merge needs at least 2 adapters and one weight each, got {len(adapters)} and {len(weights)}")
    folders = [adapter_folder(a) for a in adapters]
    check_same_english_model(adapters)
    read = [_read(f) for f in folders]
    configs = [c for c, _ in read]
    split = [_split(state, f) for (_, state), f in zip(read, folders)]
    loras, heads = [s[0] for s in split], [s[1] for s in split]
    _check(configs, loras, folders)
    weights = [float(w) for w in weights]
    if combination == "exact":
        tensors, rank = _exact(configs, loras, weights), sum(c["r"] for c in configs)
    else:
        tensors, rank = _with_peft(configs, loras, weights, combination)
    tensors.update(heads[0])
    config = {**configs[0], "r": rank, "lora_alpha": rank, "use_rslora": False, "rank_pattern": {},
              "alpha_pattern": {}}
    summary = {
        "inputs": [str(f.resolve()) for f in folders], "weights": weights, "combination": combination,
        "ranks": [c["r"] for c in configs], "rank": rank, "modules_merged": len(loras[0]),
        "head_source": str(folders[0].resolve()) if heads[0] else None, "head_tensors": sorted(heads[0]),
        "heads_dropped": [str(f.resolve()) for f, h in zip(folders[1:], heads[1:]) if h],
    }
    return tensors, config, summary


def _input_name(folder: Path) -> str:
    """An input adapter as xlt_merge.json names it: its folder's name (a run's ``adapter/`` with its run's)."""
    folder = folder.resolve()
    return f"{folder.parent.name}/{folder.name}" if folder.name == "adapter" else folder.name


def shareable(summary: dict) -> dict:
    """xlt_merge.json, which travels with the adapter: the merge summary with each input named and
    identified by the SHA-256 of its weights, not located by this machine's paths."""
    inputs = [Path(path) for path in summary["inputs"]]
    names = {str(path): _input_name(path) for path in inputs}
    return {**summary,
            "inputs": [{"name": names[str(p)], "sha256": file_sha256(p / ADAPTER_WEIGHTS)} for p in inputs],
            "head_source": names.get(summary["head_source"]) if summary["head_source"] else None,
            "heads_dropped": [names.get(path, Path(path).name) for path in summary["heads_dropped"]]}


def _write_adapter(folder: Path, tensors: dict, config: dict, summary: dict, card: str | None = None,
                   marker: bool = False) -> None:
    """The merged adapter folder, built in a temp sibling and swapped in whole (``marker``: an output
    folder of its own, marked as xlt's and keeping the mode of the folder it replaces)."""
    with failed_writes_named(folder):
        _build_adapter(folder, tensors, config, summary, card, marker)


def _build_adapter(folder: Path, tensors: dict, config: dict, summary: dict, card: str | None, marker: bool) -> None:
    with building_dir(folder, keep_mode=marker) as tmp:
        if marker:
            write_marker(tmp)
        save_file(tensors, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        write_json(tmp / ADAPTER_CONFIG, config)
        write_json(tmp / MERGE_INFO, shareable(summary))
        task_adapter = Path(summary["inputs"][0])  # its method and pooling go with the head that is kept
        if (task_adapter / ADAPTER_INFO).is_file():
            shutil.copyfile(task_adapter / ADAPTER_INFO, tmp / ADAPTER_INFO)
        if card is not None:
            write_text_atomic(tmp / CARD, card)


def merge_adapters(adapters: list[str | Path], weights: list[float], output: str | Path,
                   combination: str = "exact", overwrite: bool = False) -> dict:
    """Write the weighted merge of plain LoRA adapters to ``output`` (atomically); returns a summary.

    The task head (``modules_to_save`` tensors) comes from the FIRST adapter, the task adapter; the
    others' heads are dropped, since the merged model can have only one head. ``output`` must be new,
    empty, or an earlier merge (``overwrite``).
    """
    check_output(adapters, output)
    check_replaceable(output, (ADAPTER_WEIGHTS, ADAPTER_CONFIG, ADAPTER_INFO, MERGE_INFO, CARD, MARKER), overwrite)
    with output_lock(output):
        tensors, config, summary = _merge(adapters, weights, combination)
        _write_adapter(Path(output), tensors, config, summary, marker=True)
    return summary


def _run_name(run: Path) -> dict:
    """A merged run as the model card names it: folder name, method and run id (no path)."""
    from xlt.config import RunConfig

    return {"name": run.resolve().name, "method": RunConfig.from_yaml(run / "config.yaml").method,
            "run_id": run_id(run) or "?"}


def is_run_dir(path: str | Path) -> bool:
    return not missing_files(path, trains=True)


def merge_runs(run_dirs: list[str | Path], weights: list[float], output_dir: str | Path,
               combination: str = "exact", overwrite: bool = False) -> dict:
    """Merge finished runs' adapters into a run directory that ``xlt evaluate`` can load.

    The first run supplies config.yaml (with lora_r/lora_alpha set to the merged rank, which is what
    ``attach`` reads back) and the English model (``stage1_dir``); the directory is swapped in whole
    (new, empty, or an earlier xlt run with ``overwrite``).
    """
    check_output(run_dirs, output_dir)
    check_replaceable(output_dir, overwrite=overwrite)
    with output_lock(output_dir):
        return _merge_runs(run_dirs, weights, Path(output_dir), combination)


def _merge_runs(run_dirs: list[str | Path], weights: list[float], out: Path, combination: str) -> dict:
    from xlt.config import RunConfig
    from xlt.methods.table import get_method

    for run in run_dirs:
        if not is_run_dir(run):
            raise XltError(f"{run} is not a finished run with an adapter (config.yaml, metrics.json, adapter/)")
    first = RunConfig.from_yaml(Path(run_dirs[0]) / "config.yaml")
    if not get_method(first.method).plain_lora:
        raise XltError(f"the first run uses method {first.method!r}; merge needs a plain LoRA run first")
    tensors, adapter_config, summary = _merge(run_dirs, weights, combination)
    config = first.replace(lora_r=summary["rank"], lora_alpha=summary["rank"], output_dir=str(out)).to_dict()
    saved = json.loads((Path(run_dirs[0]) / "metrics.json").read_text())
    keep = ("task", "method", "model", "source_lang", "target_lang", "seed", "stage1_dir", "stage1_examples",
            "data_files", "test_data_digest")  # evaluate checks the data of the first run's config
    metrics = {**{k: saved[k] for k in keep if k in saved},
               "merged_from": [str(Path(r).resolve()) for r in run_dirs], "merge": summary,
               "merged_runs": [_run_name(Path(r)) for r in run_dirs]}
    if "stage1_dir" in metrics:  # an exported first run names its own copy relatively: the merge is elsewhere
        metrics["stage1_dir"] = str(stage1_dir_of(run_dirs[0], saved).resolve())
    card = model_card(config, metrics)
    with failed_writes_named(out):
        write_run(out, config, metrics, lambda folder: _write_adapter(folder, tensors, adapter_config, summary, card))
    return summary
