"""GroupNorm computed from per-channel statistics: the formulation the fast path's compiled graphs use.

The compiled Difix step spent about half its time in GroupNorm (+SiLU) kernels (NVIDIA H100, 576x1024, batch 8:
18.4 of 38.8 ms a frame, ``docs/gpu_results/profile_difix_h100.json``), 15.3 ms of them in the VAE decoder. Inductor
reduces each (sample, group) of a channels_last tensor in one program: 8 x 32 programs, each over up to
4 x 576 x 1024 values strided across memory, far below the GPU's bandwidth. Reducing per *channel* first gives
N x C reductions over contiguous runs of channels; the group statistics then follow exactly from the channel ones
(law of total variance, equal counts per channel), and the normalisation becomes one per-channel scale and shift
that inductor fuses with the SiLU (and whatever elementwise work follows).

Two formulations of the per-channel statistics:

* :func:`group_norm_from_channel_stats`: ``torch.var_mean``, for which inductor generates the reduction
  (``scripts/bench_groupnorm.py``, NVIDIA H100, batch 8, bf16: 1.78 against 4.20 ms for the stock kernels at
  128x576x1024, about 2.0 TB/s; a hand-written Triton pass for the statistics measured 2.83 ms and was dropped);
* :func:`group_norm_from_channel_sums`: shifted sums, the group statistics and the per-channel scale and shift stored
  by small reductions, so the output pass does one multiply-add per element (NVIDIA H200: 1.19 against 1.74 ms at
  128x576x1024, slower on small inputs); :func:`group_norm_by_size` picks between the two
  (:data:`CHANNEL_SUMS_MIN_ELEMENTS`).

``use_compiled_group_norm(model, kind)`` switches a model's ``nn.GroupNorm`` layers to a :class:`CompiledGroupNorm`
class: eager calls stay ``nn.GroupNorm``'s own (the parity tests and the eager path are untouched); only graphs
traced by ``torch.compile`` use the formulation.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def _batch_and_channels(x: torch.Tensor, groups: int) -> tuple[int, int]:
    """x's N and C, after checking that x is [N, C, *spatial] and that its C channels split into ``groups``."""
    if x.ndim < 3:
        raise ValueError(f"x must be [N, C, *spatial], got shape {tuple(x.shape)}")
    n, c = x.shape[:2]
    if groups < 1 or c % groups:
        raise ValueError(f"{c} channels cannot be split into {groups} groups")
    return n, c


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
    n, c = _batch_and_channels(x, groups)
    var_c, mean_c = torch.var_mean(x.float(), dim=tuple(range(2, x.ndim)), correction=0)  # [N, C] each
    var_c, mean_c = var_c.view(n, groups, -1), mean_c.view(n, groups, -1)
    mean_g = mean_c.mean(-1, keepdim=True)
    var_g = var_c.mean(-1, keepdim=True) + (mean_c - mean_g).pow(2).mean(-1, keepdim=True)
    inv_std = torch.rsqrt(var_g + eps)
    scale = inv_std.expand_as(mean_c).reshape(n, c)
    shift = (-mean_g * inv_std).expand_as(mean_c).reshape(n, c)
    if weight is not None:
        scale, shift = scale * weight.float(), shift * weight.float()
    if bias is not None:
        shift = shift + bias.float()
    view = (n, c) + (1,) * (x.ndim - 2)
    y = x.float() * scale.view(view) + shift.view(view)
    if silu:
        y = F.silu(y)
    return y.to(x.dtype)


def group_norm_from_channel_sums(
    x: torch.Tensor,
    groups: int,
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    eps: float = 1e-6,
    silu: bool = False,
) -> torch.Tensor:
    """``F.group_norm(x, groups, weight, bias, eps)`` (then SiLU when ``silu``) for x [N, C, *spatial], written so
    that inductor makes one light pass over x for the statistics and one for the output.

    :func:`group_norm_from_channel_stats` computes the same function, but inductor turns its ``var_mean`` into a
    Welford reduction (a division per element) and recomputes the group mean from the group's channel means inside
    the loop over every element (up to 8 scattered loads and adds per element, since reductions over 8 values or
    fewer are unrolled). Here:

    1. per-channel sums of x and x² over the spatial dims, x shifted by the channel's first value so that the
       float32 sums keep their precision (cancellation grows with mean² / variance; the shift makes the mean small);
    2. the group statistics, for every channel, as one masked reduction over the C channels ([N, C] outputs, the
       channel means shifted by the group's first one), which inductor stores instead of recomputing;
    3. the per-channel scale and shift, stored by one more (diagonal) reduction, so the output pass loads two
       contiguous [N, C] rows and does one multiply-add (and the SiLU) per element.
    """
    n, c = _batch_and_channels(x, groups)
    spatial = tuple(range(2, x.ndim))
    count = x[0, 0].numel()
    first = x[(slice(None), slice(None)) + (slice(0, 1),) * len(spatial)].float()  # [N, C, 1, ...]
    shifted = x.float() - first
    sum_c, sum_sq_c = shifted.sum(spatial), (shifted * shifted).sum(spatial)  # [N, C]
    mean_c = first.view(n, c) + sum_c / count
    var_c = (sum_sq_c / count - (sum_c / count).pow(2)).clamp_min(0)

    per_group = c // groups
    group = torch.arange(c, device=x.device) // per_group
    same_group = (group[:, None] == group[None, :])[None]  # [1, C, C]: channel c, channel j
    # the group's first channel mean, for every channel: the shift that keeps the group sums' float32 digits
    first_mean = mean_c.view(n, groups, per_group)[:, :, :1].expand(n, groups, per_group).reshape(n, c)
    offset = mean_c[:, None, :] - first_mean[:, :, None]  # [N, C, C]
    sum_offset = torch.where(same_group, offset, 0.0).sum(-1) / per_group  # [N, C]
    sum_spread = torch.where(same_group, var_c[:, None, :] + offset * offset, 0.0).sum(-1) / per_group
    mean_g = first_mean + sum_offset
    var_g = (sum_spread - sum_offset * sum_offset).clamp_min(0)

    scale = torch.rsqrt(var_g + eps)
    if weight is not None:
        scale = scale * weight.float()
    shift = -mean_g * scale
    if bias is not None:
        shift = shift + bias.float()
    diagonal = torch.eye(c, dtype=torch.bool, device=x.device)[None]
    scale_shift = torch.stack([scale, shift], dim=1)  # [N, 2, C]
    scale_shift = torch.where(diagonal[:, None], scale_shift[:, :, None, :], 0.0).sum(-1)  # the same, stored
    view = (n, c) + (1,) * len(spatial)
    y = x.float() * scale_shift[:, 0].view(view) + scale_shift[:, 1].view(view)
    if silu:
        y = F.silu(y)
    return y.to(x.dtype)


CHANNEL_SUMS_MIN_ELEMENTS = 2**25
"""Inputs of at least this many elements (N x C x H x W) take :func:`group_norm_from_channel_sums` under
``compiled_group_norm="auto"``, smaller ones :func:`group_norm_from_channel_stats`. On an NVIDIA H200 (bf16, batch 8,
``docs/gpu_results/bench_groupnorm_h200_session19.json``) the sums were faster from 512x72x128 (37.7 M elements:
0.133 against 0.159 ms) up to 128x576x1024 (1.19 against 1.74 ms) and slower on the UNet's smaller inputs
(320x72x128, 23.6 M: 0.171 against 0.138 ms), where their extra small kernels cost more than they save."""


def group_norm_by_size(
    x: torch.Tensor,
    groups: int,
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    eps: float = 1e-6,
    silu: bool = False,
) -> torch.Tensor:
    """:func:`group_norm_from_channel_sums` for inputs of at least :data:`CHANNEL_SUMS_MIN_ELEMENTS` elements,
    :func:`group_norm_from_channel_stats` for smaller ones (the same function either way)."""
    large = x.numel() >= CHANNEL_SUMS_MIN_ELEMENTS
    formulation = group_norm_from_channel_sums if large else group_norm_from_channel_stats
    return formulation(x, groups, weight, bias, eps, silu)


class CompiledGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` (same parameters and state dict) whose ``torch.compile``'d graphs compute it from per-channel
    statistics (:func:`group_norm_from_channel_stats`); eager calls are ``nn.GroupNorm.forward`` itself."""

    formulation = staticmethod(group_norm_from_channel_stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            return super().forward(x)
        return self.formulation(x, self.num_groups, self.weight, self.bias, self.eps)


class ChannelSumsGroupNorm(CompiledGroupNorm):
    """:class:`CompiledGroupNorm` whose compiled graphs use :func:`group_norm_from_channel_sums`."""

    formulation = staticmethod(group_norm_from_channel_sums)


class GroupNormBySize(CompiledGroupNorm):
    """:class:`CompiledGroupNorm` whose compiled graphs pick the formulation by input size
    (:func:`group_norm_by_size`)."""

    formulation = staticmethod(group_norm_by_size)


GROUP_NORM_CLASSES = {"auto": GroupNormBySize, "channel_stats": CompiledGroupNorm, "channel_sums": ChannelSumsGroupNorm,
                      "stock": nn.GroupNorm}
GROUP_NORM_KINDS = tuple(GROUP_NORM_CLASSES)


def use_compiled_group_norm(model: nn.Module, kind: str) -> int:
    """Make every ``nn.GroupNorm`` of ``model`` compile as ``kind``: "auto" (by input size), "channel_stats"
    (per-channel ``var_mean``), "channel_sums" (per-channel shifted sums, stored group statistics) or "stock"
    (inductor's own GroupNorm).
    Switches the layers' class in place (parameters, state dict and eager results unchanged); returns how many
    layers it set."""
    if kind not in GROUP_NORM_CLASSES:
        raise ValueError(f"group norm kind must be one of {', '.join(GROUP_NORM_KINDS)}; got {kind!r}")
    count = 0
    for module in model.modules():
        if type(module) not in GROUP_NORM_CLASSES.values():
            continue
        module.__class__ = GROUP_NORM_CLASSES[kind]
        count += 1
    return count
