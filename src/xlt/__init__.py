"""xlt: parameter-efficient cross-lingual transfer (FLARE, alignment, baselines).

``import xlt`` makes PEFT know FLARE adapters (``peft_type: FLARE``), so a saved FLARE adapter loads with stock
``PeftModel.from_pretrained``, and transformers' Auto classes know xlt's pooled classifier
(``model_type: xlt-pooled-classifier``), so a stage-1 folder loads with stock
``AutoModelForSequenceClassification.from_pretrained``; how and when is :mod:`xlt.flare.registration`'s and
:mod:`xlt.models.registration`'s business (as soon as PEFT or transformers is imported, keeping the command
line's up-front checks free of torch).

``xlt.Predictor`` (:class:`xlt.runs.predict.Predictor`) loads a finished run and predicts on new text;
``xlt.RoutedPredictor`` (:class:`xlt.runs.routing.RoutedPredictor`) routes each input to the run of its language;
both are imported on first use, so ``import xlt`` stays light.
"""

from __future__ import annotations

__version__ = "0.1.0"

from xlt.flare.registration import register_when_peft_loads  # noqa: E402
from xlt.models.registration import register_when_transformers_loads  # noqa: E402

register_when_transformers_loads()
register_when_peft_loads()


def __getattr__(name: str):
    """``xlt.Predictor`` and ``xlt.RoutedPredictor``, imported when first asked for (they bring torch)."""
    if name == "Predictor":
        from xlt.runs.predict import Predictor

        return Predictor
    if name == "RoutedPredictor":
        from xlt.runs.routing import RoutedPredictor

        return RoutedPredictor
    raise AttributeError(f"module 'xlt' has no attribute {name!r}")
