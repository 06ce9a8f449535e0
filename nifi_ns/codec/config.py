"""``CodecConfig``: the quantization settings of one encode, checked on construction (import-light: standard
library only, so configs and the rate presets load without the codec)."""

from __future__ import annotations

from dataclasses import dataclass

CODERS = ("auto", "rans", "lzma")
"""Entropy coders an encode may use (``entropy.py``): per-stream best of both, range-ANS, or lzma."""


@dataclass
class CodecConfig:
    """Quantization settings of one encode (the Gaussian budget is `max_gaussians`)."""

    max_gaussians: int | None = None
    """Keep at most this many Gaussians (highest importance first); None keeps all."""
    sh_degree: int | None = None
    """Highest SH degree kept (None keeps the input's)."""
    position_bits: int = 16
    """Bits per axis of the position grid over the bounding box (1..21)."""
    scale_bits: int = 7
    """Bits per log-scale axis."""
    rotation_bits: int = 8
    """Bits per quaternion component."""
    opacity_bits: int = 7
    """Bits of the sigmoid(opacity) grid (1..10)."""
    color_bits: int = 7
    """Bits per SH DC channel."""
    sh_codebook_size: int = 1024
    """k-means codebook entries for the SH rest vectors (1..65536)."""
    kmeans_iters: int = 10
    """Lloyd iterations of the SH codebook fit."""
    kmeans_sample: int = 32768
    """The codebook is fitted on at most this many random Gaussians (labels are assigned for all)."""
    clip_percentile: float = 0.05
    """Scale / colour grid ranges span [p, 100 - p] percentiles; values outside are clamped."""
    entropy_coder: str = "auto"
    """'rans' (constriction range-ANS, per-stream histogram models, conditioned on the previous channel),
    'lzma' (stdlib baseline on the same symbols) or 'auto' (per stream, whichever is shorter)."""
    seed: int = 0
    """Seed of the k-means initialisation."""
    cov_codebook_size: int = 0
    """> 0: vector-quantise (log-scale, rotation) jointly with a k-means codebook of this many entries instead of
    the scale / rotation grids (container version 2, `vq.py`); 0 keeps the grids."""
    color_codebook_size: int = 0
    """> 0: vector-quantise the SH DC colour with a k-means codebook of this many entries; 0 keeps the grid."""
    position_contraction: bool = False
    """Quantize positions on a log-radial warp about the scene centre (`positions.py`, container version 2): finer
    steps near the centre, coarser far away, so few position bits still place the foreground accurately."""
    vq_iters: int = 12
    """Lloyd iterations of the covariance / colour codebook fits."""

    def __post_init__(self) -> None:
        limits = {"position_bits": 21, "scale_bits": 12, "rotation_bits": 12, "opacity_bits": 10, "color_bits": 12}
        for name, top in limits.items():
            value = getattr(self, name)
            if not 1 <= value <= top:
                raise ValueError(f"CodecConfig.{name}={value} must be in [1, {top}]")
        for name in ("cov_codebook_size", "color_codebook_size"):
            if not 0 <= getattr(self, name) <= 65536:
                raise ValueError(f"CodecConfig.{name}={getattr(self, name)} must be in [0, 65536]")
        if not 1 <= self.sh_codebook_size <= 65536:
            raise ValueError(f"CodecConfig.sh_codebook_size={self.sh_codebook_size} must be in [1, 65536]")
        if self.max_gaussians is not None and self.max_gaussians < 1:
            raise ValueError(f"CodecConfig.max_gaussians={self.max_gaussians} must be >= 1")
        if self.sh_degree is not None and not 0 <= self.sh_degree <= 4:
            raise ValueError(f"CodecConfig.sh_degree={self.sh_degree} must be in [0, 4]")
        if self.entropy_coder not in CODERS:
            raise ValueError(f"CodecConfig.entropy_coder={self.entropy_coder!r} must be one of {CODERS}")
        if not 0 <= self.clip_percentile < 50:
            raise ValueError(f"CodecConfig.clip_percentile={self.clip_percentile} must be in [0, 50)")
