"""``xlt retrieval``: the layer-wise translation-retrieval diagnostic from the command line."""

from __future__ import annotations

import argparse

from xlt.cli.options import add_option
from xlt.errors import XltError

SPLITS = ("train", "valid", "dev", "test")  # each built-in set has some of them; a file has none
MIN_SENTENCES = 2


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("retrieval", help="layer-wise translation retrieval (margin) on a parallel set")
    add_option(p, "--model", default="e5-small", help="the model (as for xlt train --model)")
    add_option(p, "--data", required=True, help="nusax-mt, xnli, massive, tatoeba, wmt23, or a .csv/.jsonl file")
    add_option(p, "--langs", help="comma-separated languages", shown="all of the set")
    add_option(p, "--split", default="test", choices=SPLITS, help="split of a built-in set (valid = dev)")
    add_option(p, "--max-sentences", type=int, help="use the first N rows (>= 2)", shown="all")
    add_option(p, "--output-dir", default="xlt-retrieval", help="where retrieval.json and the plots go")
    add_option(p, "--data-dir", help="data set folder", shown="$XLT_DATA_DIR, else ../shared/datasets")
    add_option(p, "--batch-size", type=int, default=64, help="sentences per forward pass")
    add_option(p, "--bf16", action=argparse.BooleanOptionalAction, default=None,
               help="bf16 autocast for the forward passes, as in the demo",
               shown="on where the hardware has bf16 (CUDA, AVX512-BF16/AMX CPUs), else off")
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


def check(args: argparse.Namespace) -> None:
    """Before the model loads: numbers, the output folder, the model folder, and a set of at least 2 rows."""
    from xlt.data.parallel import load_parallel
    from xlt.models.loading import check_model
    from xlt.runs.preflight import check_output_dir

    if args.batch_size < 1:
        raise XltError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.max_sentences is not None and args.max_sentences < MIN_SENTENCES:
        raise XltError(f"--max-sentences must be at least {MIN_SENTENCES}, got {args.max_sentences}: retrieval "
                       "picks each sentence's translation among several")
    check_output_dir(args.output_dir)
    check_model(args.model)
    load_parallel(args.data, _langs(args.langs), data_dir=args.data_dir, max_sentences=args.max_sentences,
                  split=args.split, min_sentences=MIN_SENTENCES)


def run(args: argparse.Namespace) -> int:
    check(args)
    from xlt.alignment.retrieval import run_retrieval
    from xlt.training.loop import resolve_bf16

    bf16 = resolve_bf16(args.bf16)
    result = run_retrieval(args.model, args.data, _langs(args.langs), args.max_sentences, args.output_dir,
                           data_dir=args.data_dir, batch_size=args.batch_size, split=args.split, bf16=bf16)
    print(format_table(result))
    print(f"wrote {args.output_dir}/retrieval.json, retrieval_layers.png, retrieval_heatmap.png")
    return 0
