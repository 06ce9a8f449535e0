"""Nearest 2x upsampling followed by a 3x3 convolution, computed as one stride-2 transposed convolution: the
formulation the fast path's compiled graphs use.

The SD VAE decoder ends each of its first three up blocks with ``Upsample2D``: ``F.interpolate(x, scale_factor=2,
mode="nearest")`` then a 3x3 convolution (padding 1). At 576x1024 the last of them convolves 256 channels at full
resolution, about 0.7 TFLOP a frame, and so does the one before it at half resolution with 512 channels; the
upsampled tensor (four times the input) is also written and read once more.

Every output pixel ``(2i + a, 2j + b)`` of that pair sees only a 2x2 window of the *input*: along each axis, phase 0
reads input offsets (-1, 0) with kernel taps (w0, w1 + w2) and phase 1 reads offsets (0, +1) with taps
(w0 + w1, w2). That is exactly a transposed convolution with stride 2, padding 1 and the 4-tap kernel
(w2, w1 + w2, w0 + w1, w0) along each axis: 4 taps instead of 9 per output (16/36 of the multiply-adds), no
upsampled input, and cuDNN writes the interleaved output itself.

A first version computed the four phases as one 2x2 convolution at the input's resolution and interleaved them
with index arithmetic. Alone it was faster (NVIDIA H100, batch 8, 256x288x512: 8.2 against 10.2 ms), but in the
compiled decoder inductor folded the interleave into the GroupNorm statistics that read it, which then cost as much
as the convolutions saved (``docs/gpu_results/profile_difix_h100_upsample_interleave.json``); the transposed
convolution leaves no interleave to fold.

The combined taps are summed in float32 and rounded once to the weights' dtype (bf16 on the fast path: a relative
rounding of at most 2^-9 on the summed taps, the size of the bf16 path's other roundings);
``scripts/bench_upsample_conv.py`` measures the error and the time against the stock pair.

``use_phase_upsample(model, kind)`` switches a model's ``Upsample2D`` layers to :class:`CompiledUpsample2D`: eager
calls stay ``Upsample2D``'s own (the parity tests and the eager path are untouched); only graphs traced by
``torch.compile`` use the formulation, and only where it is exact (2x nearest, a 3x3 convolution with stride 1 and
padding 1 -- plain, or a PEFT LoRA wrapper with its adapter merged, as the fast path's VAE decoder has it -- no norm,
no transposed convolution); other calls run the stock pair.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from diffusers.models.upsampling import Upsample2D
from torch import nn

UPSAMPLE_KINDS = ("phases", "stock")


def _four_taps(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """Along ``dim`` (3 taps w0, w1, w2): the transposed convolution's 4 taps (w2, w1 + w2, w0 + w1, w0)."""
    w0, w1, w2 = weight.unbind(dim)
    return torch.stack((w2, w1 + w2, w0 + w1, w0), dim)


def transposed_kernel(weight: torch.Tensor) -> torch.Tensor:
    """The stride-2 transposed-convolution kernel [I, O, 4, 4] equal to 2x nearest upsampling then the 3x3 ``weight``
    [O, I, 3, 3] (padding 1); taps summed in (at least) float32, returned in weight's dtype.

    Written as elementwise sums, not as a product with a 0/1 matrix: the compiled graphs recompute the kernel from
    the weights at every call, and an einsum there became float32 matrix products of shape [4, 3] x [3, O*I*3] (12 a
    step, run as 36 cuBLAS matrix-vector kernels: ~1.1 ms a step on an NVIDIA H100 whatever the batch, ~1.5 ms with
    their permutes and casts); the sums fuse into one pointwise kernel."""
    if weight.ndim != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"weight must be [O, I, 3, 3], got shape {tuple(weight.shape)}")
    wide = weight.to(torch.promote_types(weight.dtype, torch.float32))
    return _four_taps(_four_taps(wide, 2), 3).transpose(0, 1).to(weight.dtype)


def upsample_conv_by_phases(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)`` for x [N, I, H, W] and
    a 3x3 weight [O, I, 3, 3], computed as one transposed convolution (see the module docstring): [N, O, 2H, 2W]."""
    if x.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W], got shape {tuple(x.shape)}")
    if weight.ndim == 4 and weight.shape[1] != x.shape[1]:
        raise ValueError(f"weight takes {weight.shape[1]} channels, x has {x.shape[1]}")
    return F.conv_transpose2d(x, transposed_kernel(weight), bias, stride=2, padding=1)


def plain_conv(conv: nn.Module) -> Optional[nn.Conv2d]:
    """The ``nn.Conv2d`` that ``conv`` computes: itself, or the base layer of a PEFT LoRA wrapper whose adapters are
    all merged into it (or disabled); None when an unmerged adapter adds to it."""
    if type(conv) is nn.Conv2d:
        return conv
    base = getattr(conv, "base_layer", None)
    if type(base) is not nn.Conv2d:
        return None
    adapters_off = getattr(conv, "disable_adapters", False)
    active = set(getattr(conv, "active_adapters", ()))
    return base if adapters_off or active <= set(getattr(conv, "merged_adapters", ())) else None


def phases_apply(module: nn.Module) -> bool:
    """Whether ``module`` (an ``Upsample2D``) is, right now, the exact pattern the phase formulation computes."""
    conv = plain_conv(getattr(module, "conv", None))
    return (
        conv is not None and getattr(module, "use_conv", False) and getattr(module, "interpolate", False)
        and not getattr(module, "use_conv_transpose", True) and getattr(module, "norm", None) is None
        and getattr(module, "name", None) == "conv"
        and tuple(conv.kernel_size) == (3, 3) and tuple(conv.stride) == (1, 1) and tuple(conv.padding) == (1, 1)
        and tuple(conv.dilation) == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
    )


class CompiledUpsample2D(Upsample2D):
    """``Upsample2D`` (same parameters and state dict) whose ``torch.compile``'d graphs compute the 2x nearest
    upsampling and 3x3 convolution as one stride-2 transposed convolution; eager calls are
    ``Upsample2D.forward`` itself."""

    def forward(self, hidden_states: torch.Tensor, output_size=None, *args, **kwargs) -> torch.Tensor:
        doubled = output_size is None or tuple(output_size) == tuple(2 * s for s in hidden_states.shape[-2:])
        if not (torch.compiler.is_compiling() and doubled and not args and not kwargs and phases_apply(self)):
            return super().forward(hidden_states, output_size, *args, **kwargs)
        conv = plain_conv(self.conv)
        return upsample_conv_by_phases(hidden_states, conv.weight, conv.bias)


def use_phase_upsample(model: nn.Module, kind: str) -> int:
    """Make every ``Upsample2D`` of ``model`` compile as ``kind``: "phases" (one stride-2 transposed
    convolution) or "stock" (interpolate, then the 3x3 convolution). Switches the layers' class in place
    (parameters, state dict and eager results unchanged); returns how many layers it set."""
    if kind not in UPSAMPLE_KINDS:
        raise ValueError(f"upsample kind must be one of {', '.join(UPSAMPLE_KINDS)}; got {kind!r}")
    count = 0
    for module in model.modules():
        if type(module) not in (Upsample2D, CompiledUpsample2D):
            continue
        module.__class__ = Upsample2D if kind == "stock" else CompiledUpsample2D
        count += 1
    return count
