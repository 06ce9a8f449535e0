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
K_BATCH = 512  # Gaussians per tile per step: small enough that saturated tiles stop early, big enough to vectorise


def intersect_tiles(
    means2d: Tensor,  # [M, 2]
    radii: Tensor,  # [M] int, 0 = culled
    depths: Tensor,  # [M]
    camera_ids: Tensor,  # [M] long
    n_cameras: int,
    tile_size: int,
    tile_width: int,
    tile_height: int,
) -> Dict[str, Tensor]:
    """Lists, per (camera, tile), the Gaussians whose screen-space square touches it, sorted front to back.

    Same tile rectangle as gsplat's ``isect_tiles``: ``[floor((mean-r)/ts), ceil((mean+r)/ts))`` clamped to the grid.
    Returns ``flatten_ids`` [n_isects] (indices into the M entries, ordered by camera, tile, depth),
    ``isect_offsets`` [C, tile_height, tile_width] (start of each tile's run), ``tiles_per_gauss`` [M] and
    ``isect_ids`` [n_isects] (gsplat's int64 key: camera | tile | float32 depth bits).
    """
    device = means2d.device
    with torch.no_grad():
        m = means2d.detach().float()
        r = radii.float()
        tx, ty, tr = m[:, 0] / tile_size, m[:, 1] / tile_size, r / tile_size
        x0 = torch.floor(tx - tr).clamp(0, tile_width).long()
        x1 = torch.ceil(tx + tr).clamp(0, tile_width).long()
        y0 = torch.floor(ty - tr).clamp(0, tile_height).long()
        y1 = torch.ceil(ty + tr).clamp(0, tile_height).long()
        tiles_per_gauss = torch.where(radii > 0, (x1 - x0) * (y1 - y0), torch.zeros_like(x0))

        # Front-to-back order inside each camera; stable sorts keep index order for equal depths like a radix sort.
        order = torch.argsort(depths.detach(), stable=True)
        order = order[torch.argsort(camera_ids[order], stable=True)]
        order = order[tiles_per_gauss[order] > 0]
        counts = tiles_per_gauss[order]
        n_isects = int(counts.sum())
        owner = torch.repeat_interleave(order, counts)  # [n_isects] entry index of each intersection
        starts = torch.cumsum(counts, 0) - counts
        local = torch.arange(n_isects, device=device) - torch.repeat_interleave(starts, counts)
        span = (x1 - x0)[owner]
        tile_x = x0[owner] + local % span.clamp_min(1)
        tile_y = y0[owner] + local // span.clamp_min(1)
        n_tiles = tile_width * tile_height
        tile_key = camera_ids[owner] * n_tiles + tile_y * tile_width + tile_x
        by_tile = torch.argsort(tile_key, stable=True)
        flatten_ids = owner[by_tile]
        tile_key = tile_key[by_tile]
        isect_offsets = torch.searchsorted(tile_key, torch.arange(n_cameras * n_tiles, device=device))
        depth_bits = depths.detach().float()[flatten_ids].view(torch.int32).long() & 0xFFFFFFFF
        isect_ids = (tile_key << 32) | depth_bits
    return {
        "flatten_ids": flatten_ids,
        "isect_offsets": isect_offsets.reshape(n_cameras, tile_height, tile_width),
        "tiles_per_gauss": tiles_per_gauss,
        "isect_ids": isect_ids,
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


def composite_tiles(
    means2d: Tensor,  # [M, 2]
    conics: Tensor,  # [M, 3]
    opacities: Tensor,  # [M]
    colors: Tensor,  # [M, D]
    isect: Dict[str, Tensor],
    n_cameras: int,
    width: int,
    height: int,
    tile_size: int,
    absgrad_acc: Optional[Tensor] = None,
    chunk_elements: int = 1 << 21,
) -> Tuple[Tensor, Tensor]:
    """Renders [C, H, W, D] colors and [C, H, W, 1] alphas (no background) from `intersect_tiles` output.

    Memory stays bounded: tiles are grouped so a group holds at most ``chunk_elements`` pixel x Gaussian pairs,
    long tile lists are walked in batches (stopping once every pixel is saturated), and with autograd on each
    batch is checkpointed, so backward keeps only per-batch inputs and recomputes the rest.
    """
    device, dtype = means2d.device, means2d.dtype
    D = colors.shape[-1]
    P = tile_size * tile_size
    offsets = isect["isect_offsets"].reshape(-1)
    flatten_ids = isect["flatten_ids"]
    ends = torch.cat([offsets[1:], offsets.new_tensor([flatten_ids.numel()])])
    counts = ends - offsets  # [C * n_tiles]
    tile_width = math.ceil(width / tile_size)
    n_tiles = tile_width * math.ceil(height / tile_size)

    occupied = torch.nonzero(counts > 0).squeeze(1)
    occupied = occupied[torch.argsort(counts[occupied], descending=True, stable=True)]
    occ_counts = counts[occupied].tolist()
    local = torch.arange(P, device=device)
    use_ckpt = torch.is_grad_enabled() and any(t.requires_grad for t in (means2d, conics, opacities, colors))

    out_idx: List[Tensor] = []
    out_color: List[Tensor] = []
    out_alpha: List[Tensor] = []
    i = 0
    while i < len(occupied):
        k_max = occ_counts[i]  # tiles are sorted by count, so the first of a group is its longest
        k_batch = max(1, min(k_max, K_BATCH, chunk_elements // P))
        n_group = max(1, chunk_elements // (P * k_batch))
        tiles = occupied[i : i + n_group]
        B = tiles.numel()
        i += B
        cam, tile = tiles // n_tiles, tiles % n_tiles
        px = (tile % tile_width)[:, None] * tile_size + local % tile_size  # [B, P]
        py = (tile // tile_width)[:, None] * tile_size + local // tile_size
        pix = torch.stack([px, py], dim=-1).to(dtype) + 0.5  # [B, P, 2]
        trans = torch.ones(B, P, device=device, dtype=dtype)
        color = torch.zeros(B, P, D, device=device, dtype=dtype)
        alpha = torch.zeros(B, P, device=device, dtype=dtype)
        for k0 in range(0, k_max, k_batch):
            pos = offsets[tiles][:, None] + k0 + torch.arange(k_batch, device=device)  # [B, K]
            valid = pos < ends[tiles][:, None]
            # Pad with the tile's first Gaussian (masked out) so no culled entry's values enter the graph.
            gids = flatten_ids[torch.where(valid, pos, offsets[tiles][:, None])]
            args = (means2d, conics, opacities, colors, gids, valid, pix, trans)
            # absgrad_acc is bound, not passed: checkpoint would otherwise version-check it after hooks write it.
            batch_fn = functools.partial(_composite_batch, absgrad_acc=absgrad_acc)
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
