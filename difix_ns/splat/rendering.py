"""`rasterization()` with gsplat 1.4.0's signature: gsplat's CUDA kernels for CUDA tensors, plain PyTorch otherwise.

The PyTorch path reuses gsplat's own pure-torch reference helpers (`gsplat.cuda._torch_impl`: covariance, projection,
spherical harmonics; all CPU-safe) and adds the tile intersection and compositing in `_tiles.py`. Outputs and the
`info` dict follow gsplat 1.4.0 (``radii`` is ``[C, N]`` int32; ``means2d`` keeps its gradient, and
``means2d.absgrad`` is filled during backward when ``absgrad=True``), so splatfacto and ``DefaultStrategy`` run
on it unchanged.
"""
from __future__ import annotations

import math
import weakref
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor
from typing_extensions import Literal

from difix_ns.splat._tiles import CELL_SIZE, composite_cells, intersect_cells

RenderMode = Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"]


def _check_args(means, quats, scales, opacities, colors, viewmats, Ks, sh_degree, render_mode, covars) -> None:
    N, C = means.shape[0], viewmats.shape[0]
    if means.shape != (N, 3):
        raise ValueError(f"means must be [N, 3], got {tuple(means.shape)}")
    if covars is None and (quats is None or scales is None or quats.shape != (N, 4) or scales.shape != (N, 3)):
        raise ValueError("quats [N, 4] and scales [N, 3] are required when covars is None")
    if covars is not None and covars.shape != (N, 3, 3):
        raise ValueError(f"covars must be [N, 3, 3], got {tuple(covars.shape)}")
    if opacities.shape != (N,):
        raise ValueError(f"opacities must be [N], got {tuple(opacities.shape)}")
    if viewmats.shape != (C, 4, 4) or Ks.shape != (C, 3, 3):
        raise ValueError(
            f"viewmats [C, 4, 4] and Ks [C, 3, 3] expected, got {tuple(viewmats.shape)}, {tuple(Ks.shape)}")
    if render_mode not in ("RGB", "D", "ED", "RGB+D", "RGB+ED"):
        raise ValueError(f"render_mode must be RGB, D, ED, RGB+D or RGB+ED, got {render_mode!r}")
    if sh_degree is None:
        if not (colors.dim() == 2 and colors.shape[0] == N or colors.dim() == 3 and colors.shape[:2] == (C, N)):
            raise ValueError(f"colors must be [N, D] or [C, N, D] without sh_degree, got {tuple(colors.shape)}")
    else:
        if not (colors.dim() == 3 and colors.shape[0] == N or colors.dim() == 4 and colors.shape[:2] == (C, N)):
            raise ValueError(f"SH colors must be [N, K, 3] or [C, N, K, 3], got {tuple(colors.shape)}")
        if colors.shape[-1] != 3 or (sh_degree + 1) ** 2 > colors.shape[-2]:
            raise ValueError(f"sh_degree={sh_degree} needs [..., >= {(sh_degree + 1) ** 2}, 3] SH colors")


def torch_rasterization(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4] wxyz, need not be normalised
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [(C,) N, D] or [(C,) N, K, 3] SH coefficients
    viewmats: Tensor,  # [C, 4, 4] world-to-camera
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: Optional[int] = None,
    packed: bool = True,
    tile_size: int = 16,
    backgrounds: Optional[Tensor] = None,  # [C, D]
    render_mode: RenderMode = "RGB",
    sparse_grad: bool = False,
    absgrad: bool = False,
    rasterize_mode: Literal["classic", "antialiased"] = "classic",
    channel_chunk: int = 32,
    distributed: bool = False,
    camera_model: Literal["pinhole", "ortho", "fisheye"] = "pinhole",
    covars: Optional[Tensor] = None,  # [N, 3, 3]
    *,
    chunk_elements: int = 1 << 19,
) -> Tuple[Tensor, Tensor, Dict]:
    """Pure-PyTorch `gsplat.rasterization` (1.4.0 semantics) on any device; returns (render, alpha, info).

    ``channel_chunk`` is accepted for signature compatibility (all channels are composited together).
    ``chunk_elements`` bounds the pixel x Gaussian pairs held at once (about 15 float tensors of that size).
    """
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics

    if distributed:
        raise ValueError("distributed=True needs gsplat's CUDA backend; the PyTorch rasterizer renders one process")
    if packed and sparse_grad:
        raise ValueError("sparse_grad=True needs gsplat's CUDA backend; use sparse_grad=False with torch tensors")
    if rasterize_mode not in ("classic", "antialiased"):
        raise ValueError(f"rasterize_mode must be 'classic' or 'antialiased', got {rasterize_mode!r}")
    _check_args(means, quats, scales, opacities, colors, viewmats, Ks, sh_degree, render_mode, covars)
    N, C = means.shape[0], viewmats.shape[0]
    device = means.device

    if covars is None:
        covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    radii, means2d, depths, conics, compensations = _fully_fused_projection(
        means, covars, viewmats, Ks, width, height, eps2d=eps2d, near_plane=near_plane, far_plane=far_plane,
        calc_compensations=rasterize_mode == "antialiased", camera_model=camera_model,
    )  # [C, N], [C, N, 2], [C, N], [C, N, 3], [C, N] | None
    if radius_clip > 0:  # gsplat culls before the image-bounds test, which only zeroes more
        radii = torch.where(radii.float() <= radius_clip, torch.zeros_like(radii), radii)
    radii = radii.int()
    opac = opacities[None].expand(C, N)
    if compensations is not None:
        opac = opac * compensations

    if sh_degree is None:
        rgb = colors if colors.dim() == 3 else colors[None].expand(C, -1, -1)  # [C, N, D]
    else:
        campos = torch.linalg.inv(viewmats)[:, :3, 3]  # [C, 3]
        shs = colors if colors.dim() == 4 else colors[None].expand(C, -1, -1, -1)  # [C, N, K, 3]
        dirs = means[None] - campos[:, None]  # [C, N, 3]
        rgb = torch.clamp_min(_spherical_harmonics(sh_degree, dirs, shs) + 0.5, 0.0)  # [C, N, 3]
    bg = backgrounds
    if render_mode in ("RGB+D", "RGB+ED"):
        rgb = torch.cat([rgb, depths[..., None]], dim=-1)
        bg = None if bg is None else torch.cat([bg, bg.new_zeros(C, 1)], dim=-1)
    elif render_mode in ("D", "ED"):
        rgb = depths[..., None]
        bg = None if bg is None else bg.new_zeros(C, 1)

    camera_ids = torch.arange(C, device=device)[:, None].expand(C, N)
    if packed:
        camera_ids, gaussian_ids = torch.nonzero(radii > 0, as_tuple=True)
        sel = (camera_ids, gaussian_ids)
        radii_f, means2d_f, depths_f, conics_f = radii[sel], means2d[sel], depths[sel], conics[sel]
        opac_f, rgb_f = opac[sel], rgb[sel]
        info_tensors = (radii_f, means2d_f, depths_f, conics_f, opac_f)
    else:
        gaussian_ids = None
        radii_f, means2d_f, depths_f = radii.reshape(-1), means2d.reshape(-1, 2), depths.reshape(-1)
        conics_f, opac_f, rgb_f = conics.reshape(-1, 3), opac.reshape(-1), rgb.reshape(C * N, -1)
        info_tensors = (radii, means2d, depths, conics, opac)
    camera_ids_f = camera_ids.reshape(-1)

    tile_width, tile_height = math.ceil(width / tile_size), math.ceil(height / tile_size)
    if tile_size % CELL_SIZE:
        raise ValueError(f"tile_size must be a multiple of {CELL_SIZE}, got {tile_size}")
    isect = intersect_cells(means2d_f, conics_f, opac_f, radii_f, depths_f, camera_ids_f, C, width, height,
                            tile_size, CELL_SIZE)

    info_means2d = info_tensors[1]
    absgrad_acc = None
    if absgrad and info_means2d.requires_grad and torch.is_grad_enabled():
        absgrad_acc = torch.zeros(means2d_f.shape, device=device, dtype=means2d_f.dtype)
        # Weak: a hook that held the tensor it is registered on would form a cycle through autograd's C++ side,
        # which Python's gc cannot see, so every training step would leak its means2d (+ grad, absgrad).
        means2d_ref = weakref.ref(info_means2d)

        def _set_absgrad(grad: Tensor) -> None:
            # Runs once the full gradient of means2d is known, i.e. after every per-pixel hook has fired.
            target = means2d_ref()
            if target is not None:
                target.absgrad = absgrad_acc.reshape(grad.shape)

        info_means2d.register_hook(_set_absgrad)

    render, alpha = composite_cells(
        means2d_f, conics_f, opac_f, rgb_f, isect, C, width, height, CELL_SIZE, absgrad_acc, chunk_elements
    )
    if bg is not None:
        render = render + bg[:, None, None, :] * (1.0 - alpha)
    if render_mode in ("ED", "RGB+ED"):
        render = torch.cat([render[..., :-1], render[..., -1:] / alpha.clamp(min=1e-10)], dim=-1)

    info = {
        "camera_ids": camera_ids_f if packed else None,
        "gaussian_ids": gaussian_ids,
        "radii": info_tensors[0],
        "means2d": info_means2d,
        "depths": info_tensors[2],
        "conics": info_tensors[3],
        "opacities": info_tensors[4],
        "tile_width": tile_width,
        "tile_height": tile_height,
        "tiles_per_gauss": isect["tiles_per_gauss"] if packed else isect["tiles_per_gauss"].reshape(C, N),
        "width": width,
        "height": height,
        "tile_size": tile_size,
        "n_cameras": C,
    }
    return render, alpha, info


def rasterization(means: Tensor, *args, **kwargs) -> Tuple[Tensor, Tensor, Dict]:
    """Drop-in for `gsplat.rendering.rasterization`: gsplat's CUDA kernels on CUDA, `torch_rasterization` elsewhere.

    Same positional/keyword arguments as gsplat 1.4.0 (see `torch_rasterization` for the list and shapes).
    """
    if means.is_cuda:
        from gsplat.rendering import rasterization as gsplat_rasterization

        return gsplat_rasterization(means, *args, **kwargs)
    return torch_rasterization(means, *args, **kwargs)
