"""Gaussian-splat rendering helpers: a pure-PyTorch, gsplat-1.4.0-compatible ``rasterization`` and CPU support
for nerfstudio's splatfacto.

``rasterization`` dispatches: gsplat's CUDA kernels for CUDA tensors, ``torch_rasterization`` otherwise.
``install_cpu_support()`` patches nerfstudio so stock splatfacto (and subclasses) trains and renders on CPU; it is a
no-op on machines with CUDA. Exports are lazy (PEP 562) so importing this package stays cheap.
"""
from __future__ import annotations

__all__ = ["rasterization", "torch_rasterization", "install_cpu_support"]


def __getattr__(name: str):
    if name in ("rasterization", "torch_rasterization"):
        from difix_ns.splat import rendering as _module

        return getattr(_module, name)
    if name == "install_cpu_support":
        from difix_ns.splat.cpu import install_cpu_support

        return install_cpu_support
    raise AttributeError(f"module 'difix_ns.splat' has no attribute {name!r}")
