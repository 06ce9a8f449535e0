"""Process-level switch for the ``rgb_fixed`` render output (Difix3D+).

``rgb_fixed`` costs a diffusion forward per frame, so models only compute it when one of these is true:

1. ``enable_render_fix(True)`` was called in this process (``ns-difix-render --postfix`` and ``difix-trajectory``
   do this);
2. the environment variable ``DIFIX_RENDER_FIX`` is ``1``/``true``/``yes``/``on``;
3. the process command line asks for it: ``rgb_fixed`` is one of the arguments (e.g. stock
   ``ns-render interpolate ... --rendered-output-names rgb rgb_fixed``);
4. (per model, in the viewer) the "Difix: fix render" checkbox is ticked.

Training and ``ns-eval`` match none of these, so they pay nothing. ``enable_render_fix(False)`` forces it off.
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from difix_ns.fixer import DifixFixerConfig

OUTPUT_NAME = "rgb_fixed"
"""Name of the post-fixed output key."""
ENV_VAR = "DIFIX_RENDER_FIX"
"""Environment variable that switches ``rgb_fixed`` on for every model in the process."""

_enabled: Optional[bool] = None
_fixer_config: Optional["DifixFixerConfig"] = None


def enable_render_fix(enabled: Optional[bool] = True, fixer_config: Optional["DifixFixerConfig"] = None) -> None:
    """Force ``rgb_fixed`` on (True) or off (False) for this process; None returns to env/argv detection.

    ``fixer_config`` (optional) overrides the fixer every hooked model uses; None leaves that to each model.
    """
    global _enabled, _fixer_config
    _enabled = enabled
    _fixer_config = fixer_config


def process_fixer_config() -> Optional["DifixFixerConfig"]:
    """The fixer configuration set by :func:`enable_render_fix`, if any."""
    return _fixer_config


def requested_on_command_line(argv: Optional[list[str]] = None) -> bool:
    """True when ``rgb_fixed`` is an argument of this process (``--rendered-output-names ... rgb_fixed``)."""
    args = sys.argv[1:] if argv is None else argv
    return any(a == OUTPUT_NAME or a.endswith("=" + OUTPUT_NAME) for a in args)


def render_fix_enabled() -> bool:
    """Whether ``rgb_fixed`` should be computed for every render in this process (see the module docstring)."""
    if _enabled is not None:
        return _enabled
    if os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    return requested_on_command_line()
