"""Nix: rate-controlled compression of splatfacto Gaussians into a self-describing container (see docs/codec.md).

Exports are lazy (PEP 562): ``from nifi_ns.codec import rate_label`` (or ``CodecConfig``, ``rate_preset``) loads
only the import-light ``presets`` / ``config`` modules, so nerfstudio method configs can name rates without loading
the numpy codec; ``compress`` / ``decompress`` load it on first use.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "MAGIC": "container",
    "VERSION": "container",
    "RATE_PRESETS": "presets",
    "RatePreset": "presets",
    "preset_config": "presets",
    "rate_label": "presets",
    "rate_preset": "presets",
    "CodecConfig": "config",
    "CompressionReport": "report",
    "NixFormatError": "errors",
    "compress": "codec",
    "compress_with_report": "codec",
    "decompress": "codec",
    "read_header": "codec",
    "CameraSet": "importance",
    "importance_order": "importance",
    "importance_scores": "importance",
    "orbit_cameras": "importance",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nifi_ns.codec' has no attribute {name!r}")
    return getattr(importlib.import_module(f"nifi_ns.codec.{module}"), name)


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
