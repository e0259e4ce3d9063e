"""xlt: parameter-efficient cross-lingual transfer (FLARE, alignment, baselines).

``import xlt`` makes PEFT know FLARE adapters (``peft_type: FLARE``), so a saved FLARE adapter
loads with stock ``PeftModel.from_pretrained``. PEFT (and torch) take seconds to import and the
command line checks its input before importing them, so the registration runs as soon as PEFT is
imported, by whoever imports it, or at once if it already is.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"


def _register_flare() -> None:
    from xlt.flare.tuner import register_flare

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
            _register_flare()

        spec.loader.exec_module = exec_then_register
        return spec


if "peft" in sys.modules:
    _register_flare()
elif not any(isinstance(finder, _AfterPeftImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _AfterPeftImport())
