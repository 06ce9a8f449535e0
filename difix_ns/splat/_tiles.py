"""Tile intersection and front-to-back compositing in plain PyTorch (the CPU half of `torch_rasterization`).

The Gaussians arrive "flat": M entries (M = C*N for unpacked input, nnz for packed), each with its camera id.
Everything here mirrors what gsplat 1.4.0's CUDA kernels decide (which tiles a Gaussian touches, the 0.999 alpha
clamp, the 1/255 skip, the exclusive 1e-4 transmittance cut-off) so renders agree pixel for pixel; gradients come
from autograd instead of a hand-written backward.
"""
from __future__ import annotations

import functools
import math
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

ALPHA_MAX = 0.999  # gsplat 1.4.0 rasterize_to_pixels_fwd.cu clamps alpha here
ALPHA_MIN = 1.0 / 255.0  # contributions below this are skipped
T_MIN = 1e-4  # a pixel stops at the Gaussian that would push transmittance to <= T_MIN (exclusive)
SIGMA_MAX = 30.0  # exp(-30) ~ 1e-13: below ALPHA_MIN for any opacity < 1e10, yet far from float32 denormals
CELL_SIZE = 4  # pixels per cell side; cells subdivide gsplat's tiles so small splats touch few pixels
K_BATCH = 256  # Gaussians per cell per step: small enough that saturated tiles stop early, big enough to vectorise


def _cell_range(center: Tensor, half: Tensor, size: int, cell_size: int, lo: Tensor, hi: Tensor):
    """Cells [c0, c1) holding pixels j with |j + 0.5 - center| <= half, clipped to the tile range [lo, hi)."""
    first = torch.ceil(center - half - 0.5).clamp(-1, size).long().div(cell_size, rounding_mode="floor")
    last = torch.floor(center + half - 0.5).clamp(-1, size).long().div(cell_size, rounding_mode="floor")
    return torch.maximum(first, lo), torch.minimum(last + 1, hi)


def intersect_cells(
    means2d: Tensor,  # [M, 2]
    conics: Tensor,  # [M, 3]
    opacities: Tensor,  # [M]
    radii: Tensor,  # [M] int, 0 = culled
    depths: Tensor,  # [M]
    camera_ids: Tensor,  # [M] long
    n_cameras: int,
    width: int,
    height: int,
    tile_size: int,
    cell_size: int,
) -> Dict[str, Tensor]:
    """Lists, per (camera, cell of cell_size^2 pixels), the Gaussians that can reach it, sorted front to back.

    A Gaussian reaches a pixel in gsplat only if (1) the pixel's 16x16 tile lies in the Gaussian's tile rectangle
    ``[floor((mean-r)/ts), ceil((mean+r)/ts))`` (``isect_tiles``) and (2) its alpha there is >= 1/255. Cells are
    sub-squares of tiles, so (1) carries over exactly; (2) is used as a conservative cull: alpha >= 1/255 needs
    sigma <= ln(255 * opacity), an ellipse whose bounding box is ``sqrt(2 ln(255 o) * cov2d_xx)`` wide (slightly
    padded). Dropped pairs are exactly those gsplat skips, so renders and gradients are unchanged; small Gaussians
    just stop costing a whole tile. Returns ``flatten_ids`` (entry ids ordered by camera, cell, depth),
    ``cell_offsets`` [C * cells] run starts, ``tiles_per_gauss`` [M] (gsplat's count) and the cell grid size.
    """
    device = means2d.device
    tile_width, tile_height = math.ceil(width / tile_size), math.ceil(height / tile_size)
    per_tile = tile_size // cell_size
    cells_w, cells_h = tile_width * per_tile, tile_height * per_tile
    with torch.no_grad():
        m = means2d.detach().float()
        tr = radii.float() / tile_size
        tx, ty = m[:, 0] / tile_size, m[:, 1] / tile_size
        x0 = torch.floor(tx - tr).clamp(0, tile_width).long()
        x1 = torch.ceil(tx + tr).clamp(0, tile_width).long()
        y0 = torch.floor(ty - tr).clamp(0, tile_height).long()
        y1 = torch.ceil(ty + tr).clamp(0, tile_height).long()
        tiles_per_gauss = torch.where(radii > 0, (x1 - x0) * (y1 - y0), torch.zeros_like(x0))

        con = conics.detach().double()
        det = (con[:, 0] * con[:, 2] - con[:, 1] ** 2).clamp_min(1e-30)
        level = torch.log(255.0 * opacities.detach().double().clamp_min(1e-30)) * 1.001 + 1e-4
        reach = level > 0  # opacity below 1/255 never reaches ALPHA_MIN
        hx = torch.sqrt(2.0 * level.clamp_min(0) * con[:, 2] / det) + 1e-3  # ellipse bbox half-extents, pixels
        hy = torch.sqrt(2.0 * level.clamp_min(0) * con[:, 0] / det) + 1e-3
        md = means2d.detach().double()
        cx0, cx1 = _cell_range(md[:, 0], hx, width, cell_size, x0 * per_tile, x1 * per_tile)
        cy0, cy1 = _cell_range(md[:, 1], hy, height, cell_size, y0 * per_tile, y1 * per_tile)
        span_x, span_y = (cx1 - cx0).clamp_min(0), (cy1 - cy0).clamp_min(0)
        cells = torch.where((radii > 0) & reach, span_x * span_y, torch.zeros_like(span_x))

        # Front-to-back order inside each camera; stable sorts keep index order for equal depths like a radix sort.
        order = torch.argsort(depths.detach(), stable=True)
        order = order[torch.argsort(camera_ids[order], stable=True)]
        order = order[cells[order] > 0]
        counts = cells[order]
        n_isects = int(counts.sum())
        owner = torch.repeat_interleave(order, counts)  # [n_isects] entry index of each intersection
        starts = torch.cumsum(counts, 0) - counts
        local = torch.arange(n_isects, device=device) - torch.repeat_interleave(starts, counts)
        span = span_x[owner]
        cell_x = cx0[owner] + local % span
        cell_y = cy0[owner] + local // span
        n_cells = cells_w * cells_h
        key = camera_ids[owner] * n_cells + cell_y * cells_w + cell_x
        by_cell = torch.argsort(key, stable=True)
        cell_offsets = torch.searchsorted(key[by_cell], torch.arange(n_cameras * n_cells + 1, device=device))
    return {
        "flatten_ids": owner[by_cell],
        "cell_offsets": cell_offsets,  # [C * n_cells + 1]
        "tiles_per_gauss": tiles_per_gauss,
        "cells_w": torch.tensor(cells_w),
        "cells_h": torch.tensor(cells_h),
    }


def _composite_batch(
    means2d: Tensor,  # [M, 2]
    conics: Tensor,  # [M, 3]
    opacities: Tensor,  # [M]
    colors: Tensor,  # [M, D]
    gids: Tensor,  # [B, K] entry ids, front to back; padding repeats a real id
    valid: Tensor,  # [B, K] bool, False on padding
    pix: Tensor,  # [B, P, 2] pixel centres
    trans: Tensor,  # [B, P] transmittance before this batch
    absgrad_acc: Optional[Tensor],  # [M, 2] or None
) -> Tuple[Tensor, Tensor, Tensor]:
    """Composites K depth-sorted Gaussians over B tiles of P pixels; returns (color [B,P,D], weight sum, trans)."""
    mu = means2d[gids]  # [B, K, 2]
    dx = mu[:, None, :, 0] - pix[:, :, None, 0]  # [B, P, K]
    dy = mu[:, None, :, 1] - pix[:, :, None, 1]
    if absgrad_acc is not None and dx.requires_grad:
        # gsplat's absgrad sums |d loss / d mean2d| per pixel; d/d(dx) is exactly that, before the pixel sum.
        flat_ids = gids.reshape(-1)

        def _accumulate_abs(axis: int):
            def hook(grad: Tensor) -> None:
                absgrad_acc[:, axis].index_add_(0, flat_ids, grad.abs().sum(1).reshape(-1))

            return hook

        dx.register_hook(_accumulate_abs(0))
        dy.register_hook(_accumulate_abs(1))
    con = conics[gids][:, None]  # [B, 1, K, 3] upper triangle of the inverse 2D covariance
    sigma = dx * (0.5 * con[..., 0] * dx + con[..., 1] * dy) + 0.5 * con[..., 2] * dy * dy  # [B, P, K]
    # Far-off pairs are skipped below anyway (alpha < 1/255); capping sigma keeps exp() out of the slow
    # denormal range on CPU without changing any kept value or gradient.
    alpha = (opacities[gids][:, None] * torch.exp(-sigma.clamp_max(SIGMA_MAX))).clamp_max(ALPHA_MAX)
    keep = valid[:, None] & (sigma >= 0) & (alpha >= ALPHA_MIN)
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    t_after = trans[..., None] * torch.cumprod(1.0 - alpha, dim=-1)  # [B, P, K]
    t_before = torch.cat([trans[..., None], t_after[..., :-1]], dim=-1)
    # Exclusive stop: the Gaussian that takes T to <= T_MIN and everything behind it do not contribute.
    weights = torch.where(t_after > T_MIN, alpha * t_before, torch.zeros_like(alpha))
    color = torch.einsum("bpk,bkd->bpd", weights, colors[gids])
    return color, weights.sum(-1), t_after[..., -1]


def composite_cells(
    means2d: Tensor,  # [M, 2]
    conics: Tensor,  # [M, 3]
    opacities: Tensor,  # [M]
    colors: Tensor,  # [M, D]
    isect: Dict[str, Tensor],
    n_cameras: int,
    width: int,
    height: int,
    cell_size: int,
    absgrad_acc: Optional[Tensor] = None,
    chunk_elements: int = 1 << 19,
) -> Tuple[Tensor, Tensor]:
    """Renders [C, H, W, D] colors and [C, H, W, 1] alphas (no background) from `intersect_cells` output.

    Memory stays bounded: cells are grouped so a group holds at most ``chunk_elements`` pixel x Gaussian pairs,
    long cell lists are walked in batches of ``K_BATCH`` (stopping once every pixel of the group is saturated),
    and with autograd on each batch is checkpointed, so backward keeps only per-batch inputs and recomputes the rest.
    """
    device, dtype = means2d.device, means2d.dtype
    D = colors.shape[-1]
    P = cell_size * cell_size
    offsets = isect["cell_offsets"]
    flatten_ids = isect["flatten_ids"]
    starts_all, counts = offsets[:-1], offsets[1:] - offsets[:-1]  # [C * n_cells]
    cells_w = int(isect["cells_w"])
    n_cells = cells_w * int(isect["cells_h"])

    occupied = torch.nonzero(counts > 0).squeeze(1)
    occupied = occupied[torch.argsort(counts[occupied], descending=True, stable=True)]
    occ_counts = counts[occupied].tolist()
    local = torch.arange(P, device=device)
    use_ckpt = torch.is_grad_enabled() and any(t.requires_grad for t in (means2d, conics, opacities, colors))
    # absgrad_acc is bound, not passed: checkpoint would otherwise version-check it after the hooks write it.
    batch_fn = functools.partial(_composite_batch, absgrad_acc=absgrad_acc)

    out_idx: List[Tensor] = []
    out_color: List[Tensor] = []
    out_alpha: List[Tensor] = []
    i = 0
    while i < len(occupied):
        k_max = occ_counts[i]  # cells are sorted by count, so the first of a group is its longest
        k_batch = max(1, min(k_max, K_BATCH, chunk_elements // P))
        group = occupied[i : i + max(1, chunk_elements // (P * k_batch))]
        B = group.numel()
        i += B
        cam, cell = group // n_cells, group % n_cells
        px = (cell % cells_w)[:, None] * cell_size + local % cell_size  # [B, P]
        py = (cell // cells_w)[:, None] * cell_size + local // cell_size
        pix = torch.stack([px, py], dim=-1).to(dtype) + 0.5  # [B, P, 2] pixel centres
        start, end = starts_all[group][:, None], (starts_all[group] + counts[group])[:, None]
        trans = torch.ones(B, P, device=device, dtype=dtype)
        color = torch.zeros(B, P, D, device=device, dtype=dtype)
        alpha = torch.zeros(B, P, device=device, dtype=dtype)
        for k0 in range(0, k_max, k_batch):
            pos = start + k0 + torch.arange(k_batch, device=device)  # [B, K]
            valid = pos < end
            # Pad with the cell's first Gaussian (masked out) so no culled entry's values enter the graph.
            gids = flatten_ids[torch.where(valid, pos, start)]
            args = (means2d, conics, opacities, colors, gids, valid, pix, trans)
            if use_ckpt:
                c, a, trans = checkpoint(batch_fn, *args, use_reentrant=False)
            else:
                c, a, trans = batch_fn(*args)
            color, alpha = color + c, alpha + a
            if k0 + k_batch < k_max and bool((trans <= T_MIN).all()):
                break
        inside = (px < width) & (py < height)
        out_idx.append(((cam[:, None] * height + py) * width + px)[inside])
        out_color.append(color[inside])
        out_alpha.append(alpha[inside])

    n_pix = n_cameras * height * width
    render = torch.zeros(n_pix, D, device=device, dtype=dtype)
    alphas = torch.zeros(n_pix, device=device, dtype=dtype)
    if out_idx:
        idx = torch.cat(out_idx)
        render = render.index_copy(0, idx, torch.cat(out_color))
        alphas = alphas.index_copy(0, idx, torch.cat(out_alpha))
    return render.reshape(n_cameras, height, width, D), alphas.reshape(n_cameras, height, width, 1)
