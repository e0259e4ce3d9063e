"""Which run answers each input of ``xlt predict --run-dirs`` (:mod:`xlt.runs.routing`), decided torch-free so
every check runs before a model loads: the runs (finished, one task and label set, one run per language, the
default among them), each row's language (its ``lang`` column, else the language identifier's guess and
probability, :mod:`xlt.lid.model`) and the run of that language, or the default run where no run has it or the
identifier is less sure than ``min_confidence``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from xlt.config import RunConfig
from xlt.errors import XltError
from xlt.languages import canonical_code
from xlt.methods.table import get_method
from xlt.run_dir import METRICS, STAGE1_INFO, stage1_dir_of
from xlt.runs.predict_input import has_source, row_text, source_columns

DEFAULT_MIN_CONFIDENCE = 0.5
LANG_COLUMN = "lang"
CONFIDENCE_DIGITS = 6


@dataclass(frozen=True)
class RoutedRun:
    """One run of a routed set: its folder as given, config, target language (canonical code), English model."""

    run_dir: Path
    cfg: RunConfig
    lang: str
    stage1: Path
    labels: tuple[str, ...]

    @property
    def name(self) -> str:
        """How output rows name the run that answered them: its folder as given."""
        return str(self.run_dir)

    @property
    def bank_key(self) -> tuple | None:
        """Runs with the same key share one English model and answer mixed batches (xlt.runs.adapter_bank):
        plain LoRA on the target text, one English model, the same tokenization and precision; None for others
        (FLARE, input-fusion, translate-test, ...), which answer their own rows."""
        method = get_method(self.cfg.method)
        if not (method.plain_lora and method.view == "target"):
            return None
        return (str(self.stage1.resolve()), self.cfg.max_length, self.cfg.bf16, self.cfg.pooling)


@dataclass(frozen=True)
class Route:
    """Where one row goes: the index of its run, its language, and the identifier's probability for it (None
    where the row's ``lang`` column said)."""

    run: int
    lang: str | None
    confidence: float | None

    def columns(self, runs: list[RoutedRun]) -> dict:
        """What an output row records of its route."""
        out = {"lang": self.lang}
        if self.confidence is not None:
            out["lid_confidence"] = round(self.confidence, CONFIDENCE_DIGITS)
        return {**out, "run": runs[self.run].name}


def routed_run(run_dir: str | Path) -> RoutedRun:
    """A finished run checked as ``xlt predict --run-dir`` checks it, with its language and labels."""
    from xlt.runs.preflight import check_run_dir

    cfg = check_run_dir(run_dir, for_predict=True)
    stage1 = stage1_dir_of(run_dir, json.loads((Path(run_dir) / METRICS).read_text()))
    try:
        labels = json.loads((stage1 / STAGE1_INFO).read_text()).get("labels") or ()
    except (OSError, ValueError):
        raise XltError(f"the run's English model {stage1} has no readable {STAGE1_INFO}") from None
    return RoutedRun(Path(run_dir), cfg, canonical_code(cfg.target_lang), stage1, tuple(labels))


def check_routed_runs(run_dirs: list[str | Path], default_run: str | Path | None = None) -> tuple[list, int]:
    """The runs (one task, one label set, one run per language) and the index of the default run (the first
    unless ``default_run`` names one of them)."""
    if not run_dirs:
        raise XltError("--run-dirs needs at least one run directory")
    runs = [routed_run(run_dir) for run_dir in run_dirs]
    first = runs[0]
    for run in runs[1:]:
        if run.cfg.task != first.cfg.task or run.labels != first.labels:
            what = f"task {first.cfg.task} vs {run.cfg.task}" if run.cfg.task != first.cfg.task else \
                f"labels {list(first.labels)} vs {list(run.labels)}"
            raise XltError(f"routed runs must share their task and labels: {first.run_dir} and {run.run_dir} differ "
                           f"({what})")
    seen: dict[str, Path] = {}
    for run in runs:
        if run.lang in seen:
            raise XltError(f"{seen[run.lang]} and {run.run_dir} both answer {run.lang}; give one run per language")
        seen[run.lang] = run.run_dir
    if default_run is None:
        return runs, 0
    matches = [i for i, run in enumerate(runs) if run.run_dir.resolve() == Path(default_run).resolve()]
    if not matches:
        raise XltError(f"--default-run {default_run} is not one of --run-dirs")
    return runs, matches[0]


def check_min_confidence(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise XltError(f"--min-confidence must be a probability between 0 and 1, got {value}")
    return value


def lid_text(row: dict) -> str:
    """The text the language identifier reads: the target text (QA: the question and its paragraph; tagging:
    the words)."""
    if isinstance(row.get("target_tokens"), list):
        return " ".join(map(str, row["target_tokens"]))
    return " ".join(row_text(row, c) for c in ("target_text", "target_question", "target_context") if row.get(c))


def row_language(row: dict, number: int) -> str | None:
    """The language a row's ``lang`` column names (canonical code; a code xlt does not know is kept as given and
    goes to the default run), None without one."""
    given = row.get(LANG_COLUMN)
    if given in (None, ""):
        return None
    if not isinstance(given, str):
        raise XltError(f"row {number}: the lang column holds {given!r}, not a language code")
    try:
        return canonical_code(given)
    except XltError:
        return given


def choose_routes(rows: list[dict], runs: list[RoutedRun], default: int, identifier=None,
                  min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> list[Route]:
    """One route per row: its ``lang`` column's run, else the identifier's; the default run where no run has the
    language or the identifier's probability is below ``min_confidence``."""
    given = [row_language(row, number) for number, row in enumerate(rows, 1)]
    lacking = [i for i, lang in enumerate(given) if lang is None]
    if lacking and identifier is None:
        raise XltError(f"row {lacking[0] + 1} has no {LANG_COLUMN} column; identify its language with --lid FILE "
                       "(built by xlt lid train)")
    if lacking:
        unknown = [run for run in runs if run.lang not in identifier.langs]
        if unknown:
            raise XltError(f"the language identifier does not know {unknown[0].lang} (run {unknown[0].run_dir}); it "
                           f"knows {', '.join(identifier.langs)}")
    guessed = dict(zip(lacking, identifier.predict([lid_text(rows[i]) for i in lacking]))) if lacking else {}
    by_lang = {run.lang: index for index, run in enumerate(runs)}
    routes = []
    for i, lang in enumerate(given):
        if lang is not None:
            routes.append(Route(by_lang.get(lang, default), lang, None))
            continue
        lang, confidence = guessed[i]
        sure = confidence >= min_confidence
        routes.append(Route(by_lang.get(lang, default) if sure else default, lang, confidence))
    return routes


def check_routed_sources(rows: list[dict], routes: list[Route], runs: list[RoutedRun], kind: str,
                         translator: str | None) -> None:
    """Rows routed to a run whose method reads the English side carry it, unless a translator writes it."""
    if translator is not None:
        return
    for number, (row, route) in enumerate(zip(rows, routes), 1):
        run = runs[route.run]
        method = get_method(run.cfg.method)
        if method.reads_source and not has_source(row, kind):
            raise XltError(f"row {number} goes to {run.run_dir} ({method.name}), which reads the English version of "
                           f"each input: it has no {' and '.join(source_columns(row, kind))}; add the column or "
                           "translate with --translator MODEL")
