"""Example data bundled with the package (permissively licensed only; see CREDITS.txt)."""
from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
GUITAR_SPLAT = ASSETS_DIR / "guitar.compressed.ply"
"""A real trained 3DGS capture of a guitar (90,854 Gaussians, SH degree 0, PlayCanvas compressed PLY); MIT,
from playcanvas/engine ``examples/assets/splats``."""

__all__ = ["ASSETS_DIR", "GUITAR_SPLAT"]
