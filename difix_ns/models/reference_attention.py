"""Reference mixing: self-attention across one degraded view and V >= 0 clean reference views.

``nvidia/difix_ref`` was trained with every UNet ``BasicTransformerBlock`` running its self-attention (attn1) over
the concatenated tokens of the views of a sample; cross-attention, feed-forward, norms and convs stay per view,
and no weights are added. Instead of replacing ``BasicTransformerBlock.forward`` for the whole process (what the
upstream remote code does, with V hard-coded to 1), an attention processor is installed on each attn1 *instance*
of one UNet. The number of views is read from a state object shared by that UNet's processors, so any V works
and other diffusers models in the process are untouched.

Batch layout: [img_0, ref_0a, ..., img_1, ref_1a, ...], i.e. ``(b v)`` with the degraded view first.

Only the degraded view's output is used. After the UNet's last self-attention (in execution order) nothing mixes the
views again (cross-attention, feed-forward, resnets, GroupNorm and convolutions work per view), so the references'
queries in that last attention are dead work: ``reference_views(unet, V, render_queries_last=True)`` computes that
layer for the degraded view's queries only (keys and values from every view, so its output is the same function) and
fills the references' rows with zeros, which nothing downstream reads. The fast path uses it; the eager pipeline keeps
upstream's arithmetic.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn


@dataclass
class ReferenceViewState:
    """Views per sample (1 + number of references) seen by the processors of one UNet."""

    num_views: int = 1
    render_queries_last: bool = False
    """the last self-attention computes the degraded view's rows only (the references' rows are zeros)"""


class MultiViewSelfAttnProcessor:
    """Wraps a standard processor: (B*V, N, C) -> (B, V*N, C) -> attention -> (B*V, N, C).

    ``last``: this is the UNet's last self-attention in execution order (set by ``install_reference_attention``)."""

    def __init__(self, state: ReferenceViewState, base=None, last: bool = False):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.state = state
        self.base = base if base is not None else AttnProcessor2_0()
        self.last = last

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        views = self.state.num_views
        if views == 1 or encoder_hidden_states is not None:
            return self.base(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        if hidden_states.ndim != 3:
            shape = tuple(hidden_states.shape)
            raise ValueError(f"reference mixing expects token inputs (B*V, N, C), got shape {shape}")
        if attention_mask is not None:
            raise ValueError("reference mixing does not support attention masks in self-attention")
        batch_views, tokens, channels = hidden_states.shape
        if batch_views % views:
            raise ValueError(f"batch of {batch_views} token sets is not a multiple of {views} views per sample")
        joint = hidden_states.reshape(batch_views // views, views * tokens, channels)
        if self.last and self.state.render_queries_last:
            # queries of the degraded views only, keys and values of all views (diffusers' processors take keys and
            # values from encoder_hidden_states; attn1 has no norm_cross, so they are the same projections)
            rendered = hidden_states[::views]
            out = self.base(attn, rendered, joint, None, temb, **kwargs)
            unread = out.new_zeros(out.shape[0], views - 1, tokens, out.shape[-1])
            return torch.cat([out[:, None], unread], dim=1).reshape(batch_views, tokens, -1)
        out = self.base(attn, joint, None, None, temb, **kwargs)
        return out.reshape(batch_views, tokens, channels)


def self_attention_modules(unet: nn.Module) -> list[nn.Module]:
    """attn1 of every BasicTransformerBlock, in execution order (down blocks, mid block, up blocks)."""
    from diffusers.models.attention import BasicTransformerBlock

    stages = [*getattr(unet, "down_blocks", []), getattr(unet, "mid_block", None), *getattr(unet, "up_blocks", [])]
    if not any(stage is not None for stage in stages):
        stages = [unet]
    return [m.attn1 for stage in stages if stage is not None for m in stage.modules()
            if isinstance(m, BasicTransformerBlock)]


def install_reference_attention(unet: nn.Module) -> ReferenceViewState:
    """Install multi-view processors on this UNet's self-attentions (idempotent); returns the shared state."""
    existing = getattr(unet, "_difix_reference_state", None)
    if existing is not None:
        return existing
    state = ReferenceViewState()
    modules = self_attention_modules(unet)
    if not modules:
        raise ValueError(f"{type(unet).__name__} has no BasicTransformerBlock self-attention to mix references in")
    for i, attn in enumerate(modules):
        attn.set_processor(MultiViewSelfAttnProcessor(state, last=i == len(modules) - 1))
    # A plain attribute (not a submodule / parameter): state_dict and config are unchanged.
    unet._difix_reference_state = state
    return state


def has_reference_attention(unet: nn.Module) -> bool:
    return getattr(unet, "_difix_reference_state", None) is not None


@contextmanager
def reference_views(unet: nn.Module, num_views: int, render_queries_last: bool = False) -> Iterator[None]:
    """Run the UNet with ``num_views`` views per sample (1 = plain single-view behaviour). ``render_queries_last``:
    the output's reference rows are not wanted (see the module docstring); they come out as garbage."""
    state = getattr(unet, "_difix_reference_state", None)
    if state is None:
        if num_views != 1:
            raise ValueError("this UNet has no reference-mixing attention; call install_reference_attention first")
        yield
        return
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    previous = state.num_views, state.render_queries_last
    state.num_views, state.render_queries_last = int(num_views), bool(render_queries_last)
    try:
        yield
    finally:
        state.num_views, state.render_queries_last = previous


__all__ = [
    "ReferenceViewState",
    "MultiViewSelfAttnProcessor",
    "install_reference_attention",
    "has_reference_attention",
    "reference_views",
    "self_attention_modules",
]
