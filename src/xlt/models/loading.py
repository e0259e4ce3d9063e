"""Model names → loaded models: the embedded ``e5-small``, ``tiny-random/<family>``, or any HF id/path.

Never ``trust_remote_code``: a model id runs only the modeling code shipped with ``transformers``.
"""

from __future__ import annotations

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
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except OSError as err:
        raise XltError(f"cannot load a tokenizer from {path!r}: {str(err).splitlines()[0]}") from None


def load_classifier(path: str, labels: tuple[str, ...]):
    """A sequence-classification model with ``len(labels)`` outputs and the label names in its config."""
    from transformers import AutoModelForSequenceClassification

    try:
        return AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            trust_remote_code=False,
        )
    except OSError as err:
        raise XltError(f"cannot load model {path!r}: {str(err).splitlines()[0]}") from None


def is_local(path: str) -> bool:
    return Path(path).exists()
