"""Nix: rate-controlled compression of splatfacto Gaussians into a self-describing container (see docs/codec.md)."""

from nifi_ns.codec.codec import (
    RATE_PRESETS,
    CodecConfig,
    CompressionReport,
    compress,
    compress_with_report,
    decompress,
    preset_config,
    rate_label,
    rate_preset,
    read_header,
)
from nifi_ns.codec.container import MAGIC, VERSION
from nifi_ns.codec.errors import NixFormatError
from nifi_ns.codec.importance import CameraSet, importance_order, importance_scores, orbit_cameras

__all__ = [
    "MAGIC",
    "RATE_PRESETS",
    "VERSION",
    "CameraSet",
    "CodecConfig",
    "CompressionReport",
    "NixFormatError",
    "compress",
    "compress_with_report",
    "decompress",
    "importance_order",
    "importance_scores",
    "orbit_cameras",
    "preset_config",
    "rate_label",
    "rate_preset",
    "read_header",
]
