"""FLARE as a PEFT method: ``FlareConfig`` (xlt.flare.config), ``FlareTuner`` (xlt.flare.tuner) and the fusing
``FlareLinear`` layer (xlt.flare.layer).

They are loaded on first use (module ``__getattr__``): importing the package, or its torch-free modules
(``fusion_names``, ``registration``) as the command line's checks do, imports neither torch nor PEFT.
"""

from __future__ import annotations

import importlib

_HOMES = {"FlareConfig": "xlt.flare.config", "FlareTuner": "xlt.flare.tuner", "FlareLinear": "xlt.flare.layer"}
__all__ = list(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
