"""Model names → loaded models: the embedded ``e5-small``, ``tiny-random/<family>``, or any HF id/path.

Never ``trust_remote_code``: a model id runs only the modeling code shipped with ``transformers``.
:func:`check_model` looks at a local folder before anything loads (config.json, weight-file headers),
so a broken folder is one line of error in a second, not a traceback after stage 1.
"""

from __future__ import annotations

import json
from pathlib import Path

from xlt.errors import XltError
from xlt.models.architectures import ARCHITECTURES, architecture_for, backbone_model_type

EMBEDDED = "e5-small"
GEMMA3 = "gemma3-270m"  # a real decoder offline, from the [gemma] extra (xlt.models.gemma3)
TINY_PREFIX = "tiny-random/"


def resolve_model(name: str) -> str:
    """The local folder (built on first use) or the HF id to load ``name`` from."""
    if name == EMBEDDED:
        from xlt.models.e5 import ensure_e5_small

        return str(ensure_e5_small())
    if name == GEMMA3:
        from xlt.models.gemma3 import ensure_gemma3_270m

        return str(ensure_gemma3_270m())
    if name.startswith(TINY_PREFIX):
        from xlt.models.tiny import ensure_tiny

        return str(ensure_tiny(name[len(TINY_PREFIX):]))
    return name


def model_slug(name: str) -> str:
    """A filesystem-safe name for cache folders."""
    return name.strip("/").replace("/", "--").replace(":", "-")


def load_tokenizer(path: str):
    """The tokenizer; a local folder that names the generic fast class gets exactly its tokenizer.json
    (``AutoTokenizer`` would substitute a model-specific class that rebuilds its own pipeline)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    config = Path(path) / "tokenizer_config.json"
    generic = config.is_file() and json.loads(config.read_text()).get("tokenizer_class") == "PreTrainedTokenizerFast"
    try:
        if generic:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
        else:
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except OSError as err:
        raise XltError(f"cannot load a tokenizer from {path!r}: {str(err).splitlines()[0]}") from None
    if tokenizer.pad_token is None:  # e.g. Llama 3: pad with EOS; masks keep it out of pooling and fusion
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_classifier(path: str, labels: tuple[str, ...], pad_token_id: int | None = None):
    """A sequence-classification model with ``len(labels)`` outputs and the label names in its config.

    Decoder classifiers pool the last non-pad token, so the model must know the tokenizer's pad id.
    """
    from transformers import AutoModelForSequenceClassification

    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            trust_remote_code=False,
        )
    except OSError as err:
        raise XltError(f"cannot load model {path!r}: {str(err).splitlines()[0]}") from None
    if pad_token_id is not None and model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id
    return model


SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors format's own bound on the JSON header
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")  # refused: torch.load of a pickle


def check_model(name: str) -> str | None:
    """Cheap checks of ``--model`` before anything loads; the model type of a local folder, else None.

    The embedded and tiny models are built by xlt; a Hub id is checked when it loads.
    """
    if name == EMBEDDED or name.startswith(TINY_PREFIX):
        return None
    path = Path(name)
    if path.exists():
        return check_model_folder(path)
    if name.startswith(("/", "./", "../", "~")):
        raise XltError(f"model folder {name} does not exist")
    return None


def check_model_folder(folder: str | Path) -> str:
    """The folder's model type, after checking that xlt has an architecture row for it and that its
    weight files are whole (safetensors headers only: no tensor is read)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise XltError(f"model path {folder} is not a folder")
    config = read_json_object(folder / "config.json", f"model folder {folder} has no config.json")
    model_type = backbone_model_type(config)  # a stage-1 classifier: its backbone's
    supported = ", ".join(sorted(ARCHITECTURES))
    if not isinstance(model_type, str) or not model_type:
        raise XltError(f"{folder / 'config.json'} has no model_type; xlt needs one of: {supported}")
    auto_map = config.get("auto_map")
    if model_type not in ARCHITECTURES and isinstance(auto_map, dict) and auto_map:
        classes = ", ".join(sorted({str(v) for v in auto_map.values()}))
        raise XltError(f"{folder / 'config.json'} names custom code ({classes}) for model type {model_type!r}; "
                       f"xlt runs no remote code and supports: {supported}")
    architecture_for(model_type)
    _check_weights(folder)
    return model_type


def read_json_object(path: Path, missing: str | None = None) -> dict:
    """A JSON object from a file; anything else (absent, not UTF-8, not JSON, a list) is one line of error."""
    if not path.is_file():
        raise XltError(missing or f"{path} is missing")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise XltError(f"{path} is not valid JSON ({str(err).splitlines()[0]})") from None
    if not isinstance(obj, dict):
        raise XltError(f"{path} is not a JSON object")
    return obj


def _check_weights(folder: Path) -> None:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json_object(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise XltError(f"{index} has no weight_map")
        for shard in sorted(set(map(str, weight_map.values()))):
            if not (folder / shard).is_file():
                raise XltError(f"{index} names {shard}, which is missing")
            check_safetensors(folder / shard)
    elif (folder / "model.safetensors").is_file():
        check_safetensors(folder / "model.safetensors")
    elif pickles := [name for name in PICKLE_FILES if (folder / name).is_file()]:
        raise XltError(f"model folder {folder} has only PyTorch pickle weights ({pickles[0]}); xlt reads "
                       "safetensors only (a pickle can run code when loaded): convert it to model.safetensors")
    else:
        raise XltError(f"model folder {folder} has no weights ({', '.join(WEIGHT_FILES)})")


def check_safetensors(path: str | Path) -> None:
    """A whole safetensors file, judged by its header alone: an 8-byte little-endian header length,
    a JSON object of tensors whose ``data_offsets`` all lie inside the file."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        prefix = f.read(8)
        length = int.from_bytes(prefix, "little")
        if len(prefix) < 8 or length > min(size - 8, SAFETENSORS_MAX_HEADER):
            raise XltError(f"{path} is not a safetensors file, or truncated ({size} bytes, "
                           f"header length {length if len(prefix) == 8 else 'missing'})")
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise XltError(f"{path} is not a safetensors file: its header is not JSON") from None
    if not isinstance(header, dict):
        raise XltError(f"{path} is not a safetensors file: its header is not a JSON object")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(x) is int for x in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise XltError(f"{path}: tensor {name!r} has no valid data_offsets")
        end = max(end, offsets[1])
    if 8 + length + end > size:
        raise XltError(f"{path} is truncated: its tensors end at byte {8 + length + end}, the file has {size}")
