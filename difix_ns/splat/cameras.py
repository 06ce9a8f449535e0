"""Camera construction for rendering Gaussians without a dataset (the demo, the codec's importance views, tests,
parity and benchmark scripts): the one look-at construction and an orbit of look-at cameras.

``viewmat_from_forward`` is the construction every other helper uses: world-to-camera [4, 4] in gsplat's OpenCV
convention (x right, y down, z forward) from an eye position, a unit forward direction and an up hint. It takes
numpy arrays (float64 math, as the numpy-only codec ranks Gaussians with) or torch tensors (their dtype and device);
torch is imported only for tensors, so the codec stays torch-free.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor


def viewmat_from_forward(eye: Any, forward: Any, up: Any) -> Any:
    """World-to-camera [4, 4] for a camera at ``eye`` looking along the unit vector ``forward``; ``up`` only picks
    the roll (the camera's y axis points away from it). numpy in -> float64 numpy out; torch in -> torch out."""
    if isinstance(eye, np.ndarray):
        cross, stack = np.cross, np.stack
        view = np.eye(4)

        def norm(v):
            return np.linalg.norm(v)
    else:
        import torch

        cross, stack = torch.linalg.cross, torch.stack
        view = torch.eye(4, dtype=eye.dtype, device=eye.device)

        def norm(v):
            return v.norm()
    right = cross(forward, up)
    right = right / norm(right)
    down = cross(forward, right)
    rot = stack([right, down, forward])  # rows: camera axes in world coordinates
    view[:3, :3] = rot
    view[:3, 3] = -rot @ eye
    return view


def look_at_viewmat(eye: Any, target: Any, up: Any) -> Any:
    """World-to-camera [4, 4] in gsplat's OpenCV convention (x right, y down, z forward) looking at ``target``."""
    forward = target - eye
    return viewmat_from_forward(eye, forward / (np.linalg.norm(forward) if isinstance(forward, np.ndarray)
                                                 else forward.norm()), up)


def orbit_cameras(
    center: "Tensor",  # [3]
    radius: float,
    n_views: int,
    width: int,
    height: int,
    fov_deg: float = 50.0,
    up: "Tensor | None" = None,
    elevation_deg: float = 15.0,
) -> "tuple[Tensor, Tensor]":
    """`n_views` pinhole cameras on a circle around `center` (about `up`); returns viewmats [C,4,4], Ks [C,3,3]."""
    import torch

    up = torch.tensor([0.0, 0.0, 1.0]) if up is None else up.float()
    up = up / up.norm()
    a = torch.tensor([1.0, 0.0, 0.0]) if abs(float(up[0])) < 0.9 else torch.tensor([0.0, 1.0, 0.0])
    e1 = torch.nn.functional.normalize(a - (a @ up) * up, dim=0)
    e2 = torch.linalg.cross(up, e1)
    elev = math.radians(elevation_deg)
    viewmats = []
    for i in range(n_views):
        t = 2 * math.pi * i / n_views
        offset = math.cos(elev) * (math.cos(t) * e1 + math.sin(t) * e2) + math.sin(elev) * up
        viewmats.append(look_at_viewmat(center + radius * offset, center, up))
    f = 0.5 * max(width, height) / math.tan(math.radians(fov_deg) / 2)
    return torch.stack(viewmats), pinhole_intrinsics(f, f, width, height, n_views)


def pinhole_intrinsics(fx: float, fy: float, width: int, height: int, n_views: int) -> "Tensor":
    """``n_views`` copies of the pinhole K [3, 3] with the principal point at the image centre -> [C, 3, 3]."""
    import torch

    K = torch.tensor([[fx, 0.0, width / 2], [0.0, fy, height / 2], [0.0, 0.0, 1.0]])
    return K.expand(n_views, 3, 3).clone()
