"""The config of xlt's pooled classifier as a Hugging Face model type (``xlt-pooled-classifier``): a stage-1
folder's config.json, which ``AutoConfig`` reads after ``import xlt`` (:mod:`xlt.models.registration`).

Its own module, importing only transformers' configuration code, because it registers as soon as
``AutoConfig`` loads, which can be before transformers' modeling code has (the model class is
:mod:`xlt.models.auto_classes`).
"""

from __future__ import annotations

from transformers.configuration_utils import PretrainedConfig, SubConfigSpec
from transformers.models.auto.configuration_auto import AutoConfig

from xlt.models.architectures import POOLED_MODEL_TYPE


class PooledClassifierConfig(PretrainedConfig):
    """A backbone's config (``backbone_config``), a pooling and the labels (``id2label``/``label2id``)."""

    model_type = POOLED_MODEL_TYPE
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}
    backbone_config: dict | PretrainedConfig | None = None
    pooling: str = "mean"

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.id2label[i] for i in range(len(self.id2label)))


def pooled_config(backbone_config: PretrainedConfig, labels: tuple[str, ...], pooling: str) -> PooledClassifierConfig:
    """The config.json of a stage-1 classifier: its backbone's config wrapped with the pooling (checked by
    :class:`xlt.models.classifier.PooledClassifier`) and the labels."""
    return PooledClassifierConfig(backbone_config=backbone_config.to_dict(), pooling=pooling,
                                  id2label=dict(enumerate(labels)),
                                  label2id={label: i for i, label in enumerate(labels)},
                                  dtype=backbone_config.dtype)
