"""Quantisation in the fine-tune loop: torch mirrors of the codec's uniform grids, with straight-through gradients.

The fine-tune renders the Gaussians *as the codec will store them* (positions on the bounding-box grid, log-scales
and SH DC colour on percentile-clipped grids, opacity on the sigmoid grid, quaternions on a per-component grid)
and applies the gradient at that point to the unquantised values (straight-through estimator), so the survivors
learn values that survive quantisation. The grids follow `CodecConfig` bits; the final encode quantizes for real.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import Tensor

from nifi_ns.io.gaussians import logits_from_sh_dc, sh_dc_from_logits


def _grid(x: Tensor, lo: Tensor, hi: Tensor, bits: int) -> Tensor:
    levels = float((1 << bits) - 1)
    step = ((hi - lo) / levels).clamp(min=1e-12)
    return lo + torch.round(((x - lo) / step).clamp(0, levels)) * step


def _percentile_range(x: Tensor, clip_percentile: float, max_rows: int = 200_000):
    rows = x if x.shape[0] <= max_rows else x[torch.randperm(x.shape[0], device=x.device)[:max_rows]]
    if clip_percentile <= 0:
        return rows.min(0).values, rows.max(0).values
    q = torch.tensor([clip_percentile / 100, 1 - clip_percentile / 100], device=x.device, dtype=x.dtype)
    lo, hi = torch.quantile(rows, q, dim=0)
    return lo, torch.maximum(hi, lo)


@torch.no_grad()
def fake_quantize(params: Dict[str, Tensor], cfg) -> Dict[str, Tensor]:
    """Quantized copies of splatfacto-shaped tensors at `cfg` (a `nifi_ns.codec.CodecConfig`)'s grids."""
    out = {k: v.detach().clone() for k, v in params.items()}
    means = params["means"]
    if getattr(cfg, "position_contraction", False):  # the codec's log-radial warp (nifi_ns.codec.positions)
        centre = means.median(dim=0).values
        v = means - centre
        r = v.norm(dim=1, keepdim=True)
        scale = r.median().clamp(min=1e-6)
        warped = v * torch.where(r > 0, scale * torch.log1p(r / scale) / r.clamp(min=1e-30), torch.ones_like(r))
        grid = _grid(warped, warped.min(0).values, warped.max(0).values, cfg.position_bits)
        rw = grid.norm(dim=1, keepdim=True)
        out["means"] = centre + grid * torch.where(rw > 0, scale * torch.expm1(rw / scale) / rw.clamp(min=1e-30),
                                                   torch.ones_like(rw))
    else:
        out["means"] = _grid(means, means.min(0).values, means.max(0).values, cfg.position_bits)
    if cfg.cov_codebook_size == 0:
        lo, hi = _percentile_range(params["scales"], cfg.clip_percentile)
        out["scales"] = _grid(params["scales"], lo, hi, cfg.scale_bits)
        q = params["quats"] / params["quats"].norm(dim=1, keepdim=True).clamp(min=1e-12)
        out["quats"] = _grid(q, q.new_full((4,), -1.0), q.new_full((4,), 1.0), cfg.rotation_bits + 1)
    if cfg.color_codebook_size == 0:
        # the codec quantizes SH DC; a degree-0 splatfacto model holds colour logits (gaussian_swap.splat_to_params)
        logits = params["features_rest"].shape[1] == 0
        dc = sh_dc_from_logits(params["features_dc"]) if logits else params["features_dc"]
        lo, hi = _percentile_range(dc, cfg.clip_percentile)
        dc = _grid(dc, lo, hi, cfg.color_bits)
        out["features_dc"] = logits_from_sh_dc(dc) if logits else dc
    levels = 1 << cfg.opacity_bits
    alpha = torch.sigmoid(params["opacities"])
    centre = (torch.floor(alpha * levels).clamp(0, levels - 1) + 0.5) / levels
    out["opacities"] = torch.log(centre / (1 - centre))
    return out
