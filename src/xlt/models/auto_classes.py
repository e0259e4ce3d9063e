"""xlt's pooled classifier as a Hugging Face model class, so that a stage-1 folder loads with stock transformers.

After ``import xlt`` (which registers these classes with the Auto classes, :mod:`xlt.models.registration`),
``AutoModelForSequenceClassification.from_pretrained(stage1_dir)`` gives a
:class:`PooledClassifierForSequenceClassification`: the same backbone, pooling and head as xlt's
:class:`~xlt.models.classifier.PooledClassifier`, computed by the same function, with the labels in
``config.id2label``. Its ``config.json`` says ``model_type: xlt-pooled-classifier`` and holds the backbone's
own config (``backbone_config``), the pooling and the labels (:mod:`xlt.models.auto_config`); ``model.safetensors`` holds ``backbone.*`` and
``classifier.*``, the module names of both classes, so an adapter trained on one loads into the other.
No ``trust_remote_code``: the code is xlt's, imported like any library.
"""

from __future__ import annotations

from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from xlt.models.architectures import architecture_for
from xlt.models.auto_config import PooledClassifierConfig
from xlt.models.pooling import classify, head_dropout


class PooledClassifierForSequenceClassification(PreTrainedModel):
    """Backbone (``AutoModel`` of ``config.backbone_config``), pooling, dropout and a linear head: xlt's
    pooled classifier as a ``PreTrainedModel``. ``base_model`` is the backbone, as for xlt's class, so the
    architecture table's paths (and PEFT's LoRA and FLARE) find the same modules."""

    config_class = PooledClassifierConfig
    base_model_prefix = "backbone"
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(self, config: PooledClassifierConfig):
        super().__init__(config)
        backbone_config = config.backbone_config
        encoder = architecture_for(backbone_config.model_type).family == "encoder"
        # the tanh pooler is never used (xlt loads encoders without it)
        self.backbone = AutoModel.from_config(backbone_config, **({"add_pooling_layer": False} if encoder else {}))
        self.dropout = nn.Dropout(head_dropout(backbone_config))
        self.classifier = nn.Linear(backbone_config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if module is self.classifier:
            nn.init.normal_(module.weight, std=getattr(self.config.backbone_config, "initializer_range", 0.02))
            nn.init.zeros_(module.bias)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.config.labels

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs) -> SequenceClassifierOutput:
        logits, loss, hidden_states = classify(self.backbone, self.dropout, self.classifier, self.config.pooling,
                                               input_ids, attention_mask, labels, **kwargs)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states)


def load_pooled(path: str) -> PooledClassifierForSequenceClassification:
    """A saved stage-1 classifier of the current layout (its config.json is a ``PooledClassifierConfig``)."""
    return PooledClassifierForSequenceClassification.from_pretrained(path, trust_remote_code=False)

