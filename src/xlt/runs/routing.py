"""Several languages in one model: ``xlt predict --run-dirs`` and, from Python, :class:`RoutedPredictor`. Each
input goes to the run of its language (:mod:`xlt.runs.routes` decides, torch-free); LoRA runs of one English
model answer together from one PEFT model (:mod:`xlt.runs.adapter_bank`), every other run (FLARE, input-fusion,
...) answers its own rows with its own :class:`xlt.runs.predict.Predictor`. Each output row is the run's own
prediction plus ``lang``, ``lid_confidence`` (where the identifier decided) and ``run`` (the run that answered).
"""

from __future__ import annotations

from pathlib import Path

from xlt.lid.model import LanguageIdentifier, load_identifier
from xlt.runs.adapter_bank import AdapterBank
from xlt.runs.predict import Predictor
from xlt.runs.routes import DEFAULT_MIN_CONFIDENCE, RoutedRun, check_min_confidence, check_routed_runs, choose_routes


class _Single:
    """A run that answers its own rows (not banked)."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor

    def predict(self, rows: list[dict], runs: list[str], mixed: bool = True) -> list[dict]:
        return self.predictor.predict(rows)


def load_engines(runs: list[RoutedRun], translator: str | None, translation_cache: str | None,
                 show_progress: bool) -> list[tuple[object, set[int]]]:
    """What answers each run's rows: one adapter bank per English model its LoRA runs share, one predictor per
    other run; with the indices of the runs each answers."""
    banks: dict[tuple, list[int]] = {}
    engines = []
    for index, run in enumerate(runs):
        if run.bank_key is None:
            engines.append((_Single(Predictor.from_run_dir(run.run_dir, translator, translation_cache,
                                                           show_progress)), {index}))
        else:
            banks.setdefault(run.bank_key, []).append(index)
    for members in banks.values():
        engines.append((AdapterBank.load([runs[i].run_dir for i in members], show_progress), set(members)))
    return engines


class RoutedPredictor:
    """Finished runs of one task for several languages, loaded once, that answer each input with the run of its
    language (usable in a notebook)::

        routed = RoutedPredictor.from_run_dirs(["runs/ace", "runs/bug", "runs/jv"], lid="lid.npz")
        routed.predict(["Lon galak that ...", {"target_text": "...", "lang": "jv"}])

    Each result is the answering run's prediction with ``lang``, ``lid_confidence`` (where the identifier
    decided) and ``run``. ``mixed_batches=False`` runs each LoRA adapter's rows as their own batches (the same
    predictions; benchmarks/routing.py compares the speed)."""

    def __init__(self, runs: list[RoutedRun], default: int, engines: list, identifier: LanguageIdentifier | None,
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE, mixed_batches: bool = True):
        self.runs, self.default, self.engines = runs, default, engines
        self.identifier, self.min_confidence, self.mixed_batches = identifier, min_confidence, mixed_batches

    @classmethod
    def from_run_dirs(cls, run_dirs: list[str | Path], lid: str | Path | LanguageIdentifier | None = None,
                      default_run: str | Path | None = None, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                      translator: str | None = None, translation_cache: str | None = None,
                      show_progress: bool = False, mixed_batches: bool = True) -> "RoutedPredictor":
        """The runs (checked: one task and label set, one run per language), the identifier file ``lid`` (built by
        ``xlt lid train``; needed for inputs without a ``lang``) and the default run (the first unless named)."""
        runs, default = check_routed_runs(run_dirs, default_run)
        identifier = load_identifier(lid) if isinstance(lid, (str, Path)) else lid
        check_min_confidence(min_confidence)
        engines = load_engines(runs, translator, translation_cache, show_progress)
        return cls(runs, default, engines, identifier, min_confidence, mixed_batches)

    def predict(self, inputs: list[str | dict]) -> list[dict]:
        """One prediction per input (a string is a ``target_text``), in order, each by its language's run."""
        rows = [{"target_text": x} if isinstance(x, str) else dict(x) for x in inputs]
        routes = choose_routes(rows, self.runs, self.default, self.identifier, self.min_confidence)
        out: list = [None] * len(rows)
        for engine, members in self.engines:
            indices = [i for i, route in enumerate(routes) if route.run in members]
            if not indices:
                continue
            answers = engine.predict([rows[i] for i in indices], [self.runs[routes[i].run].name for i in indices],
                                     mixed=self.mixed_batches)
            for i, answer in zip(indices, answers):
                out[i] = {**answer, **routes[i].columns(self.runs)}
        return out
