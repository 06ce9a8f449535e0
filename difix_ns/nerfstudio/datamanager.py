"""Datamanagers that mix Difix-fixed novel views (the pool) into training.

* ``Difix3DDataManager`` (ray-based, for ``difix3d`` / nerfacto): with probability ``pool_sample_prob`` a whole
  batch of rays is drawn from the pool images (only pixels inside the opacity mask); otherwise the stock
  :class:`VanillaDataManager` batch.
* ``Difix3DFullImageDatamanager`` (for ``difix3d-splatfacto``): with probability ``pool_sample_prob`` one whole
  pool image + camera (without ``cam_idx``) + mask; otherwise the stock :class:`FullImageDatamanager` image.

Both satisfy :class:`difix_ns.nerfstudio.pool.PoolDataManager`: batches from the pool are marked with
:func:`~difix_ns.nerfstudio.pool.mark_pool_batch`; the pipeline takes the mark off, runs the model in pool-view mode
and applies the pool loss weight. The pool options come from :class:`~difix_ns.nerfstudio.pool.NovelViewPoolConfig`.
The pool is created here (empty) and filled by the pipeline's fix rounds; it is held outside the module tree, so it is
never part of a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanager, FullImageDatamanagerConfig
from torch import Tensor

from difix_ns.nerfstudio.pool import NovelViewPool, NovelViewPoolConfig, mark_pool_batch
from difix_ns.nerfstudio.user_errors import exit_with, filename_split_message, is_filename_split_error


def _init_explaining_split_errors(init, config, **kwargs) -> None:
    """Run a nerfstudio datamanager ``__init__``; ``--eval-mode filename`` (the original scripts' setting) on data
    whose file names carry no train/eval split becomes one line saying what to pass instead of a traceback."""
    try:
        init(config, **kwargs)
    except ValueError as err:
        if not is_filename_split_error(err):
            raise
        exit_with(filename_split_message(getattr(config.dataparser, "data", None)))


class _PoolDrawing:
    """Shared pool bookkeeping of both datamanagers (plain attributes: nothing is registered on the module)."""

    config: Difix3DDataManagerConfig | Difix3DFullImageDatamanagerConfig
    device: str | torch.device

    def _init_pool(self) -> None:
        if not 0.0 <= self.config.pool_sample_prob <= 1.0:
            raise ValueError(
                f"--pipeline.datamanager.pool-sample-prob must be in [0, 1], got {self.config.pool_sample_prob}"
            )
        self.novel_pool = NovelViewPool(self.config.pool_mode, self.config.pool_max_views, device=str(self.device))
        self.pool_draws = 0
        """Training batches drawn from the pool so far (tests assert on it)."""
        self.dataset_draws = 0
        """Training batches drawn from the training images so far."""
        self._pool_rng = torch.Generator().manual_seed(self.config.pool_seed)

    def _draw_from_pool(self) -> bool:
        if not self.novel_pool.supervised_views or self.config.pool_sample_prob <= 0.0:
            return False
        return bool(torch.rand((), generator=self._pool_rng) < self.config.pool_sample_prob)


@dataclass
class Difix3DDataManagerConfig(NovelViewPoolConfig, VanillaDataManagerConfig):
    """Ray-based datamanager with a Difix novel-view pool (``difix3d``); pool options: ``NovelViewPoolConfig``."""

    _target: type = field(default_factory=lambda: Difix3DDataManager)
    """Target class to instantiate."""


class Difix3DDataManager(VanillaDataManager, _PoolDrawing):
    """VanillaDataManager + novel-view pool sampled as rays."""

    config: Difix3DDataManagerConfig

    def __init__(
        self, config: Difix3DDataManagerConfig, device="cpu", test_mode="val", world_size=1, local_rank=0, **kwargs
    ):
        _init_explaining_split_errors(
            super().__init__, config, device=device, test_mode=test_mode, world_size=world_size,
            local_rank=local_rank, **kwargs,
        )
        self._init_pool()

    def next_train(self, step: int) -> tuple[RayBundle, dict]:
        if self._draw_from_pool():
            self.pool_draws += 1
            return self._next_pool_rays()
        self.dataset_draws += 1
        return super().next_train(step)

    def _next_pool_rays(self) -> tuple[RayBundle, dict]:
        pool = self.novel_pool
        assert pool.device_cameras is not None
        num = self.get_train_rays_per_batch()
        v, y, x = pool.sample_pixels(num, self._pool_rng)  # [R] each, CPU
        coords = torch.stack([y, x], dim=-1).float() + 0.5  # pixel centres, (row, col) like RayGenerator
        cameras = pool.device_cameras.to(self.device)  # the pool's device is the training device: no copy
        ray_bundle = cameras.generate_rays(
            camera_indices=v.unsqueeze(-1).to(self.device), coords=coords.to(self.device)
        )
        batch = {"image": pool.gather_rgb(v, y, x), "indices": torch.stack([v, y, x], dim=-1)}
        return ray_bundle, mark_pool_batch(batch)

    def reference_image(self, index: int) -> Tensor:
        """Training image ``index`` as float ``[H, W, 3]`` in [0, 1] (Difix reference view)."""
        return self.train_dataset.get_image_float32(index)[..., :3]

    def reference_cameras(self) -> Cameras:
        """Training cameras matching :meth:`reference_image`."""
        return self.train_dataset.cameras


@dataclass
class Difix3DFullImageDatamanagerConfig(NovelViewPoolConfig, FullImageDatamanagerConfig):
    """Full-image datamanager with a Difix novel-view pool (``difix3d-splatfacto``); pool options:
    ``NovelViewPoolConfig`` (only the sampling default differs)."""

    _target: type = field(default_factory=lambda: Difix3DFullImageDatamanager)
    """Target class to instantiate."""
    pool_sample_prob: float = 0.3
    """Probability that a training image is drawn from the fixed novel views (upstream gsplat example: 0.3)."""


class Difix3DFullImageDatamanager(FullImageDatamanager, _PoolDrawing):
    """FullImageDatamanager + novel-view pool sampled as whole images."""

    config: Difix3DFullImageDatamanagerConfig

    def __init__(
        self,
        config: Difix3DFullImageDatamanagerConfig,
        device="cpu",
        test_mode="val",
        world_size=1,
        local_rank=0,
        **kwargs,
    ):
        _init_explaining_split_errors(
            super().__init__, config, device=device, test_mode=test_mode, world_size=world_size,
            local_rank=local_rank, **kwargs,
        )
        self._init_pool()

    def next_train(self, step: int) -> tuple[Cameras, dict]:
        if self._draw_from_pool():
            self.pool_draws += 1
            usable = self.novel_pool.supervised_views
            index = usable[int(torch.randint(len(usable), (), generator=self._pool_rng))]
            camera, image, mask = self.novel_pool.view(index)
            # No cam_idx in the metadata: camera optimizer and bilateral grid leave pool views alone.
            batch = {"image": image.to(self.device), "mask": mask.to(self.device)}
            return camera.to(self.device), mark_pool_batch(batch)
        self.dataset_draws += 1
        return super().next_train(step)

    def reference_image(self, index: int) -> Tensor:
        """Undistorted cached training image ``index`` as float ``[H, W, 3]`` in [0, 1]."""
        image = self.cached_train[index]["image"]
        image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        return image[..., :3]

    def reference_cameras(self) -> Cameras:
        """Training cameras matching :meth:`reference_image` (undistorted intrinsics once the cache is built)."""
        _ = self.cached_train  # undistortion rewrites the intrinsics in place on first access
        return self.train_dataset.cameras
