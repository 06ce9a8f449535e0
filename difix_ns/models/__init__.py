"""Difix model components (diffusers/peft are imported on first attribute access, PEP 562).

- ``DifixAutoencoderKL``: SD VAE + decoder skip convs + PEFT LoRA ``vae_skip`` (``difix_ns.models.autoencoder``)
- ``install_reference_attention`` / ``reference_views``: per-instance multi-view self-attention for the UNet
  (``difix_ns.models.reference_attention``)
- ``real_configs`` / ``tiny_configs``: component configs (``difix_ns.models.configs``)
"""
from __future__ import annotations

_EXPORTS = {
    "DifixAutoencoderKL": "difix_ns.models.autoencoder",
    "install_reference_attention": "difix_ns.models.reference_attention",
    "reference_views": "difix_ns.models.reference_attention",
    "MultiViewSelfAttnProcessor": "difix_ns.models.reference_attention",
    "real_configs": "difix_ns.models.configs",
    "tiny_configs": "difix_ns.models.configs",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'difix_ns.models' has no attribute {name!r}")
