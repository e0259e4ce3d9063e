"""Model names → loaded models: the embedded ``e5-small``, ``tiny-random/<family>``, or any HF id/path.

Never ``trust_remote_code``: a model id runs only the modeling code shipped with ``transformers``.
"""

from __future__ import annotations

import json
from pathlib import Path

from xlt.errors import XltError

EMBEDDED = "e5-small"
TINY_PREFIX = "tiny-random/"


def resolve_model(name: str) -> str:
    """The local folder (built on first use) or the HF id to load ``name`` from."""
    if name == EMBEDDED:
        from xlt.models.e5 import ensure_e5_small

        return str(ensure_e5_small())
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


def is_local(path: str) -> bool:
    return Path(path).exists()
