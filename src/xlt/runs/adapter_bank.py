"""LoRA runs of one English model as one PEFT model: the English model loaded once, each run's adapter added
under its own name (loaded strictly, as every adapter is), and a mixed batch answered in one forward with PEFT's
per-row ``adapter_names`` (``model(**inputs, adapter_names=[...])``): each row goes through its own adapter's
low-rank update, the rest of the model computed once for the whole batch. Classification takes that path; the
other kinds' predictions (decoding, QA windows) run each adapter's rows as a group (``set_adapter``). FLARE and
the other methods that read the English side are not banked (FLARE refuses ``adapter_names``):
:mod:`xlt.runs.routing` runs each such run's rows by itself.
"""

from __future__ import annotations

from pathlib import Path

from xlt.errors import XltError
from xlt.methods.adapters import load_adapter
from xlt.run_dir import ADAPTER
from xlt.runs.predict import Predictor

FIRST = "default"  # PEFT's name of the adapter the first run's model is built with


def add_run_adapter(predictor: Predictor, run_dir: Path, name: str) -> None:
    """Run ``run_dir``'s LoRA adapter added to ``predictor``'s PEFT model as ``name`` (its config as saved),
    every tensor loaded."""
    from peft import LoraConfig, PeftConfig

    folder = Path(run_dir) / ADAPTER
    config = PeftConfig.from_pretrained(str(folder))
    if type(config) is not LoraConfig:
        raise XltError(f"{run_dir}: a bank holds LoRA adapters, not {type(config).__name__}")
    config.inference_mode = True
    predictor.adapted.model.add_adapter(name, config)
    load_adapter(predictor.adapted, folder, adapter_name=name)


class AdapterBank:
    """Runs that share an English model (``RoutedRun.bank_key``), one PEFT model holding their adapters."""

    def __init__(self, predictor: Predictor, names: dict[str, str]):
        self.predictor = predictor  # the first run's, which holds every adapter
        self.names = names  # run name (its folder as given) -> adapter name

    @classmethod
    def load(cls, run_dirs: list[Path], show_progress: bool = False) -> "AdapterBank":
        first = Predictor.from_run_dir(run_dirs[0], show_progress=show_progress)
        names = {str(run_dirs[0]): FIRST}
        for number, run_dir in enumerate(run_dirs[1:], 1):
            names[str(run_dir)] = f"run{number}"
            add_run_adapter(first, run_dir, names[str(run_dir)])
        return cls(first, names)

    def predict(self, rows: list[dict], runs: list[str], mixed: bool = True) -> list[dict]:
        """Each row answered by the adapter of its run (``runs``: run names, one per row): classification in
        mixed batches (``mixed``), else each adapter's rows as one group."""
        adapters = [self.names[run] for run in runs]
        if mixed and self.predictor.kind == "classification":
            return self.predictor.predict(rows, adapter_names=adapters)
        model, out = self.predictor.adapted.model, [None] * len(rows)
        try:
            for name in dict.fromkeys(adapters):
                indices = [i for i, adapter in enumerate(adapters) if adapter == name]
                model.set_adapter(name)
                for i, row in zip(indices, self.predictor.predict([rows[i] for i in indices])):
                    out[i] = row
        finally:
            model.set_adapter(FIRST)
        return out
