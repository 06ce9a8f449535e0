"""Position contraction of the Nix codec (container version 2): a log-radial warp before the uniform grid.

A uniform grid over the bounding box spends as much precision on a background splat 50 units away as on the
object in front of the cameras, and one far outlier coarsens the grid for everything. Warping each position
radially about the scene centre c with scale s,

    y = c + (x - c) * s * log(1 + r / s) / r,   r = |x - c|,

before the grid (and inverting after it: r = s * (exp(r' / s) - 1)) makes the world-space step grow like
(s + r): near the centre it is finer than the plain grid, far away coarser, i.e. about constant in *angle* as
seen from cameras around the centre. `c` (median position) and `s` (median distance to it) are float32 values
stored in the header; the inverse runs in float32 in the one shared decode path, so round trips stay exact.
"""
from __future__ import annotations

import numpy as np

F32 = np.float32


def fit(means: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """(centre [3], scale) of the warp for these positions."""
    if means.shape[0] == 0:
        return np.zeros(3, F32), F32(1.0)
    centre = np.median(means.astype(np.float64), axis=0)
    dist = np.linalg.norm(means.astype(np.float64) - centre, axis=1)
    scale = float(np.median(dist)) if dist.size else 1.0
    return centre.astype(F32), F32(max(scale, 1e-6))


def contract(means: np.ndarray, centre: np.ndarray, scale: float) -> np.ndarray:
    """Warped positions (float64, encoder side)."""
    v = means.astype(np.float64) - centre.astype(np.float64)
    r = np.linalg.norm(v, axis=1, keepdims=True)
    s = float(scale)
    factor = np.where(r > 0, s * np.log1p(r / s) / np.maximum(r, 1e-300), 1.0)
    return v * factor


def expand(warped: np.ndarray, centre: np.ndarray, scale: float) -> np.ndarray:
    """Inverse of `contract` on dequantized (float32) grid values; float32 arithmetic throughout."""
    y = warped.astype(F32)
    s = F32(scale)
    r_warped = np.sqrt((y * y).sum(axis=1, keepdims=True, dtype=F32)).astype(F32)
    r = (s * np.expm1(r_warped / s)).astype(F32)
    factor = np.where(r_warped > 0, r / np.maximum(r_warped, F32(1e-30)), F32(1.0)).astype(F32)
    return (centre.astype(F32) + y * factor).astype(F32)
