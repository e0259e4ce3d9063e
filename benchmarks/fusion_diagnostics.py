"""What FLARE's fusion meets, for finished FLARE runs on classification tasks: the diagnostics behind the fusion study.

For each run directory (rebuilt as ``xlt evaluate`` does, on its own test set):
- pairing: how many target tokens have an aligned English token (mutual argmax of the frozen model's states at
  the alignment layer, :mod:`xlt.flare.token_alignment`) and how many of those are paired with it by position,
  i.e. how often the paper's position-wise fusion meets the token's translation;
- bottleneck magnitudes per fused layer: the mean L2 norm of the target bottleneck T = A·x, of the English
  bottleneck S = A·x_src, and of what the fusion adds to T (fused − T), over real tokens (the FLARE paper's
  Figures 5–7), printed and plotted (``--output-dir``);
- what zeroing the English at test costs (metrics.json: ``metrics`` − ``metrics_zero_source``).

    python benchmarks/fusion_diagnostics.py RUN_DIR [RUN_DIR ...] [--max-examples 400] [--output-dir D]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

from xlt.config import RunConfig
from xlt.flare.token_alignment import alignment_layer, alignments, positional_agreement
from xlt.methods.adapters import load_adapter
from xlt.run_dir import ADAPTER, CONFIG, METRICS
from xlt.runs.adapted_model import build_model
from xlt.runs.recipe import Run
from xlt.runs.stage2_data import stage2_data
from xlt.training.batches import make_batch


def rebuild(run_dir: Path):
    """The run's adapted model (eval mode), tokenizer, test data and config, as ``xlt evaluate`` rebuilds them."""
    cfg = RunConfig.from_yaml(run_dir / CONFIG)
    saved = json.loads((run_dir / METRICS).read_text())
    run = Run(cfg, architecture_from=saved["stage1_dir"])
    data, _ = stage2_data(run)
    adapted, tokenizer = build_model(run, Path(saved["stage1_dir"]), data)
    load_adapter(adapted, run_dir / ADAPTER)
    adapted.model.eval()
    return adapted, tokenizer, data, cfg, saved


def pairing_counts(adapted, batch) -> tuple[int, int, int]:
    """(target tokens, aligned ones, aligned ones whose positional partner is their aligned token) of one batch."""
    wiring = adapted.flare.wiring
    source = wiring.complete({k[len("source_"):]: v for k, v in batch.inputs.items() if k.startswith("source_")})
    target = wiring.complete({k: v for k, v in batch.inputs.items() if not k.startswith("source_")})
    layers = {0: alignment_layer(len(wiring.backbone.get_submodule(wiring.architecture.stacks[0].layers)), None)}
    aligned = alignments(wiring.run_layers(target, layers), wiring.stack_masks(target),
                         wiring.run_layers(source, layers), wiring.stack_masks(source), [False])[0]
    return positional_agreement(aligned, target["attention_mask"])


def norm_hooks(adapted, sums: dict):
    """Forward hooks on every fused layer's fusion module adding up, per layer, the norms of T, S and fused − T."""
    hooks = []
    for layer in adapted.flare.wiring.layers:
        for fusion in layer.lora_fusion.values():
            def record(module, args, output, name=layer.flare_name):
                target, source, source_mask, positions = args[:4]
                real_t = (positions >= 0) if positions is not None else torch.ones(target.shape[:2], dtype=torch.bool)
                real_s = source_mask.bool()
                totals = sums[name]
                totals["T"] += float(target.float().norm(dim=-1)[real_t].sum())
                totals["fused - T"] += float((output - target).float().norm(dim=-1)[real_t].sum())
                totals["S"] += float(source.float().norm(dim=-1)[real_s].sum())
                totals["target tokens"] += int(real_t.sum())
                totals["source tokens"] += int(real_s.sum())
            hooks.append(fusion.register_forward_hook(record))
    return hooks


@torch.no_grad()
def diagnose(run_dir: Path, max_examples: int, batch_size: int = 32) -> dict:
    adapted, tokenizer, data, cfg, saved = rebuild(run_dir)
    examples = data.test[:max_examples]
    sums: dict = defaultdict(lambda: defaultdict(float))
    hooks = norm_hooks(adapted, sums)
    counts = [0, 0, 0]
    for start in range(0, len(examples), batch_size):
        batch = make_batch(tokenizer, examples[start:start + batch_size], "target", cfg.max_length, source="text")
        counts = [a + b for a, b in zip(counts, pairing_counts(adapted, batch))]
        adapted.model(**batch.inputs)
    for hook in hooks:
        hook.remove()
    norms = {name: {"T": s["T"] / s["target tokens"], "S": s["S"] / s["source tokens"],
                    "fused - T": s["fused - T"] / s["target tokens"]} for name, s in sums.items()}
    metric = next(iter(saved["metrics"]))
    zeroed = saved.get("metrics_zero_source", {}).get(metric)
    return {"run": str(run_dir), "fusion": cfg.fusion, "target_lang": cfg.target_lang, "examples": len(examples),
            "target_tokens": counts[0], "aligned": counts[1] / counts[0], "aligned_at_same_position":
            counts[2] / max(1, counts[1]), "norms": norms, "metric": metric, "score": saved["metrics"][metric],
            "zeroed_score": zeroed}


def plot_norms(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["norms"])
    fig, ax = plt.subplots(figsize=(max(6, len(names) * 0.4), 3.5))
    for key in ("T", "S", "fused - T"):
        ax.plot(range(len(names)), [result["norms"][n][key] for n in names], marker="o", label=key)
    ax.set_xticks(range(len(names)), [n.split("layer.")[-1] for n in names], rotation=90, fontsize=6)
    ax.set_ylabel("mean L2 norm")
    ax.set_title(f"{result['fusion']} ({result['target_lang']}): bottleneck magnitudes per fused layer")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished FLARE run directories")
    parser.add_argument("--max-examples", type=int, default=400, help="test examples read per run")
    parser.add_argument("--output-dir", type=Path, help="write diagnostics.json and one norms plot per run here")
    args = parser.parse_args()
    results = [diagnose(run, args.max_examples) for run in args.runs]
    print("| run | fusion | lang | aligned tokens | aligned at same position | score | zeroed | "
          "mean |S|/|T| | mean |fused−T|/|T| |\n|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ratio_s = sum(n["S"] / n["T"] for n in r["norms"].values()) / len(r["norms"])
        ratio_f = sum(n["fused - T"] / n["T"] for n in r["norms"].values()) / len(r["norms"])
        zeroed = "—" if r["zeroed_score"] is None else f"{r['zeroed_score']:.3f}"
        print(f"| {Path(r['run']).name} | {r['fusion']} | {r['target_lang']} | {r['aligned']:.3f} | "
              f"{r['aligned_at_same_position']:.3f} | {r['score']:.3f} | {zeroed} | {ratio_s:.2f} | {ratio_f:.2f} |")
    if args.output_dir:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        (args.output_dir / "diagnostics.json").write_text(json.dumps(results, indent=1))
        for i, r in enumerate(results):
            plot_norms(r, args.output_dir / f"norms-{i}-{r['fusion']}-{r['target_lang']}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
