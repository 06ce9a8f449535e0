"""GroupNorm computed from per-channel statistics: a formulation for the fast path's decoder, not used by it yet.

The compiled Difix step spends about half its time in the VAE decoder's GroupNorm (+SiLU) kernels (NVIDIA H100,
576x1024, batch 8: 18.4 of 38.8 ms a frame, ``docs/gpu_results/profile_difix_h100.json``). Inductor reduces each
(sample, group) in one program: 8 x 32 programs, each over up to 4 x 576 x 1024 values, far below the GPU's memory
bandwidth. Reducing per *channel* first gives 8 x 128 independent reductions; the group statistics then follow
exactly from the channel ones (law of total variance, equal counts per channel), and the normalisation becomes one
per-channel scale and shift that fuses with the SiLU.

``scripts/bench_groupnorm.py`` measures this against ``torch.nn.functional.group_norm`` (eager and compiled) at the
decoder's shapes; whether the fast path adopts it depends on that measurement.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def group_norm_from_channel_stats(
    x: torch.Tensor,
    groups: int,
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    eps: float = 1e-6,
    silu: bool = False,
) -> torch.Tensor:
    """``F.group_norm(x, groups, weight, bias, eps)`` (then SiLU when ``silu``) for x [N, C, *spatial].

    Statistics are accumulated in float32 whatever the input dtype, as ``F.group_norm`` does on CUDA; the output
    has x's dtype and memory format.
    """
    if x.ndim < 3:
        raise ValueError(f"x must be [N, C, *spatial], got shape {tuple(x.shape)}")
    n, c = x.shape[:2]
    if groups < 1 or c % groups:
        raise ValueError(f"{c} channels cannot be split into {groups} groups")
    dims = tuple(range(2, x.ndim))
    var_c, mean_c = torch.var_mean(x.float(), dim=dims, correction=0)  # [N, C] each
    var_c, mean_c = var_c.view(n, groups, -1), mean_c.view(n, groups, -1)
    mean_g = mean_c.mean(-1, keepdim=True)
    var_g = var_c.mean(-1, keepdim=True) + (mean_c - mean_g).pow(2).mean(-1, keepdim=True)
    scale = torch.rsqrt(var_g + eps).expand_as(mean_c).reshape(n, c)
    shift = (-mean_g * torch.rsqrt(var_g + eps)).expand_as(mean_c).reshape(n, c)
    if weight is not None:
        scale, shift = scale * weight.float(), shift * weight.float()
    if bias is not None:
        shift = shift + bias.float()
    view = (n, c) + (1,) * len(dims)
    y = x.float() * scale.view(view) + shift.view(view)
    if silu:
        y = F.silu(y)
    return y.to(x.dtype)
