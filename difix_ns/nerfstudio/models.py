"""Difix3D models: nerfacto / splatfacto that can be supervised by pool views without per-image parameters.

Both implement :class:`difix_ns.nerfstudio.pool.PoolAwareModel` (``pool_view_mode`` + ``photometric_loss_key``), the
contract the pipeline trains pool batches through. Both subclasses add no modules, so their state-dict keys equal
the stock models' keys: a plain nerfacto or splatfacto checkpoint loads into them (``--load-checkpoint``), and their
checkpoints load back into the stock methods.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from nerfstudio.cameras.camera_optimizers import CameraOptimizer
from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig
from nerfstudio.models.splatfacto import SplatfactoModel, SplatfactoModelConfig


class PoolAwareCameraOptimizer(CameraOptimizer):
    """Camera optimizer that leaves ray bundles of pool views untouched.

    Pool rays are generated from the pool's own cameras; their camera indices are pool-local and must not pick
    up the pose correction learned for the training image with the same index.
    """

    skip_ray_bundles: bool = False

    def apply_to_raybundle(self, raybundle) -> None:
        if self.skip_ray_bundles:
            return
        super().apply_to_raybundle(raybundle)


@dataclass
class Difix3DNerfactoModelConfig(NerfactoModelConfig):
    """Nerfacto for Difix3D (defaults are stock nerfacto: appearance embedding and SO3xR3 camera optimizer on)."""

    _target: type = field(default_factory=lambda: Difix3DNerfactoModel)
    """Target class to instantiate."""


class Difix3DNerfactoModel(NerfactoModel):
    """Nerfacto with a pool-view mode: mean/zero appearance embedding and no camera-optimizer correction."""

    config: Difix3DNerfactoModelConfig
    photometric_loss_key = "rgb_loss"

    def populate_modules(self) -> None:
        from difix_ns.metrics import install_torchvision_offline_fallback

        install_torchvision_offline_fallback()  # nerfacto builds torchmetrics LPIPS (AlexNet) here; no-op online
        super().populate_modules()
        # Same parameters and state-dict keys as the stock optimizer; only the pool-view switch is added.
        self.camera_optimizer = PoolAwareCameraOptimizer(
            self.config.camera_optimizer, num_cameras=self.num_train_data, device="cpu"
        )

    @contextmanager
    def pool_view_mode(self, active: bool = True) -> Iterator[None]:
        """Inside this context a forward pass treats its rays as pool (Difix-fixed novel) views.

        The field is put in eval mode, so it uses the same appearance code as novel-view rendering
        (the mean embedding with nerfacto's default ``use_average_appearance_embedding``, zeros otherwise): the
        fixed image was rendered that way, and no training image's embedding is pulled toward it. The rest of the
        model keeps training mode (proposal sampling, losses).
        """
        if not active:
            yield
            return
        field_training = self.field.training
        self.field.training = False
        assert isinstance(self.camera_optimizer, PoolAwareCameraOptimizer)
        self.camera_optimizer.skip_ray_bundles = True
        try:
            yield
        finally:
            self.field.training = field_training
            self.camera_optimizer.skip_ray_bundles = False


@dataclass
class Difix3DSplatfactoModelConfig(SplatfactoModelConfig):
    """Splatfacto for Difix3D."""

    _target: type = field(default_factory=lambda: Difix3DSplatfactoModel)
    """Target class to instantiate."""
    densify_from_pool_views: bool = True
    """Let pool (fixed novel) views feed the densification statistics (image-space gradients and visibility
    counts); False: only training images do, pool steps still refine/reset on schedule."""


class Difix3DSplatfactoModel(SplatfactoModel):
    """Splatfacto trained on pool views.

    Pool cameras carry no ``cam_idx`` metadata, so splatfacto's camera optimizer and bilateral grid already skip
    them; the pool-view mode only exists to share the pipeline code path with nerfacto.
    """

    config: Difix3DSplatfactoModelConfig
    photometric_loss_key = "main_loss"
    _last_step_was_pool: bool = False

    @contextmanager
    def pool_view_mode(self, active: bool = True) -> Iterator[None]:
        # Remembered past the context: the densification callback runs after the backward pass.
        self._last_step_was_pool = bool(active)
        yield

    def step_post_backward(self, step):
        if not (self._last_step_was_pool and not self.config.densify_from_pool_views):
            return super().step_post_backward(step)
        info = self.info
        # No visible Gaussians -> the strategy adds nothing to its gradient / count statistics for this step.
        self.info = dict(info, radii=torch.zeros_like(info["radii"]))
        try:
            return super().step_post_backward(step)
        finally:
            self.info = info
