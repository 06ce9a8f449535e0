"""Attention with heads wider than flash attention takes, as two matmuls around a float32 softmax (compiled only).

The SD VAE's mid-block attention has one head of 512 channels over every latent pixel (9216 tokens at 576x1024).
Flash attention stops at 256-wide heads, so SDPA runs it on the memory-efficient kernel: 2.9 of the fast path's
38.8 ms a frame (NVIDIA H100, batch 8, ``docs/gpu_results/profile_difix_h100.json``), about 120 TFLOP/s.
Written out as ``softmax(q k^T * scale) v`` the two products are plain batched GEMMs at full tensor-core rate; the
logits are produced in float32 (``bmm`` with ``out_dtype``), as the fused kernels keep them, and the softmax runs in
float32 before the probabilities are cast back for the second product.

:class:`WideHeadAttnProcessor` does this only inside ``torch.compile``'d graphs and only for unmasked
self-attention; everything else (eager calls, masks, cross-attention) goes through diffusers' ``AttnProcessor2_0``.
``scripts/bench_vae_attention.py`` measures it against SDPA.
"""
from __future__ import annotations

import torch
from torch import nn

FLASH_MAX_HEAD_DIM = 256
"""Widest head PyTorch's flash-attention kernel takes."""
WIDE_ATTENTION_KINDS = ("matmul", "sdpa")
"""How compiled graphs run heads wider than that (``CompiledDifixStep(wide_attention=...)``): this module's two GEMMs
or SDPA."""


def matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) v for [B, H, L, D] tensors, logits and softmax in float32, output in v's dtype."""
    b, h, length, d = q.shape
    q3, k3, v3 = q.reshape(b * h, length, d), k.reshape(b * h, -1, d), v.reshape(b * h, -1, v.shape[-1])
    if q.is_cuda and q.dtype in (torch.bfloat16, torch.float16):
        logits = torch.bmm(q3, k3.transpose(1, 2), out_dtype=torch.float32)
    else:
        logits = torch.bmm(q3.float(), k3.float().transpose(1, 2))
    probs = torch.softmax(logits * scale, dim=-1).to(v.dtype)
    return torch.bmm(probs, v3).view(b, h, length, -1)


class WideHeadAttnProcessor:
    """diffusers attention processor: :func:`matmul_attention` for unmasked self-attention in compiled graphs,
    ``AttnProcessor2_0`` (SDPA) for every other call."""

    def __init__(self):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self._sdpa = AttnProcessor2_0()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        if (not torch.compiler.is_compiling() or encoder_hidden_states is not None or attention_mask is not None
                or attn.spatial_norm is not None or hidden_states.ndim not in (3, 4)
                or attn.norm_q is not None or attn.norm_k is not None):
            return self._sdpa(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        residual = hidden_states
        spatial = hidden_states.shape if hidden_states.ndim == 4 else None
        if spatial is not None:
            b, c, h, w = spatial
            hidden_states = hidden_states.reshape(b, c, h * w).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        batch, heads = q.shape[0], attn.heads
        split = lambda t: t.view(batch, -1, heads, t.shape[-1] // heads).transpose(1, 2)  # noqa: E731
        out = matmul_attention(split(q), split(k), split(v), attn.scale)
        out = out.transpose(1, 2).reshape(batch, -1, out.shape[1] * out.shape[-1]).to(q.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if spatial is not None:
            out = out.transpose(1, 2).reshape(spatial)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def use_wide_head_attention(model: nn.Module, wider_than: int = FLASH_MAX_HEAD_DIM) -> int:
    """Give ``WideHeadAttnProcessor`` to every diffusers ``Attention`` of ``model`` whose heads are wider than
    ``wider_than`` (default: what flash attention takes) and whose processor is the stock SDPA one; returns how many
    it changed."""
    from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

    changed = 0
    for module in model.modules():
        if not isinstance(module, Attention) or type(module.processor) not in (AttnProcessor, AttnProcessor2_0):
            continue
        head_dim = module.inner_dim // module.heads
        if head_dim > wider_than:
            module.set_processor(WideHeadAttnProcessor())
            changed += 1
    return changed


def use_stock_attention(model: nn.Module) -> int:
    """Undo :func:`use_wide_head_attention` (back to ``AttnProcessor2_0``); returns how many it changed."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    changed = 0
    for module in model.modules():
        if isinstance(module, Attention) and isinstance(module.processor, WideHeadAttnProcessor):
            module.set_processor(AttnProcessor2_0())
            changed += 1
    return changed
