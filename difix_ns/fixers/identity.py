"""``IdentityFixer``: returns the render unchanged. An evaluation tool (the control of the fixer benchmark)."""
from __future__ import annotations

from typing import Optional

import torch


class IdentityFixer:
    """``fix(images) == images`` (float32, clamped to [0, 1]); Difix3D with it must not hurt the reconstruction."""

    uses_references = False

    def fix(self, images: torch.Tensor, refs: Optional[torch.Tensor] = None, cameras=None) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B,3,H,W], got shape {tuple(images.shape)}")
        return images.detach().float().clamp(0, 1).clone()

    def __call__(self, images: torch.Tensor, refs: Optional[torch.Tensor] = None, cameras=None) -> torch.Tensor:
        return self.fix(images, refs, cameras)
