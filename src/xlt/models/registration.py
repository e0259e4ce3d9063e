"""How xlt's pooled classifier gets into transformers' Auto classes, so that a stage-1 folder loads with stock
``AutoConfig`` / ``AutoModelForSequenceClassification`` (no ``trust_remote_code``).

``import xlt`` calls :func:`register_when_transformers_loads`. Transformers (and torch) take seconds to import
and the command line checks its input before importing them, so this module imports neither: it registers at
once what transformers has already loaded, else an import hook waits. The config class registers with
``AutoConfig`` as soon as transformers' ``configuration_auto`` has loaded (it needs only transformers'
configuration code), the model class with ``AutoModelForSequenceClassification`` as soon as ``modeling_auto``
has (not with ``AutoModel``, which gives a model without its task head). Token classification and span (QA) stage-1 models are transformers' own classes and
need nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

CONFIG_AUTO = "transformers.models.auto.configuration_auto"
MODELING_AUTO = "transformers.models.auto.modeling_auto"


def register_config() -> None:
    """``AutoConfig`` knows ``model_type: xlt-pooled-classifier``."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING, AutoConfig

    from xlt.models.architectures import POOLED_MODEL_TYPE
    from xlt.models.auto_config import PooledClassifierConfig

    if POOLED_MODEL_TYPE not in CONFIG_MAPPING:
        AutoConfig.register(POOLED_MODEL_TYPE, PooledClassifierConfig)


def register_models() -> None:
    """``AutoModelForSequenceClassification`` gives xlt's pooled classifier for its config."""
    register_config()
    from transformers.models.auto.modeling_auto import AutoModelForSequenceClassification

    from xlt.models.auto_classes import PooledClassifierForSequenceClassification
    from xlt.models.auto_config import PooledClassifierConfig

    AutoModelForSequenceClassification.register(PooledClassifierConfig, PooledClassifierForSequenceClassification,
                                                exist_ok=True)


REGISTER = {CONFIG_AUTO: register_config, MODELING_AUTO: register_models}


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loaders of transformers' two Auto modules so that xlt's classes register
    once each has loaded, then steps aside (a lookup by ``importlib.util.find_spec`` gets a wrapped spec that
    is never executed: the finder stays until both have registered)."""

    looking = False

    def __init__(self, waiting: set[str]) -> None:
        self.waiting = waiting

    def find_spec(self, name, path=None, target=None):
        if name not in self.waiting or self.looking:
            return None
        self.looking = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.looking = False
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            REGISTER[name]()
            self.waiting.discard(name)
            if not self.waiting and self in sys.meta_path:
                sys.meta_path.remove(self)

        spec.loader.exec_module = exec_then_register
        return spec


def register_when_transformers_loads() -> None:
    """Register xlt's classes with what transformers has loaded now, and the rest as soon as it loads (once
    per process)."""
    if MODELING_AUTO in sys.modules:
        register_models()
        return
    if CONFIG_AUTO in sys.modules:
        register_config()
    if not any(isinstance(finder, _AfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport({name for name in REGISTER if name not in sys.modules}))
