"""Rate presets (NiFi's lambda: larger = smaller file) and the ``rate_<lambda>`` label used for folders and metrics.

``RATE_PRESETS`` maps each lambda to a target container size and the ``CodecConfig`` that aims at it;
``rate_preset`` / ``preset_config`` look them up, ``rate_label`` names a rate on disk and in metric keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from nifi_ns.codec.config import CodecConfig


def rate_label(rate: float) -> str:
    """Folder / metric label of a rate: 0.5 -> 'rate_0.5', 1 -> 'rate_1.0'."""
    return f"rate_{float(rate)}"


@dataclass(frozen=True)
class RatePreset:
    target_mb: float
    """Container size aimed at (the paper's Mip-NeRF360 HAC++ size at this lambda)."""
    config: CodecConfig


# NiFi convention: larger lambda = smaller file. Targets are the Table-1 Mip-NeRF360 sizes; bits and SH degree
# fall with the rate and the Gaussian budget is searched so the container meets the target.
RATE_PRESETS: dict[float, RatePreset] = {
    0.1: RatePreset(
        1.15,
        CodecConfig(
            sh_degree=1,
            position_bits=14,
            position_contraction=True,
            scale_bits=6,
            rotation_bits=5,
            opacity_bits=5,
            color_bits=6,
            sh_codebook_size=1024,
        ),
    ),
    # Below 0.5 MB the Gaussian count matters more than per-attribute precision: coarser grids (~55 instead of
    # ~80 bits per Gaussian) keep ~1.5x more Gaussians at the same size and score better (docs/codec.md, guitar
    # sweep); the compression-aware fine-tune renders through these grids, so it adapts the survivors to them.
    0.5: RatePreset(
        0.36, CodecConfig(
            sh_degree=0, position_bits=13, position_contraction=True, scale_bits=5, rotation_bits=4, opacity_bits=4,
            color_bits=5,
        ),
    ),
    1.0: RatePreset(
        0.22, CodecConfig(
            sh_degree=0, position_bits=12, position_contraction=True, scale_bits=4, rotation_bits=4, opacity_bits=4,
            color_bits=5,
        ),
    ),
}


def rate_preset(rate: float) -> RatePreset:
    for key, preset in RATE_PRESETS.items():
        if math.isclose(float(rate), key, rel_tol=0, abs_tol=1e-9):
            return preset
    raise ValueError(f"rate={rate} is not a preset; choose one of {sorted(RATE_PRESETS)} or use target_mb")


def preset_config(rate: float, **overrides: Any) -> CodecConfig:
    """The preset's CodecConfig with fields replaced (e.g. entropy_coder='lzma' for the baseline)."""
    return replace(rate_preset(rate).config, **overrides)
