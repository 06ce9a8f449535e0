"""The one provider of Difix reference views: which training view goes with a camera, and its image at a size.

Fix rounds (training), the ``rgb_fixed`` render output (``ns-render``, ``ns-difix-render``, ``difix-trajectory``) and
the viewer all ask a :class:`ReferenceViews` for the reference of a camera, so they pick the same training view for the
same pose: the nearest one by :func:`difix_ns.geometry.poses.pose_distance` (translation in scene extents + the run's
``reference_rotation_weight`` x angle in radians).

Import-light (torch only): nerfstudio objects are duck-typed (``cameras.camera_to_worlds``, ``image_filenames``,
``get_image_float32``; a datamanager's ``reference_cameras`` / ``reference_image``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional

import torch.nn.functional as F
from torch import Tensor

from difix_ns.geometry.poses import DEFAULT_ROTATION_WEIGHT, nearest_views, scene_extent


@dataclass
class ReferenceViews:
    """The training views Difix may use as references: their poses, names, and a loader for their images."""

    c2w: Tensor
    """[N, 3, 4] camera-to-world poses (stored as float32 on the CPU)."""
    names: List[str]
    """Image file names: base names for display (:meth:`from_dataset`), or the dataset's own list, as round files
    record it (:meth:`from_datamanager`)."""
    load: Callable[[int], Tensor]
    """index -> float image [H, W, 3] in [0, 1]."""
    rotation_weight: float = DEFAULT_ROTATION_WEIGHT
    """Radians of viewing-direction change weighed against one scene extent of translation (the run's
    ``--pipeline.reference-rotation-weight``)."""
    extent: float = field(init=False)
    """Scene extent of the training cameras: the translation unit of the distance."""

    def __post_init__(self) -> None:
        self.c2w = self.c2w.detach().float().cpu().reshape(-1, 3, 4)
        self.extent = scene_extent(self.c2w)

    @classmethod
    def from_dataset(cls, dataset: Any, rotation_weight: float = DEFAULT_ROTATION_WEIGHT) -> "ReferenceViews":
        """Training views of a nerfstudio ``InputDataset`` (images are read lazily, only when chosen)."""
        names = [Path(p).name for p in dataset.image_filenames]

        def load(index: int) -> Tensor:
            return dataset.get_image_float32(index)[..., :3]

        return cls(c2w=dataset.cameras.camera_to_worlds, names=names, load=load, rotation_weight=rotation_weight)

    @classmethod
    def from_datamanager(cls, datamanager: Any, rotation_weight: float = DEFAULT_ROTATION_WEIGHT) -> "ReferenceViews":
        """Training views of a Difix3D datamanager (its ``reference_cameras`` / ``reference_image``: undistorted
        images for the full-image datamanager)."""
        cameras = datamanager.reference_cameras()
        filenames = getattr(getattr(datamanager, "train_dataset", None), "image_filenames", None) or []
        return cls(
            c2w=cameras.camera_to_worlds,
            names=[str(p) for p in filenames],
            load=datamanager.reference_image,
            rotation_weight=rotation_weight,
        )

    def __len__(self) -> int:
        return int(self.c2w.shape[0])

    def nearest(self, poses: Tensor) -> Tensor:
        """Index ``[Q]`` (long, CPU) of the reference view of each camera pose ``[Q, 3, 4]``."""
        return nearest_views(poses.detach().reshape(-1, 3, 4).float().cpu(), self.c2w, self.extent,
                             self.rotation_weight)

    def image(
        self, index: int, height: Optional[int] = None, width: Optional[int] = None, device: Any = None
    ) -> Tensor:
        """Reference image ``index`` as float ``[H, W, 3]`` in [0, 1], resized (bilinear, antialiased) to
        ``height`` x ``width`` when given and different."""
        image = self.load(int(index))[..., :3].float()
        if device is not None:
            image = image.to(device)
        if height is not None and width is not None and tuple(image.shape[:2]) != (height, width):
            image = F.interpolate(image.permute(2, 0, 1)[None], size=(height, width), mode="bilinear",
                                  antialias=True, align_corners=False)[0].permute(1, 2, 0)
        return image.clamp(0, 1)
