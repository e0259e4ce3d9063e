"""``xlt predict``: a finished run's predictions on new text (xlt.runs.predict), every input checked before any
model loads."""

from __future__ import annotations

import argparse

from xlt.cli.options import add_option


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("predict", help="predict with a finished run on new text")
    add_option(p, "--run-dir", required=True, help="a run directory written by xlt train or xlt merge")
    add_option(p, "--input", required=True, help="the texts: .txt (one target text per line), .csv or .jsonl with "
                                                 "the task's columns (target_text, source_text, target_question, ...)")
    add_option(p, "--output", required=True, help="where the predictions go: .jsonl, or .csv for classification")
    add_option(p, "--translator", default=None, metavar="MODEL",
               help="MT model (or lexicon) that writes the English side of inputs without one, for methods that "
                    "read it (flare, input-fusion, translate-test, x-mixup)")
    add_option(p, "--translation-cache", default=None, help="sqlite file of cached translations",
               shown="the run's")
    add_option(p, "--overwrite", action="store_true", default=False, help="replace an existing --output file")
    add_option(p, "--show-progress", action=argparse.BooleanOptionalAction, default=True, help="a progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from xlt.data.registry import get_task
    from xlt.methods.table import get_method
    from xlt.runs.predict_input import check_output_path, check_source, read_input
    from xlt.runs.preflight import check_run_dir

    cfg = check_run_dir(args.run_dir)
    kind = get_task(cfg.task).kind
    check_output_path(args.output, args.overwrite, kind)
    rows = read_input(args.input, kind)
    method = get_method(cfg.method)
    if method.reads_source:
        check_source(rows, kind, method.name, args.translator)
    from xlt.runs.predict import Predictor, write_predictions_file

    predictor = Predictor.from_run_dir(args.run_dir, translator=args.translator,
                                       translation_cache=args.translation_cache, show_progress=args.show_progress)
    write_predictions_file(args.output, predictor.predict(rows), overwrite=args.overwrite)
    print(f"{len(rows)} predictions written to {args.output}")
    return 0
