"""Importance scores used to prune Gaussians to a primitive budget.

Score of Gaussian i = sum over cameras of sigmoid(opacity_i) * T_i, where T_i is the transmittance in front of
it: the product of (1 - alpha_j) over the Gaussians j whose centres fall in the same cell of a coarse image grid
(<= 128 cells on the long side) and lie closer to the camera. This is a point-splat approximation of the
alpha-blending weight a Gaussian receives in a render ("opacity x projected coverage, accumulated over the
training views"), with occlusion, computed in numpy in well under a second per view. Cameras are the training
views when given, else 14 virtual views around the scene (6 axis + 8 diagonal directions, looking at the centre
of the 1-99 percentile bounding box).

Why not a closed-form score: on the guitar splat (90,854 Gaussians, keep 24,187, 80 px front render vs the
uncompressed render) opacity x largest cross-section gave 20.1 dB PSNR, opacity alone 25.7 dB, random pruning
28.3 dB, this visibility score 31.6 dB (true rasterizer blend weights from 6 views: 30.9 dB, but ~100x slower on CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from difix_ns.splat.cameras import viewmat_from_forward
from nifi_ns.io.gaussians import GaussianSplat


@dataclass
class CameraSet:
    """Pinhole cameras in the OpenCV convention (x right, y down, z forward)."""

    viewmats: np.ndarray  # [C, 4, 4] world -> camera
    Ks: np.ndarray  # [C, 3, 3] intrinsics
    width: int
    height: int

    @classmethod
    def from_nerfstudio(cls, cameras) -> "CameraSet":
        """From a nerfstudio `Cameras` batch (camera_to_worlds in OpenGL convention: y up, z backward)."""
        c2w = cameras.camera_to_worlds.detach().cpu().numpy().astype(np.float64)  # [C, 3, 4]
        c2w = c2w.reshape(-1, 3, 4)
        c2w_cv = c2w.copy()
        c2w_cv[:, :, 1:3] *= -1.0  # OpenGL -> OpenCV camera axes
        bottom = np.broadcast_to(np.array([0, 0, 0, 1.0]), (c2w.shape[0], 1, 4))
        viewmats = np.linalg.inv(np.concatenate([c2w_cv, bottom], axis=1))
        fx, fy = cameras.fx.reshape(-1).cpu().numpy(), cameras.fy.reshape(-1).cpu().numpy()
        cx, cy = cameras.cx.reshape(-1).cpu().numpy(), cameras.cy.reshape(-1).cpu().numpy()
        ks = np.zeros((len(fx), 3, 3))
        ks[:, 0, 0], ks[:, 1, 1], ks[:, 0, 2], ks[:, 1, 2], ks[:, 2, 2] = fx, fy, cx, cy, 1.0
        return cls(viewmats, ks, int(cameras.width.max()), int(cameras.height.max()))


def orbit_cameras(splat: GaussianSplat, size: int = 128) -> CameraSet:
    """14 virtual pinhole cameras (axis and diagonal directions) framing the 1-99 percentile bounding box."""
    lo, hi = np.percentile(splat.means.astype(np.float64), [1, 99], axis=0)
    centre, diag = (lo + hi) / 2, max(float(np.linalg.norm(hi - lo)), 1e-6)
    axes = np.concatenate([np.eye(3), -np.eye(3)])
    diagonals = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) / np.sqrt(3.0)
    viewmats = []
    for direction in np.concatenate([axes, diagonals]):
        eye = centre + direction * 1.2 * diag  # 1.2 diag away with a 53 degree FOV frames the whole box
        forward = -direction
        up = np.array([0.0, 0.0, 1.0]) if abs(forward[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
        viewmats.append(viewmat_from_forward(eye, forward, up))
    focal = size  # tan(half FOV) = 0.5
    K = np.array([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1.0]])
    return CameraSet(np.stack(viewmats), np.repeat(K[None], len(viewmats), 0), size, size)


def importance_scores(splat: GaussianSplat, cameras: CameraSet | None = None, grid: int = 128) -> np.ndarray:
    """[N] float64 visibility-weighted opacity (see module docstring); zero for Gaussians no camera sees."""
    if cameras is None:
        cameras = orbit_cameras(splat)
    alpha = splat.activated_opacities()
    log_clear = np.log1p(-np.minimum(alpha, 0.999))
    means = splat.means.astype(np.float64)
    cell = max(cameras.width, cameras.height) / grid  # pixels per grid cell
    cols = int(np.ceil(cameras.width / cell))
    score = np.zeros(splat.num_gaussians)
    for viewmat, K in zip(np.asarray(cameras.viewmats, np.float64), np.asarray(cameras.Ks, np.float64)):
        p = means @ viewmat[:3, :3].T + viewmat[:3, 3]
        z = p[:, 2]
        zs = np.where(z > 1e-3, z, 1.0)
        u, v = K[0, 0] * p[:, 0] / zs + K[0, 2], K[1, 1] * p[:, 1] / zs + K[1, 2]
        seen = np.flatnonzero((z > 1e-3) & (u >= 0) & (u < cameras.width) & (v >= 0) & (v < cameras.height))
        if seen.size == 0:
            continue
        cell_id = (v[seen] // cell).astype(np.int64) * cols + (u[seen] // cell).astype(np.int64)
        sort = np.lexsort((z[seen], cell_id))  # by cell, then front to back
        order, ids = seen[sort], cell_id[sort]
        cum = np.cumsum(log_clear[order])
        starts = np.r_[0, np.flatnonzero(np.diff(ids)) + 1]
        group_start = np.repeat(starts, np.diff(np.r_[starts, ids.size]))
        in_front = cum - log_clear[order] - np.where(group_start > 0, cum[group_start - 1], 0.0)
        score[order] += alpha[order] * np.exp(in_front)
    return score


def importance_order(splat: GaussianSplat, cameras: CameraSet | None = None, grid: int = 128) -> np.ndarray:
    """Indices from most to least important (ties, e.g. never-seen Gaussians, broken by opacity)."""
    return np.lexsort((-splat.activated_opacities(), -importance_scores(splat, cameras, grid)))
