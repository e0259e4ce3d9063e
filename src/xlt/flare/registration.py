"""How FLARE gets into PEFT: the three PEFT table entries for ``peft_type`` "FLARE", written as soon as PEFT
and FLARE's config and tuner modules are loaded.

``import xlt`` calls :func:`register_when_peft_loads`, so a saved FLARE adapter loads with stock
``PeftModel.from_pretrained``. PEFT (and torch) take seconds to import and the command line checks its input
before importing them, so this module imports neither: it registers at once if PEFT is already imported, else
an import hook waits for it. Once PEFT has loaded, the hook loads FLARE's tuner (and with it its config) and
registers them. That import of PEFT can come from inside ``xlt.flare.config`` or ``xlt.flare.tuner`` (imported
before anything imported PEFT), which are then half-built; so the hook also waits for those two, and
registers once the last of them is complete. Neither module knows about any of this.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

WATCHED = ("peft", "xlt.flare.config", "xlt.flare.tuner")  # after each loads, FLARE may be ready to register


def register_flare() -> bool:
    """Teach PEFT the "FLARE" peft_type: its config class, tuner and state-dict prefix; whether it is registered.

    PEFT's ``register_peft_method`` accepts only names of its own ``PeftType`` enum, so the same three
    table entries it would write are written here under the plain string (``PeftType`` is a ``str`` enum:
    lookups by a saved config's ``"FLARE"`` find them alike). Nothing happens while either class is not
    yet defined (a half-built module, see above)."""
    config_class = getattr(sys.modules.get("xlt.flare.config"), "FlareConfig", None)
    tuner_class = getattr(sys.modules.get("xlt.flare.tuner"), "FlareTuner", None)
    if config_class is None or tuner_class is None:
        return False
    from peft import mapping

    from xlt.flare.config import PEFT_TYPE

    mapping.PEFT_TYPE_TO_CONFIG_MAPPING[PEFT_TYPE] = config_class
    mapping.PEFT_TYPE_TO_TUNER_MAPPING[PEFT_TYPE] = tuner_class
    mapping.PEFT_TYPE_TO_PREFIX_MAPPING[PEFT_TYPE] = tuner_class.prefix
    return True


def _load_and_register() -> bool:
    """PEFT is loaded: load FLARE's tuner (which imports its config) and register them."""
    import xlt.flare.tuner  # noqa: F401  (half-built when it is what imported PEFT: registered once it is done)

    return register_flare()


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loaders of the ``WATCHED`` modules so that FLARE registers once they
    have loaded, then steps aside.

    A lookup that only asks whether PEFT is installed (``importlib.util.find_spec``) gets a wrapped
    spec that is never executed; the finder stays until FLARE is registered."""

    looking = False

    def find_spec(self, name, path=None, target=None):
        if name not in WATCHED or self.looking:
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
            if (_load_and_register() if name == "peft" else register_flare()) and self in sys.meta_path:
                sys.meta_path.remove(self)

        spec.loader.exec_module = exec_then_register
        return spec


def register_when_peft_loads() -> None:
    """Register FLARE with PEFT now if PEFT is imported, else as soon as it is (once per process)."""
    if "peft" in sys.modules:
        _load_and_register()
    elif not any(isinstance(finder, _AfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())
