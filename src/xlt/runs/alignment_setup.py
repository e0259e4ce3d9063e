"""The align methods' part of a run: the aligner that interleaves contrastive steps with the task's, and the
retrieval check of the aligned layers after training (adapter off, then on)."""

from __future__ import annotations

from xlt.config import RunConfig
from xlt.errors import XltError
from xlt.methods.adapters import AdaptedModel


def _alignment_layers(cfg: RunConfig, model) -> list[int]:
    from xlt.models.architectures import middle_layer


    if cfg.align_layers:
        try:
            return [int(x) for x in cfg.align_layers.split(",")]
        except ValueError:
            raise XltError(f"align_layers must be comma-separated layer numbers, got {cfg.align_layers!r}") from None
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return [middle_layer(config.num_hidden_layers if hasattr(config, "num_hidden_layers") else config.num_layers)]


def _align_langs(cfg: RunConfig) -> list[str]:
    return [x.strip() for x in (cfg.align_langs or cfg.target_lang).split(",") if x.strip()]


def make_aligner(cfg: RunConfig, tokenizer, model):
    """Training pairs with English for the align methods (the train split of the parallel set)."""
    from xlt.alignment.aligner import Aligner
    from xlt.alignment.contrastive import AlternatingSchedule, alignment_pairs


    pairs = alignment_pairs(cfg.align_data, _align_langs(cfg), "train", cfg.data_dir, cfg.align_max_pairs)
    task, align = (int(x) for x in cfg.align_ratio.split(":"))
    return Aligner(pairs, tokenizer, _alignment_layers(cfg, model), cfg.align_temperature, cfg.batch_size,
                   cfg.max_length, AlternatingSchedule(task, align), cfg.seed)


def alignment_retrieval(cfg: RunConfig, adapted: AdaptedModel, tokenizer, layers: list[int]) -> dict:
    """Margin retrieval English<->language at the aligned layers on held-out (test split) sentences,
    without and with the adapter: the evidence that alignment training did what it should."""
    from xlt.alignment.contrastive import alignment_pairs, backbone_of
    from xlt.alignment.retrieval import layer_embeddings, retrieval_accuracy


    pairs = alignment_pairs(cfg.align_data, _align_langs(cfg), "test", cfg.data_dir, cfg.max_eval_examples)
    backbone = backbone_of(adapted.model)
    result = {}
    for lang, rows in pairs.items():
        english, target = [e for e, _ in rows], [t for _, t in rows]


        def accuracy() -> dict:
            emb_en, emb_t = layer_embeddings(backbone, tokenizer, english), layer_embeddings(backbone, tokenizer, target)
            return {str(layer): (retrieval_accuracy(emb_t[layer - 1], emb_en[layer - 1])
                                 + retrieval_accuracy(emb_en[layer - 1], emb_t[layer - 1])) / 2 for layer in layers}


        with adapted.model.disable_adapter():
            before = accuracy()
        result[lang] = {"before": before, "after": accuracy(), "sentences": len(rows)}
    return result
