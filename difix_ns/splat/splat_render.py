"""Render a ``GaussianSplat`` container (numpy arrays from a PLY or the codec) without a nerfstudio model: the one
helper the demo, the codec benchmarks and their tests use instead of unpacking parameters each time.

Activations are the 3DGS ones (``exp`` scales, ``sigmoid`` opacities, SH of the splat's degree), the renderer is
``difix_ns.splat.rasterization`` (gsplat's kernels on CUDA, the pure-PyTorch path elsewhere).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor


def render_splat(splat: Any, viewmats: Tensor, Ks: Tensor, width: int, height: int, device: Any = "cpu",
                 keep: Optional[Tensor] = None, backgrounds: Optional[Tensor] = None) -> Tensor:
    """Render ``splat`` from every camera in one call -> ``[C, 3, H, W]`` in [0, 1] (clamped) on ``device``.

    ``viewmats`` [C, 4, 4] world-to-camera (OpenCV axes), ``Ks`` [C, 3, 3]; ``keep`` selects Gaussians (index or
    mask) first; ``backgrounds`` [C, 3] (None: black, gsplat's default)."""
    from difix_ns.splat.rendering import rasterization

    g = splat.to_gauss_params(device)
    if keep is not None:
        g = {k: v[keep.to(v.device)] for k, v in g.items()}
    colors = torch.cat([g["features_dc"][:, None], g["features_rest"]], dim=1)  # [N, K, 3] SH coefficients
    images, _, _ = rasterization(
        g["means"], g["quats"], torch.exp(g["scales"]), torch.sigmoid(g["opacities"][:, 0]), colors,
        viewmats.to(device), Ks.to(device), width, height, sh_degree=splat.sh_degree, backgrounds=backgrounds,
    )
    return images.clamp(0, 1).permute(0, 3, 1, 2)
