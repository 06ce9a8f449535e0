"""The novel-view pool and its contract: the pool itself, its config fields, and the protocols that connect it.

* :class:`NovelViewPool`: the in-memory pool of Difix-fixed novel views (cameras + uint8 images + opacity masks).
  It is deliberately *not* part of the training dataset: its views carry no ``cam_idx`` and never change
  ``len(train_dataset)``, so per-image parameters (appearance embeddings, camera optimizer, bilateral grid) stay
  indexed by the real training images only. It is a plain Python object (not an ``nn.Module``), so nothing in it
  enters checkpoints; fix rounds are persisted as PNG/JSON instead (:mod:`difix_ns.nerfstudio.fix_round`).
* :class:`NovelViewPoolConfig`: the pool's datamanager options, declared once (``--pipeline.datamanager.pool-*``).
* :class:`PoolDataManager`: what the pipeline needs from a datamanager (the pool, training images as references,
  batches that say whether they came from the pool: :func:`mark_pool_batch` / :func:`take_pool_flag`).
* :class:`PoolAwareModel`: what the pipeline needs from a model (a pool-view mode and the photometric loss key).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor

POOL_BATCH_KEY = "difix_pool_view"
"""Batch key set to True on batches drawn from the novel-view pool (set and read through :func:`mark_pool_batch` and
:func:`take_pool_flag`)."""


def mark_pool_batch(batch: dict) -> dict:
    """Mark a training batch as drawn from the novel-view pool; returns ``batch``."""
    batch[POOL_BATCH_KEY] = True
    return batch


def take_pool_flag(batch: dict) -> bool:
    """Whether ``batch`` came from the pool; removes the mark, so the model's losses never see it."""
    return bool(batch.pop(POOL_BATCH_KEY, False))


@dataclass
class NovelViewPoolConfig:
    """Novel-view pool options of the Difix3D datamanagers (both inherit these fields, so the flags stay
    ``--pipeline.datamanager.pool-*``)."""

    pool_sample_prob: float = 0.4
    """Probability that a training batch is drawn from the fixed novel views (upstream nerfstudio example: 0.4)."""
    pool_mode: Literal["replace", "accumulate"] = "replace"
    """replace: the pool holds only the latest fix round (upstream); accumulate: keep earlier rounds too."""
    pool_max_views: int = 64
    """Accumulate mode only: keep at most this many views (oldest dropped first); 0 = unbounded."""
    pool_seed: int = 0
    """Seed of the pool/train coin flip and of pool pixel / view sampling."""


def _cat_cameras(cams: list[Cameras]) -> Cameras:
    """Concatenate single-batch-dimension cameras (``Cameras`` cannot be appended in place)."""
    return Cameras(
        camera_to_worlds=torch.cat([c.camera_to_worlds for c in cams]),
        fx=torch.cat([c.fx for c in cams]),
        fy=torch.cat([c.fy for c in cams]),
        cx=torch.cat([c.cx for c in cams]),
        cy=torch.cat([c.cy for c in cams]),
        width=torch.cat([c.width for c in cams]),
        height=torch.cat([c.height for c in cams]),
        camera_type=torch.cat([c.camera_type for c in cams]),
    )


class NovelViewPool:
    """Holds the current set of fixed novel views.

    Args:
        mode: ``"replace"`` keeps only the latest round (upstream behaviour); ``"accumulate"`` appends rounds and
            drops the oldest views beyond ``max_views``.
        max_views: cap on the number of views held (``0`` = no cap in accumulate mode; ignored by replace).
        device: where images and masks live (the training device, like nerfstudio's image cache).
    """

    def __init__(
        self, mode: Literal["replace", "accumulate"] = "replace", max_views: int = 0, device: str = "cpu"
    ) -> None:
        if mode not in ("replace", "accumulate"):
            raise ValueError(f"pool mode must be 'replace' or 'accumulate', got {mode!r}")
        self.mode = mode
        self.max_views = int(max_views)
        self.device = torch.device(device)
        self.cameras: Cameras | None = None
        """``[N]`` the views' cameras, on the CPU (what rounds record)."""
        self.device_cameras: Cameras | None = None
        """The same cameras on ``device``, copied once per update (training draws them every pool step)."""
        self.images: list[Tensor] = []  # each [H, W, 3] uint8
        self.masks: list[Tensor] = []  # each [H, W, 1] bool (True = supervised)
        self.round_steps: list[int] = []  # fix round each view came from
        self._coverage: list[float] = []

    def __len__(self) -> int:
        return len(self.images)

    def clear(self) -> None:
        self.cameras, self.images, self.masks, self.round_steps, self._coverage = None, [], [], [], []
        self.device_cameras = None

    @property
    def supervised_views(self) -> list[int]:
        """Indices of views whose mask selects at least one pixel (the only ones worth drawing)."""
        return [i for i, c in enumerate(self._coverage) if c > 0]

    @property
    def nbytes(self) -> int:
        """Bytes held by images and masks."""
        return sum(t.numel() * t.element_size() for t in self.images + self.masks)

    def update(self, cameras: Cameras, images: Tensor | list[Tensor], masks: Tensor | list[Tensor], step: int) -> None:
        """Add one fix round: ``cameras`` [N], ``images`` N x [H, W, 3] uint8, ``masks`` N x [H, W, 1] bool."""
        images, masks = list(images), list(masks)
        n = len(cameras)
        if len(images) != n or len(masks) != n:
            raise ValueError(f"pool update: {n} cameras, {len(images)} images, {len(masks)} masks")
        for i, (img, msk) in enumerate(zip(images, masks)):
            h, w = int(cameras.height[i]), int(cameras.width[i])
            if img.dtype != torch.uint8 or img.shape != (h, w, 3):
                raise ValueError(f"pool image {i}: expected uint8 [{h}, {w}, 3], got {img.dtype} {tuple(img.shape)}")
            if msk.shape != (h, w, 1):
                raise ValueError(f"pool mask {i}: expected [{h}, {w}, 1], got {tuple(msk.shape)}")
        new_cams = [cameras[i : i + 1].to("cpu") for i in range(n)]
        new_imgs = [img.to(self.device) for img in images]
        new_masks = [msk.to(self.device, torch.bool) for msk in masks]
        if self.mode == "replace":
            self.clear()
            old_cams: list[Cameras] = []
        else:
            old_cams = [self.cameras[i : i + 1] for i in range(len(self))] if self.cameras is not None else []
        cams = old_cams + new_cams
        self.images += new_imgs
        self.masks += new_masks
        self.round_steps += [int(step)] * n
        self._coverage += torch.stack([m.float().mean() for m in new_masks]).tolist() if new_masks else []
        if self.mode == "accumulate" and self.max_views > 0 and len(self.images) > self.max_views:
            drop = len(self.images) - self.max_views  # oldest first
            cams = cams[drop:]
            del self.images[:drop], self.masks[:drop], self.round_steps[:drop], self._coverage[:drop]
        self.cameras = _cat_cameras(cams) if cams else None
        self.device_cameras = self.cameras.to(self.device) if self.cameras is not None else None

    def view(self, index: int) -> tuple[Cameras, Tensor, Tensor]:
        """One view, on the pool's device: camera ``[1]`` (no ``cam_idx`` metadata), image ``[H, W, 3]`` uint8, mask
        ``[H, W, 1]`` bool."""
        assert self.device_cameras is not None
        return self.device_cameras[index : index + 1], self.images[index], self.masks[index]

    def sample_pixels(self, num: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """Sample ``num`` supervised pixels (mask True) uniformly over views, then over pixels.

        Returns ``(view_idx, y, x)``, each ``[num]`` long on CPU. Rejection sampling keeps memory O(num) instead
        of materialising every masked pixel index.
        """
        if len(self) == 0:
            raise RuntimeError("sample_pixels on an empty novel-view pool")
        usable = self.supervised_views
        if not usable:
            raise RuntimeError("every novel-view mask is empty: nothing to supervise (lower alpha_threshold?)")
        usable_t = torch.tensor(usable)
        heights = torch.tensor([m.shape[0] for m in self.masks])
        widths = torch.tensor([m.shape[1] for m in self.masks])
        min_cov = min(self._coverage[i] for i in usable)
        out_v, out_y, out_x, got = [], [], [], 0
        for _ in range(64):
            want = int((num - got) / min_cov * 1.2) + 16
            v = usable_t[torch.randint(len(usable), (want,), generator=generator)]
            y = (torch.rand(want, generator=generator) * heights[v]).long()
            x = (torch.rand(want, generator=generator) * widths[v]).long()
            keep = torch.zeros(want, dtype=torch.bool)
            for i in v.unique().tolist():
                sel = v == i
                keep[sel] = self.masks[i][y[sel].to(self.device), x[sel].to(self.device), 0].cpu()
            out_v.append(v[keep]), out_y.append(y[keep]), out_x.append(x[keep])
            got += int(keep.sum())
            if got >= num:
                break
        v, y, x = torch.cat(out_v)[:num], torch.cat(out_y)[:num], torch.cat(out_x)[:num]
        if v.numel() < num:  # pathological masks: fill up with repeats rather than failing a training step
            reps = -(-num // max(v.numel(), 1))
            v, y, x = v.repeat(reps)[:num], y.repeat(reps)[:num], x.repeat(reps)[:num]
        return v, y, x

    def gather_rgb(self, v: Tensor, y: Tensor, x: Tensor) -> Tensor:
        """Float RGB ``[R, 3]`` in [0, 1] at the given pixels (on the pool device)."""
        out = torch.empty(v.shape[0], 3, device=self.device)
        for i in v.unique().tolist():
            sel = v == i
            out[sel.to(self.device)] = self.images[i][y[sel].to(self.device), x[sel].to(self.device)].float() / 255.0
        return out


@runtime_checkable
class PoolDataManager(Protocol):
    """A datamanager that feeds a Difix3D pipeline (``Difix3DDataManager``, ``Difix3DFullImageDatamanager``).

    ``next_train`` returns batches from the pool marked with :func:`mark_pool_batch`; fix rounds fill
    ``novel_pool`` and take their reference views from ``reference_cameras`` / ``reference_image``.
    """

    novel_pool: NovelViewPool

    def next_train(self, step: int) -> tuple[Any, dict]: ...

    def reference_image(self, index: int) -> Tensor:
        """Training image ``index`` as float ``[H, W, 3]`` in [0, 1]."""
        ...

    def reference_cameras(self) -> Cameras:
        """Training cameras matching :meth:`reference_image`."""
        ...


@runtime_checkable
class PoolAwareModel(Protocol):
    """A model a Difix3D pipeline trains on pool views (``Difix3DNerfactoModel``, ``Difix3DSplatfactoModel``)."""

    photometric_loss_key: str
    """The loss entry the pipeline weights by ``pool_loss_weight`` / ``train_loss_weight``."""

    def pool_view_mode(self, active: bool = True) -> AbstractContextManager[None]:
        """Within the context a forward pass treats its input as a pool (fixed novel) view."""
        ...
