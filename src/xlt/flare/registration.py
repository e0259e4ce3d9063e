"""How FLARE gets into PEFT: the three PEFT table entries for ``peft_type`` "FLARE", written as soon as PEFT loads.

``import xlt`` calls :func:`register_when_peft_loads`, so a saved FLARE adapter loads with stock
``PeftModel.from_pretrained``. PEFT (and torch) take seconds to import and the command line checks its input
before importing them, so this module imports neither: it registers at once if PEFT is already imported, else
when someone imports it (an import hook on ``peft``).

That import can come from inside FLARE's own modules (``import xlt.flare.config`` or ``xlt.flare.tuner`` before
anything imported PEFT), which are then half-built: :func:`register_flare` does nothing while ``FlareConfig``
or ``FlareTuner`` is missing, and each of the two modules calls it again on its last line, once complete.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

PEFT_TYPE = "FLARE"  # the adapter_config.json ``peft_type``


def register_flare() -> None:
    """Teach PEFT the "FLARE" peft_type: its config class, tuner and state-dict prefix.

    PEFT's ``register_peft_method`` accepts only names of its own ``PeftType`` enum, so the same three
    table entries it would write are written here under the plain string (``PeftType`` is a ``str`` enum:
    lookups by a saved config's ``"FLARE"`` find them alike). Nothing happens while either class is not
    yet defined (a half-built module, see above) or once they are registered."""
    config_class = getattr(sys.modules.get("xlt.flare.config"), "FlareConfig", None)
    tuner_class = getattr(sys.modules.get("xlt.flare.tuner"), "FlareTuner", None)
    if config_class is None or tuner_class is None:
        return
    from peft import mapping

    if mapping.PEFT_TYPE_TO_CONFIG_MAPPING.get(PEFT_TYPE) is config_class:
        return
    mapping.PEFT_TYPE_TO_CONFIG_MAPPING[PEFT_TYPE] = config_class
    mapping.PEFT_TYPE_TO_TUNER_MAPPING[PEFT_TYPE] = tuner_class
    mapping.PEFT_TYPE_TO_PREFIX_MAPPING[PEFT_TYPE] = tuner_class.prefix


def _load_and_register() -> None:
    """PEFT is loaded: load FLARE's tuner (and with it its config) and register them."""
    import xlt.flare.tuner  # noqa: F401  (half-built when it is what imported PEFT: it registers when done)

    register_flare()


class _AfterPeftImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loader of ``peft`` so FLARE registers once PEFT has loaded.

    A lookup that only asks whether PEFT is installed (``importlib.util.find_spec``) gets a wrapped
    spec that is never executed; the finder stays until a real import has run."""

    looking = False

    def find_spec(self, name, path=None, target=None):
        if name != "peft" or self.looking:
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
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            _load_and_register()

        spec.loader.exec_module = exec_then_register
        return spec


def register_when_peft_loads() -> None:
    """Register FLARE with PEFT now if PEFT is imported, else as soon as it is (once per process)."""
    if "peft" in sys.modules:
        _load_and_register()
    elif not any(isinstance(finder, _AfterPeftImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterPeftImport())
