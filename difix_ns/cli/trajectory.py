"""``difix-trajectory``: a smooth video through the training cameras of a run, optionally post-fixed (Difix3D+).

The options and the rendering are :class:`difix_ns.render.trajectory.TrajectoryRender`; this module is the console
script.
"""
from __future__ import annotations

import sys
from typing import List, Optional

import tyro

from difix_ns.render.trajectory import TrajectoryRender


def entrypoint(argv: Optional[List[str]] = None) -> None:
    """Console script ``difix-trajectory``."""
    tyro.extras.set_accent_color("bright_yellow")
    tyro.cli(TrajectoryRender, args=argv).main()


if __name__ == "__main__":
    sys.exit(entrypoint())
