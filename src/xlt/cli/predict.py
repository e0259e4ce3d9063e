"""``xlt predict``: a finished run's predictions on new text (xlt.runs.predict), or several runs' with each input
routed to the run of its language (``--run-dirs``, xlt.runs.routing); every input checked before any model
loads."""

from __future__ import annotations

import argparse

from xlt.cli.options import add_option
from xlt.errors import XltError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("predict", help="predict with a finished run on new text")
    add_option(p, "--run-dir", default=None, help="a run directory written by xlt train or xlt merge",
               shown="required unless --run-dirs")
    add_option(p, "--run-dirs", nargs="+", default=None, metavar="RUN",
               help="runs of one task for several languages: each input goes to the run of its language (its lang "
                    "column, else --lid)")
    add_option(p, "--lid", default=None, metavar="FILE",
               help="with --run-dirs: the language identifier (xlt lid train) for inputs without a lang column")
    add_option(p, "--default-run", default=None, metavar="RUN",
               help="with --run-dirs: the run for languages no run has and unsure identifications",
               shown="the first of --run-dirs")
    add_option(p, "--min-confidence", type=float, default=None,
               help="with --run-dirs: below this identifier probability an input goes to the default run",
               shown="0.5")
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


def check_run_flags(args: argparse.Namespace) -> None:
    """One run (--run-dir) or several routed by language (--run-dirs), and the routing flags only with the
    latter."""
    if args.run_dir and args.run_dirs:
        raise XltError("give --run-dir (one run) or --run-dirs (runs routed by language), not both")
    if not args.run_dir and not args.run_dirs:
        raise XltError("give --run-dir RUN, or --run-dirs RUN ... to route each input by its language")
    routing = [flag for flag, value in (("--lid", args.lid), ("--default-run", args.default_run),
                                        ("--min-confidence", args.min_confidence)) if value is not None]
    if args.run_dir and routing:
        raise XltError(f"{routing[0]} routes inputs between --run-dirs; with one --run-dir leave it out")


def run(args: argparse.Namespace) -> int:
    check_run_flags(args)
    if args.run_dirs:
        return run_routed(args)
    from xlt.data.registry import get_task
    from xlt.methods.table import get_method
    from xlt.runs.predict_input import check_output_path, check_source, read_input
    from xlt.runs.preflight import check_run_dir

    cfg = check_run_dir(args.run_dir, for_predict=True)
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


def run_routed(args: argparse.Namespace) -> int:
    """--run-dirs: the runs, the input, the identifier and every row's route checked before any model loads."""
    from xlt.data.registry import get_task
    from xlt.lid.model import load_identifier
    from xlt.runs.predict_input import check_output_path, read_input
    from xlt.runs.routes import (DEFAULT_MIN_CONFIDENCE, check_min_confidence, check_routed_runs, check_routed_sources,
                                 choose_routes)

    runs, default = check_routed_runs(args.run_dirs, args.default_run)
    kind = get_task(runs[0].cfg.task).kind
    check_output_path(args.output, args.overwrite, kind)
    rows = read_input(args.input, kind)
    identifier = load_identifier(args.lid) if args.lid else None
    min_confidence = check_min_confidence(DEFAULT_MIN_CONFIDENCE if args.min_confidence is None
                                          else args.min_confidence)
    routes = choose_routes(rows, runs, default, identifier, min_confidence)
    check_routed_sources(rows, routes, runs, kind, args.translator)
    from xlt.runs.predict import write_predictions_file
    from xlt.runs.routing import RoutedPredictor, load_engines

    engines = load_engines(runs, args.translator, args.translation_cache, args.show_progress)
    predictor = RoutedPredictor(runs, default, engines, identifier, min_confidence)
    write_predictions_file(args.output, predictor.predict(rows), overwrite=args.overwrite)
    counts = {run.name: sum(route.run == index for route in routes) for index, run in enumerate(runs)}
    print(f"{len(rows)} predictions written to {args.output} ("
          + ", ".join(f"{count} by {name}" for name, count in counts.items()) + ")")
    return 0
