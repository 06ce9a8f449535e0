"""A cheaper form of one check nerfstudio runs at the start of every ``ns-*`` command.

``nerfstudio.configs.method_configs`` registers 26 not-installed "external" methods at import, building one
``ExternalMethodDummyTrainerConfig`` each. Its ``__post_init__`` asks ``inspect.stack()[2].function`` whether the
caller is ``get_external_methods`` (then nothing happens; from the command line it offers to install the method).
``inspect.stack()`` reads the source file and the module of every frame on the stack, which with torch loaded takes
~3.5 s of each ``ns-*`` start on a 2-core CPU. :func:`install` asks the same question of the same frame through
``sys._getframe(2).f_code.co_name`` and leaves every other case to nerfstudio's own ``__post_init__``.

nerfstudio imports the plugin's method configs (entry points) just before it builds those 26 configs, so the
``difix3d*`` method configs install this (patch 8 of :mod:`difix_ns.nerfstudio_patches`, which says why there only).
Import-light: the standard library at import time; :func:`install` imports only the nerfstudio module it patches.
"""
from __future__ import annotations

import sys

CALLER = "get_external_methods"
"""The nerfstudio function whose ``ExternalMethodDummyTrainerConfig`` instances must stay silent."""


def install() -> None:
    """Replace ``ExternalMethodDummyTrainerConfig.__post_init__`` by the frame-name check (idempotent)."""
    from nerfstudio.configs.external_methods import ExternalMethodDummyTrainerConfig as Dummy

    original = Dummy.__post_init__
    if getattr(original, "_difix_quick_check", False):
        return

    def __post_init__(self) -> None:
        # frame 0: this function, 1: the dataclass __init__, 2: its caller (nerfstudio looks at the same frame)
        if sys._getframe(2).f_code.co_name == CALLER:
            return
        original(self)  # from the command line: nerfstudio's own install offer (its check sees a deeper stack)

    __post_init__._difix_quick_check = True
    __post_init__.__wrapped__ = original
    Dummy.__post_init__ = __post_init__
