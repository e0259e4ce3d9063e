"""Layer-wise translation retrieval: how well each layer aligns the languages of a model.

The diagnostic of Liu & Niehues (middle-layer representation alignment): embed parallel sentences
with every transformer layer (mean-pooled hidden states), then for each ordered language pair (a, b)
and each layer retrieve, for every sentence of a, its translation among all sentences of b by the
ratio margin of Artetxe & Schwenk (2019). Accuracy is the fraction retrieved correctly; the
aggregate is the mean over pairs, then over the even-numbered layers (2, 4, ... counting the first
transformer layer as 1).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from xlt.errors import XltError
from xlt.io import write_json

_MAX_SCORES = 2**25  # margin-matrix entries held at once (128 MiB of float32)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mask-weighted mean over tokens: [..., B, T, H] with mask [B, T] -> [..., B, H].

    Only the mask decides which positions count, so left and right padding give the same result.
    """
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(-2) / m.sum(-2).clamp_min(1.0)


@torch.no_grad()
def layer_embeddings(model, tokenizer, sentences: list[str], batch_size: int = 64,
                     max_length: int = 128, bf16: bool = False, show_progress: bool = False,
                     desc: str = "embed") -> torch.Tensor:
    """Mean-pooled states of every transformer layer (not the embedding output): [L, N, H], float32, CPU.

    Sentences are batched in token-length order (little padding) and returned in input order. An
    encoder-decoder model contributes its encoder only: the decoder needs a target to read. A tokenizer
    without a pad token (decoder-only models) gets its EOS token as pad; the mask hides it anyway.
    ``bf16`` runs the forward under bf16 autocast (about 2x faster on CPUs with AVX512-BF16/AMX; pooled
    vectors keep a cosine above 0.9999 to the float32 ones on e5-small). ``show_progress``: a progress
    bar over the forward batches (on stderr).
    """
    if not sentences:
        raise XltError("no sentences to embed")
    if model.config.is_encoder_decoder:
        model = model.get_encoder()
    was_training = model.training
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = next(model.parameters()).device
    lengths = [len(ids) for ids in tokenizer(sentences, truncation=True, max_length=max_length)["input_ids"]]
    order = sorted(range(len(sentences)), key=lengths.__getitem__)
    out = None  # [L, N, H], allocated once the first batch shows L and H
    try:
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc=desc, unit="batch", disable=not show_progress, leave=False):
            idx = order[start:start + batch_size]
            batch = tokenizer([sentences[i] for i in idx], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            inputs = {k: v.to(device) for k, v in batch.items()
                      if k in ("input_ids", "attention_mask", "token_type_ids")}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                hidden = model(**inputs, output_hidden_states=True).hidden_states[1:]
            pooled = mean_pool(torch.stack(hidden).float(), inputs["attention_mask"]).cpu()
            if out is None:
                out = torch.empty(pooled.shape[0], len(sentences), pooled.shape[-1])
            out[:, idx] = pooled
    finally:
        model.train(was_training)
    return out


def margin_scores(x: torch.Tensor, y: torch.Tensor, k: int = 4) -> torch.Tensor:
    """Ratio margin [..., N, M]: cos(x, y) / (mean cos of x's k nearest y / 2 + mean cos of y's k nearest x / 2).

    Dividing by the neighbourhood density penalizes hubs, points close to everything, which plain
    cosine retrieval keeps picking. Leading dimensions (layers) are batched: a few large ops cost far
    less than many small ones on a busy CPU.
    """
    x, y = F.normalize(x.float(), dim=-1), F.normalize(y.float(), dim=-1)
    cos = x @ y.transpose(-1, -2)
    r_x = cos.topk(min(k, cos.shape[-1]), dim=-1).values.mean(-1)
    r_y = cos.topk(min(k, cos.shape[-2]), dim=-2).values.mean(-2)
    return cos / (r_x.unsqueeze(-1) / 2 + r_y.unsqueeze(-2) / 2)


def retrieval_accuracy(x: torch.Tensor, y: torch.Tensor, k: int = 4) -> float:
    """Fraction of rows i of x whose best-margin row of y is i (x and y parallel)."""
    if len(x) != len(y):
        raise ValueError(f"retrieval needs parallel sets, got {len(x)} and {len(y)} rows")
    hits = margin_scores(x, y, k).argmax(1) == torch.arange(len(x))
    return hits.sum().item() / len(x)


def _aggregate(average: list[float]) -> float | None:
    """Mean over the even-numbered layers (1-based: 2, 4, ...); None for a one-layer model."""
    even = average[1::2]
    return sum(even) / len(even) if even else None


def layerwise_retrieval(embeddings: dict[str, torch.Tensor], k: int = 4, show_progress: bool = False) -> dict:
    """Accuracy for every ordered language pair and every layer, from {lang: [L, N, H]}."""
    langs = list(embeddings)
    shapes = {tuple(e.shape[:2]) for e in embeddings.values()}
    if len(langs) < 2 or len(shapes) != 1:
        got = {lang: tuple(e.shape) for lang, e in embeddings.items()}
        raise ValueError(f"need >= 2 languages with equal [layers, sentences], got {got}")
    n_layers, n = shapes.pop()
    gold = torch.arange(n)
    step = max(1, _MAX_SCORES // (n * n))  # layers scored at once, bounding memory for large sets
    pairs = {f"{a}-{b}": [] for a in langs for b in langs if a != b}
    for i, a in enumerate(tqdm(langs, desc="score", unit="language", disable=not show_progress, leave=False)):
        for b in langs[i + 1:]:
            for lo in range(0, n_layers, step):
                # the margin is symmetric: margin(b, a) = margin(a, b).T, so one matrix serves both directions
                m = margin_scores(embeddings[a][lo:lo + step], embeddings[b][lo:lo + step], k)
                pairs[f"{a}-{b}"] += [hits / n for hits in (m.argmax(-1) == gold).sum(-1).tolist()]
                pairs[f"{b}-{a}"] += [hits / n for hits in (m.argmax(-2) == gold).sum(-1).tolist()]
    average = [sum(acc[layer] for acc in pairs.values()) / len(pairs) for layer in range(n_layers)]
    return {
        "layers": n_layers,
        "languages": langs,
        "pairs": pairs,
        "average": average,
        "even_layer_average": _aggregate(average),
        "best_layer": max(range(n_layers), key=lambda layer: average[layer]) + 1,
    }


def _save_png(fig, path: Path) -> None:
    """Atomic: render to a temp file beside ``path``, then rename."""
    from xlt.io import atomic_target

    with atomic_target(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def plot_layers(result: dict, path: Path, title: str = "") -> None:
    """Accuracy vs layer: one thin line per pair, the average in bold."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, renders with Agg

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    xs = range(1, result["layers"] + 1)
    for acc in result["pairs"].values():
        ax.plot(xs, acc, color="tab:blue", alpha=0.25, linewidth=0.6)
    ax.plot(xs, result["average"], color="black", linewidth=2.5, marker="o", label="average over pairs")
    best = result["best_layer"]
    ax.axvline(best, color="tab:red", linestyle="--", linewidth=1, label=f"best layer {best}")
    ax.set(xlabel="layer", ylabel="retrieval accuracy (margin)", ylim=(0, 1.02), xticks=list(xs), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    _save_png(fig, path)


def plot_heatmap(result: dict, path: Path, title: str = "") -> None:
    """Language x language accuracy (row = query language) at the best layer."""
    from matplotlib.figure import Figure

    langs, layer = result["languages"], result["best_layer"] - 1
    grid = [[float("nan") if a == b else result["pairs"][f"{a}-{b}"][layer] for b in langs] for a in langs]
    size = max(4.5, 2.5 + 0.5 * len(langs))
    fig = Figure(figsize=(size + 1, size))
    ax = fig.add_subplot()
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(langs)), langs, rotation=90)
    ax.set_yticks(range(len(langs)), langs)
    ax.set(xlabel="target language", ylabel="query language")
    ax.set_title(title or f"layer {layer + 1}", fontsize=9)
    if len(langs) <= 16:
        for i in range(len(langs)):
            for j in range(len(langs)):
                if i != j:
                    ax.text(j, i, f"{100 * grid[i][j]:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if grid[i][j] < 0.6 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    _save_png(fig, path)


def load_backbone(path: str):
    """The model folder's backbone alone (``AutoModel``: no task head; of a stage-1 classifier, its backbone),
    whose layers retrieval embeds with."""
    from transformers import AutoModel

    from xlt.models.classifier import saved_layout

    try:
        if saved_layout(path) == "pretrained":
            from xlt.models.auto_classes import load_pooled

            return load_pooled(path).backbone
        return AutoModel.from_pretrained(path, trust_remote_code=False)
    except OSError as err:
        raise XltError(f"cannot load model {path!r}: {str(err).splitlines()[0]}") from None


def run_retrieval(model_name: str, data: str, langs: list[str] | None, max_sentences: int | None,
                  output_dir: str | Path, data_dir=None, batch_size: int = 64, split: str = "test",
                  k: int = 4, max_length: int = 128, bf16: bool = False, show_progress: bool = True) -> dict:
    """Embed every sentence once, score every pair and layer; write retrieval.json and two plots.

    Embedding takes minutes on a CPU: ``show_progress`` shows a bar over the forward batches.
    """
    from xlt.data.parallel import load_parallel
    from xlt.models.loading import load_tokenizer, resolve_model

    sentences = load_parallel(data, langs, data_dir=data_dir, max_sentences=max_sentences, split=split)
    path = resolve_model(model_name)
    model, tokenizer = load_backbone(path), load_tokenizer(path)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    n = len(next(iter(sentences.values())))
    # one pass over all languages: length-sorted batches from the whole pool need ~2% padding, not ~30%
    pooled = layer_embeddings(model, tokenizer, [t for s in sentences.values() for t in s], batch_size, max_length,
                              bf16, show_progress, desc=f"embed {len(sentences)} languages x {n} sentences")
    embeddings = {lang: pooled[:, i * n:(i + 1) * n] for i, lang in enumerate(sentences)}
    embedded = time.perf_counter()
    result = layerwise_retrieval(embeddings, k, show_progress)
    result = {"model": model_name, "data": data, "split": split, "sentences": n, "k": k, "bf16": bf16, **result,
              "embed_seconds": round(embedded - start, 2), "score_seconds": round(time.perf_counter() - embedded, 2)}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{model_name} on {data} ({n} sentences)"
    plot_layers(result, out / "retrieval_layers.png", title)
    plot_heatmap(result, out / "retrieval_heatmap.png", f"{title}, layer {result['best_layer']}")
    write_json(out / "retrieval.json", result)  # last: its presence means the run finished
    return result
