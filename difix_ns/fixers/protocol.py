"""The fixer contract shared by the 3D methods (fix rounds), ``rgb_fixed``/``ns-difix-render``, the viewer and
the CLIs.

A fixer takes renders and returns images of the same shape:

    fix(images [B,3,H,W] float in [0,1],
        refs   [B,V,3,H',W'] float in [0,1] | None,   # clean reference views, ignored where unused
        cameras  nerfstudio ``Cameras`` of length B | None)  # the cameras the images were rendered from
      -> [B,3,H,W] float32 in [0,1] on images.device

``uses_references`` tells callers whether gathering reference views is worth it. ``cameras`` is only needed by
fixers that render themselves (an oracle teacher); learned fixers ignore it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from nerfstudio.cameras.cameras import Cameras


@runtime_checkable
class ImageFixer(Protocol):
    """What every fixer implements (see the module docstring for shapes and ranges)."""

    @property
    def uses_references(self) -> bool:
        """True when ``fix`` reads ``refs``; callers skip gathering references otherwise."""
        ...

    def fix(
        self,
        images: "torch.Tensor",
        refs: Optional["torch.Tensor"] = None,
        cameras: Optional["Cameras"] = None,
    ) -> "torch.Tensor":
        """Return fixed images [B,3,H,W] float32 in [0,1] on ``images.device``."""
        ...
