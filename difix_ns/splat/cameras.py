"""Camera helpers for rendering Gaussians without a dataset (tests, parity scripts, previews)."""
from __future__ import annotations

import math

import torch
from torch import Tensor


def look_at_viewmat(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """World-to-camera [4, 4] in gsplat's OpenCV convention (x right, y down, z forward) looking at `target`."""
    z = torch.nn.functional.normalize(target - eye, dim=0)
    x = torch.nn.functional.normalize(torch.linalg.cross(z, up), dim=0)
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z])  # rows: camera axes in world coordinates
    viewmat = torch.eye(4, dtype=eye.dtype, device=eye.device)
    viewmat[:3, :3] = R
    viewmat[:3, 3] = -R @ eye
    return viewmat


def orbit_cameras(
    center: Tensor,  # [3]
    radius: float,
    n_views: int,
    width: int,
    height: int,
    fov_deg: float = 50.0,
    up: Tensor | None = None,
    elevation_deg: float = 15.0,
) -> tuple[Tensor, Tensor]:
    """`n_views` pinhole cameras on a circle around `center` (about `up`); returns viewmats [C,4,4], Ks [C,3,3]."""
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
    K = torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
    return torch.stack(viewmats), K.expand(n_views, 3, 3).clone()
