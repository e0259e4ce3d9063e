"""``xlt retrieval``: the layer-wise translation-retrieval diagnostic from the command line."""

from __future__ import annotations

import argparse

from xlt.errors import XltError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("retrieval", help="layer-wise translation retrieval (margin) on a parallel set")
    p.add_argument("--model", default="e5-small")
    p.add_argument("--data", required=True, help="nusax-mt, xnli, massive, tatoeba, or a .csv/.jsonl file")
    p.add_argument("--langs", help="comma-separated languages (default: all of the set)")
    p.add_argument("--split", default="test", help="split of a built-in set (default test)")
    p.add_argument("--max-sentences", type=int, help="use the first N rows")
    p.add_argument("--output-dir", default="xlt-retrieval")
    p.add_argument("--data-dir")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast for the forward passes (default: on, as in the demo)")
    return p


def _langs(text: str | None) -> list[str] | None:
    if text is None:
        return None
    langs = [lang.strip() for lang in text.split(",") if lang.strip()]
    if not langs:
        raise XltError(f"--langs {text!r} names no language")
    return langs


def format_table(result: dict) -> str:
    """Layer and average accuracy, then the aggregate; the best layer is starred."""
    lines = ["layer  avg_acc"]
    for layer, acc in enumerate(result["average"], 1):
        lines.append(f"{layer:5d}  {acc:7.4f}{' *' if layer == result['best_layer'] else ''}")
    even = result["even_layer_average"]
    lines.append(f"even-layer average: {'n/a' if even is None else f'{even:.4f}'}  "
                 f"best layer: {result['best_layer']}  "
                 f"({len(result['languages'])} languages, {len(result['pairs'])} pairs)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from xlt.alignment.retrieval import run_retrieval

    if args.batch_size < 1:
        raise XltError(f"--batch-size must be at least 1, got {args.batch_size}")
    result = run_retrieval(args.model, args.data, _langs(args.langs), args.max_sentences, args.output_dir,
                           data_dir=args.data_dir, batch_size=args.batch_size, split=args.split, bf16=args.bf16)
    print(format_table(result))
    print(f"wrote {args.output_dir}/retrieval.json, retrieval_layers.png, retrieval_heatmap.png")
    return 0
