"""Building blocks of middle-layer alignment training (Liu & Niehues): a contrastive loss that pulls the
mean-pooled states of parallel sentences together at chosen layers, alternated with task training.

- :func:`info_nce`: in-batch-negatives contrastive loss on pooled vectors.
- :func:`layer_states` / :func:`pooled_alignment_loss`: states of chosen layers, with grad, and the loss.
- :func:`middle_layer`: the default layer.
- :class:`AlternatingSchedule`: which step is a task step and which an alignment step.
- :func:`alignment_pairs` / :func:`uniform_language_sampler`: English-target pairs, sampled evenly by language.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F

from xlt.alignment.retrieval import mean_pool
from xlt.errors import XltError

_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def info_nce(src: torch.Tensor, tgt: torch.Tensor, temperature: float = 0.1,
             symmetric: bool = True) -> torch.Tensor:
    """InfoNCE on [B, H] pairs: row i of ``src`` and ``tgt`` are translations, every other row a negative.

    Logits are cosine similarities / ``temperature``; the loss is cross-entropy with the diagonal as the
    target. ``symmetric`` (default) averages src->tgt and tgt->src: alignment should move both languages
    toward each other, and the one-way loss never penalizes a src vector that many tgt rows are close to
    (a hub) from the tgt side. Computed in float32 so a bf16 forward does not coarsen the small logits.
    """
    if src.shape != tgt.shape or src.dim() != 2:
        raise ValueError(f"info_nce needs two [B, H] tensors of the same shape, got {tuple(src.shape)} and {tuple(tgt.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = F.normalize(src.float(), dim=-1) @ F.normalize(tgt.float(), dim=-1).T / temperature
    gold = torch.arange(len(src), device=src.device)
    loss = F.cross_entropy(logits, gold)
    return (loss + F.cross_entropy(logits.T, gold)) / 2 if symmetric else loss


def backbone_of(model: torch.nn.Module) -> torch.nn.Module:
    """The transformer without its task head; an encoder-decoder model gives its encoder.

    A PEFT wrapper is unwrapped: LoRA layers sit inside the modules, so the backbone still runs them.
    The encoder stands for an encoder-decoder model because the decoder needs a target to read (as in
    :func:`xlt.alignment.retrieval.layer_embeddings`, so training aligns what the diagnostic measures).
    """
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    model = model.base_model  # BertModel, LlamaModel, MT5Model, ... (the model itself if it has no head)
    return model.get_encoder() if model.config.is_encoder_decoder else model


def layer_states(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor],
                 layers: list[int]) -> dict[int, torch.Tensor]:
    """{layer: [B, T, H]} for 1-based transformer layers (``hidden_states[layer]``), with grad.

    ``inputs`` is a tokenizer batch; padding may be on either side (the pooling reads the mask).
    Keys the backbone does not take (``token_type_ids`` for Llama) are dropped.
    """
    backbone = backbone_of(model)
    accepted = inspect.signature(backbone.forward).parameters
    kwargs = {k: v for k, v in inputs.items() if k in _INPUT_KEYS and k in accepted}
    hidden = backbone(**kwargs, output_hidden_states=True).hidden_states
    n = len(hidden) - 1
    bad = [layer for layer in layers if not 1 <= layer <= n]
    if not layers or bad:
        raise XltError(f"alignment layers must be in 1..{n} (the model's transformer layers), got {list(layers)}")
    return {layer: hidden[layer] for layer in layers}


def pooled_alignment_loss(model: torch.nn.Module, src_inputs: Mapping[str, torch.Tensor],
                          tgt_inputs: Mapping[str, torch.Tensor], layers: list[int],
                          temperature: float = 0.1) -> torch.Tensor:
    """InfoNCE between mean-pooled src and tgt states, averaged over ``layers``.

    Two forwards (one per language): each side keeps its own padding, and row i of both is one pair.
    """
    src = layer_states(model, src_inputs, layers)
    tgt = layer_states(model, tgt_inputs, layers)
    losses = [info_nce(mean_pool(src[layer], src_inputs["attention_mask"]),
                       mean_pool(tgt[layer], tgt_inputs["attention_mask"]), temperature) for layer in layers]
    return torch.stack(losses).mean()


class AlternatingSchedule:
    """Step k's kind: ``task_steps`` task steps, then ``align_steps`` alignment steps, repeated.

    Call it with a step index (``"task"`` or ``"align"``) or iterate it (endless). Starting with a task
    step means the first update is the task's, as in plain fine-tuning. ``task_steps=0`` is
    alignment-only training; ``align_steps=0`` is plain task training.
    """

    def __init__(self, task_steps: int = 1, align_steps: int = 1):
        if task_steps < 0 or align_steps < 0 or task_steps + align_steps == 0:
            raise XltError(f"schedule needs non-negative step counts, not both 0; got task_steps={task_steps}, "
                           f"align_steps={align_steps}")
        self.task_steps, self.align_steps = task_steps, align_steps

    def __call__(self, k: int) -> str:
        return "task" if k % (self.task_steps + self.align_steps) < self.task_steps else "align"

    def __iter__(self) -> Iterator[str]:
        k = 0
        while True:
            yield self(k)
            k += 1


def uniform_language_sampler(pairs_by_lang: dict[str, list[tuple[str, str]]], n: int,
                             seed: int) -> list[tuple[str, str, str]]:
    """``n`` (lang, english, target) triples: a language uniformly at random, then one of its pairs.

    Sampling languages first (with replacement) keeps a language with many pairs from dominating the
    alignment signal. Languages are taken in sorted order, so the result depends only on the data and
    ``seed``, not on dict order.
    """
    if n < 0:
        raise XltError(f"number of samples must be non-negative, got {n}")
    empty = sorted(lang for lang, pairs in pairs_by_lang.items() if not pairs)
    if not pairs_by_lang or empty:
        raise XltError(f"every alignment language needs pairs; empty: {', '.join(empty) or 'all (no languages)'}")
    rng = random.Random(seed)
    langs = sorted(pairs_by_lang)
    out = []
    for _ in range(n):
        lang = rng.choice(langs)
        out.append((lang, *rng.choice(pairs_by_lang[lang])))
    return out


def alignment_pairs(data: str = "nusax-mt", langs: list[str] | None = None, split: str = "train",
                    data_dir=None, max_sentences: int | None = None) -> dict[str, list[tuple[str, str]]]:
    """{lang: [(english, target), ...]} from a parallel set's English column and each other language.

    ``langs`` are the target languages (all of the set's when None; ``en`` itself is skipped). The
    default split is ``train``: alignment data must not overlap the sentences evaluated on.
    """
    from xlt.data.parallel import load_parallel

    wanted = None if langs is None else ["en", *(lang for lang in langs if lang.strip().lower() not in ("en", "english"))]
    sentences = load_parallel(data, wanted, data_dir=data_dir, max_sentences=max_sentences, split=split)
    if "en" not in sentences:
        raise XltError(f"{data}: no English column to align to (languages: {', '.join(sentences)})")
    english = sentences["en"]
    return {lang: list(zip(english, text)) for lang, text in sentences.items() if lang != "en"}
