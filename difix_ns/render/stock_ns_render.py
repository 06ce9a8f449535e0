"""Help for nerfstudio's own ``ns-render`` when the plugin is installed (it imports the plugin's method configs).

* ``ffmpeg``: ns-render needs one on PATH for videos; without a system ffmpeg the binary bundled with imageio-ffmpeg
  (a dependency of this package) is put on PATH.
* ``rgb_fixed`` on a stock run: only the plugin's methods carry that output, so ns-render stops with "Could not find
  rgb_fixed"; at exit one line points to ``ns-difix-render``, which adds it to any run.

Import-light: standard library only; :func:`install` is a no-op for every other command.
"""
from __future__ import annotations

import atexit
import sys
from pathlib import Path
from typing import Optional, Sequence

HINT = ("hint: rgb_fixed comes with the plugin's methods (difix3d, difix3d-splatfacto). For this run use "
        "`ns-difix-render` with the same arguments (e.g. ns-difix-render interpolate --load-config ... "
        "--rendered-output-names rgb rgb_fixed); it post-fixes any stock splatfacto / nerfacto run.")

_installed = False


def _hint_if_no_hook() -> None:
    postfix = sys.modules.get("difix_ns.render.postfix")
    if postfix is None or not postfix.INSTALLED_HOOKS[0]:
        print(HINT, file=sys.stderr)


def install(argv: Optional[Sequence[str]] = None) -> None:
    """Set up the two helps when the running program is ``ns-render`` (idempotent)."""
    global _installed
    argv = list(sys.argv if argv is None else argv)
    if _installed or not argv or Path(argv[0]).name != "ns-render":
        return
    _installed = True
    try:
        from difix_ns.render.ffmpeg import ensure_ffmpeg

        ensure_ffmpeg()
    except RuntimeError:
        pass  # ns-render then reports the missing ffmpeg itself
    if any("rgb_fixed" in a for a in argv[1:]):
        atexit.register(_hint_if_no_hook)
