"""Token classification (NER tagging) on encoders: transformers' ``AutoModelForTokenClassification``.

Why the stock class and not a ``PooledClassifier``-like module: xlt's own sequence head exists to
choose the pooling, and a per-token head pools nothing. ``BertForTokenClassification`` and
``XLMRobertaForTokenClassification`` are exactly backbone + dropout + linear, and they already keep
the contracts the rest of xlt relies on:

- ``model.base_model`` is the backbone, where the architecture table's paths (and FLARE's) start;
- the head is the module ``classifier``, the architecture's ``head`` (PEFT ``modules_to_save``);
- a stage-1 folder is an ordinary Hugging Face folder whose ``config.json`` names the tags
  (``id2label``); loading it under another tag set is refused rather than silently relabelled.

The loss is transformers' cross-entropy, which skips label -100 (special tokens, the later
sub-tokens of a word, the English half of an input-fusion pair).
"""

from __future__ import annotations

from pathlib import Path

from xlt.errors import XltError


def saved_tags(path: str) -> tuple[str, ...] | None:
    """The tag set of a saved token classifier at ``path``; None for any other model (a base encoder)."""
    from transformers import AutoConfig

    if not Path(path).is_dir():
        return None
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    if not any(str(a).endswith("ForTokenClassification") for a in config.architectures or ()):
        return None
    return tuple(config.id2label[i] for i in range(len(config.id2label)))


def load_token_classifier(path: str, labels: tuple[str, ...]):
    """An encoder with a linear head over ``labels`` per token: the trained head when ``path`` is a
    saved token classifier with the same tags, a new one on a base encoder."""
    from transformers import AutoModelForTokenClassification

    saved = saved_tags(path)
    if saved is not None and saved != tuple(labels):
        raise XltError(f"the token classifier at {path} was trained with tags {list(saved)}, not {list(labels)}")
    try:
        return AutoModelForTokenClassification.from_pretrained(
            path, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)}, trust_remote_code=False)
    except OSError as err:
        raise XltError(f"cannot load model {path!r}: {str(err).splitlines()[0]}") from None
