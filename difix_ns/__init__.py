"""Difix3D / Difix3D+ for nerfstudio.

Import-light on purpose: every ``ns-*`` command imports this package through the plugin entry points, so the
heavy diffusion stack (diffusers, transformers, peft) is only imported when a model is actually built.
"""
from __future__ import annotations

from difix_ns.nerfstudio_patches import install_at_import

install_at_import()  # checkpoint allow-list + restricted config.yml loading (see difix_ns.nerfstudio_patches)

__all__ = ["DifixPipeline", "DifixFixer", "DifixFixerConfig"]


def __getattr__(name: str):
    # Lazy exports keep `import difix_ns` cheap (PEP 562).
    if name == "DifixPipeline":
        from difix_ns.pipeline_difix import DifixPipeline

        return DifixPipeline
    if name in ("DifixFixer", "DifixFixerConfig"):
        from difix_ns import fixer

        return getattr(fixer, name)
    raise AttributeError(f"module 'difix_ns' has no attribute {name!r}")
