"""Routing by language (``xlt predict --run-dirs``): routed accuracy against each run on its own language, and the
speed of one mixed batch against per-language batches.

The rows: ``--input`` (.jsonl or .csv with ``target_text``, the gold ``label`` and the gold ``lang``; FLARE runs
also read ``source_text``), or NusaX's test split of each run's target language (``--per-lang`` rows each, with
their English side), which no run's training and no ``xlt lid train`` identifier saw. Three numbers per language:

- oracle: each row answered by the run of its gold language (the routed predictor given the ``lang`` column,
  whose answers are each run's own, tests/test_routing.py);
- routed: the language identifier (``--lid``) decides, unsure and unknown rows going to the default run;
- LID: how many rows the identifier sent to the right run.

Then the throughput of the LoRA runs' mixed batches (one forward over rows of every language, PEFT's per-row
``adapter_names``) against per-language batches (``mixed_batches=False``), best of ``--repeats`` timings.

    python benchmarks/routing.py --run-dirs runs/ace runs/bug runs/jv --lid lid.npz [--per-lang 400]
"""

from __future__ import annotations

import argparse
import sys
import time

from xlt.data.paths import resolve_data_dir


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dirs", nargs="+", required=True, help="finished NusaX runs, one per language")
    p.add_argument("--lid", required=True, help="the identifier file (xlt lid train)")
    p.add_argument("--input", default=None, help="rows with target_text, label and lang (default: NusaX's test)")
    p.add_argument("--per-lang", type=int, default=400, help="NusaX test rows per language (default 400: all)")
    p.add_argument("--data-dir", default=None, help="the data sets' folder")
    p.add_argument("--min-confidence", type=float, default=0.5, help="the identifier's fallback threshold")
    p.add_argument("--repeats", type=int, default=3, help="timings of each batching (the best is kept)")
    return p.parse_args(argv)


def nusax_rows(runs, per_lang: int, data_dir) -> list[dict]:
    from xlt.data.registry import load_task

    rows = []
    for run in runs:
        test = load_task("nusax", run.lang, data_dir=resolve_data_dir(data_dir)).test[:per_lang]
        rows += [{"id": ex.id, "target_text": ex.target[0], "source_text": ex.source[0], "lang": run.lang,
                  "label": ("negative", "neutral", "positive")[ex.label]} for ex in test]
    return rows


def accuracy(pairs: list[tuple[str, str]]) -> float:
    return sum(a == b for a, b in pairs) / max(1, len(pairs))


def report(rows: list[dict], oracle: list[dict], routed: list[dict], runs) -> None:
    """One line per gold language and the total: rows, oracle and routed accuracy, rows the LID routed right."""
    by_lang = {run.lang: run.name for run in runs}
    print("| language | rows | oracle accuracy | routed accuracy | LID routed right |")
    print("|---|---:|---:|---:|---:|")
    for lang in [*by_lang, None]:
        picked = [i for i, row in enumerate(rows) if lang is None or row["lang"] == lang]
        gold = [rows[i]["label"] for i in picked]
        right = sum(routed[i]["run"] == by_lang.get(rows[i]["lang"]) for i in picked) / max(1, len(picked))
        oracle_accuracy = accuracy([(oracle[i]["label"], g) for i, g in zip(picked, gold)])
        routed_accuracy = accuracy([(routed[i]["label"], g) for i, g in zip(picked, gold)])
        print(f"| {lang or 'all'} | {len(picked)} | {oracle_accuracy:.3f} | {routed_accuracy:.3f} | {right:.3f} |")


def throughput(predictor, rows: list[dict], repeats: int) -> dict[str, float]:
    """Rows per second of mixed and per-language batches (best of ``repeats``), each warmed up once."""
    speeds = {}
    for mixed in (True, False):
        predictor.mixed_batches = mixed
        predictor.predict(rows[:8])
        best = min(_timed(predictor, rows) for _ in range(repeats))
        speeds["mixed batches" if mixed else "per-language batches"] = len(rows) / best
    predictor.mixed_batches = True
    return speeds


def _timed(predictor, rows) -> float:
    start = time.perf_counter()
    predictor.predict(rows)
    return time.perf_counter() - start


def main(argv=None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging

    from xlt.lid.model import load_identifier
    from xlt.runs.predict_input import read_input
    from xlt.runs.routes import check_routed_runs
    from xlt.runs.routing import RoutedPredictor

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    runs, _ = check_routed_runs(args.run_dirs)
    rows = read_input(args.input, "classification") if args.input else nusax_rows(runs, args.per_lang, args.data_dir)
    predictor = RoutedPredictor.from_run_dirs(args.run_dirs, lid=load_identifier(args.lid),
                                              min_confidence=args.min_confidence)
    oracle = predictor.predict(rows)
    routed = predictor.predict([{k: v for k, v in row.items() if k != "lang"} for row in rows])
    report(rows, oracle, routed, runs)
    print()
    for name, speed in throughput(predictor, rows, args.repeats).items():
        print(f"{name}: {speed:.1f} rows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
