"""Which SDPA kernel runs the UNet's attention in the fast path: PyTorch's own choice or cuDNN's first.

The UNet's attention heads are 64 wide, so PyTorch picks its flash-attention kernel for them on an H100/H200. With a
reference view, every self-attention runs over the tokens of both views (twice the tokens, four times the work), which
makes attention a large share of a referenced step. cuDNN ships its own fused attention for Hopper;
``unet_attention_kernels("cudnn")`` asks SDPA to try it first and keeps the other kernels as fallbacks for shapes cuDNN
does not take, so no call can fail for want of a kernel. The choice is made when a graph is traced (and so baked into
the compiled graphs and CUDA graphs); on the CPU both choices run PyTorch's CPU kernels.

Only the UNet's calls are inside the context: the VAE's 512-wide head is handled by ``wide_attention``.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

UNET_ATTENTION_KINDS = ("default", "cudnn")
"""``default``: SDPA's own choice (flash attention for the UNet's heads); ``cudnn``: cuDNN's kernel first."""


def check_unet_attention(kind: str) -> str:
    if kind not in UNET_ATTENTION_KINDS:
        raise ValueError(f"unet_attention must be one of {', '.join(UNET_ATTENTION_KINDS)}; got {kind!r}")
    return kind


def sdpa_backends_in_order(kind: str) -> list:
    """The SDPA backends, in the order SDPA tries them, for ``kind`` ([] for "default": nothing changed)."""
    from torch.nn.attention import SDPBackend

    check_unet_attention(kind)
    if kind == "default":
        return []
    return [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


@contextmanager
def unet_attention_kernels(kind: str) -> Iterator[None]:
    """Run the enclosed SDPA calls (and traces of them) with ``kind``'s kernel order; the previous order is restored
    on exit."""
    backends = sdpa_backends_in_order(kind)
    if not backends:
        yield
        return
    from torch.nn.attention import sdpa_kernel

    with sdpa_kernel(backends, set_priority=True):
        yield


__all__ = ["UNET_ATTENTION_KINDS", "check_unet_attention", "sdpa_backends_in_order", "unet_attention_kernels"]
