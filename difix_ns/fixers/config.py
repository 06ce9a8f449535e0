"""``FixerConfig``: which fixer the 3D methods, ``ns-difix-render`` and the viewer use, chosen by ``kind``.

A ``DifixFixerConfig`` with three more fields, so every existing ``--pipeline.fixer.*`` / ``--fixer.*`` option keeps
its meaning. Import-light (dataclasses only); :func:`difix_ns.fixers.factory.build_fixer` builds the fixer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from difix_ns.fixer import DifixFixerConfig

FIXER_KINDS = ("difix", "identity", "teacher", "degraded-teacher")
"""Values of ``FixerConfig.kind``."""


@dataclass
class DegradationConfig:
    """Degradations ``degraded-teacher`` applies to the teacher's image (in this order; 0 switches one off)."""

    blur_sigma: float = 1.0
    """Gaussian blur standard deviation in pixels."""
    color_shift: float = 0.03
    """Per-image, per-channel additive colour offset drawn uniformly from [-color-shift, color-shift]."""
    noise_std: float = 0.02
    """Standard deviation of additive Gaussian pixel noise (images in [0, 1])."""
    jpeg_quality: int = 50
    """JPEG round trip at this quality (1-100); 0 = no JPEG."""
    seed: int = 0
    """Seed of the random colour shift and noise (the same seed gives the same degradations)."""


@dataclass
class FixerConfig(DifixFixerConfig):
    """Fixer choice: Difix (default; hub id or local model folder) or an evaluation fixer."""

    kind: Literal["difix", "identity", "teacher", "degraded-teacher"] = "difix"
    """difix: the Difix model of --model-name. Evaluation tools: identity = the render unchanged (control);
    teacher = the same camera rendered by another trained run, --teacher-config (oracle); degraded-teacher = that
    render blurred / colour-shifted / noised / JPEG-compressed by --degrade.* (an imperfect oracle)."""
    teacher_config: Optional[Path] = None
    """teacher / degraded-teacher (evaluation tools): config.yml of a trained nerfstudio run of the same scene
    (e.g. trained on all views) whose renders replace the fixed images."""
    degrade: DegradationConfig = field(default_factory=DegradationConfig)
    """degraded-teacher (evaluation tool): how the teacher's images are degraded."""
