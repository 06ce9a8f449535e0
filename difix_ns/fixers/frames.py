"""World frames of nerfstudio runs: moving camera poses from one run's normalised frame to another's.

nerfstudio's dataparser maps the poses of ``transforms.json`` into its own frame: ``c2w' = T @ c2w`` (``T`` =
``dataparser_transform``, 3x4), then the translation is multiplied by ``dataparser_scale``. Two runs of the same
scene trained on different view subsets or with different normalisation settings therefore live in different
frames; these helpers convert between them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor


@dataclass(frozen=True)
class WorldFrame:
    """A run's dataparser normalisation: ``transform`` [3, 4] and ``scale``."""

    transform: Tensor
    scale: float

    @classmethod
    def of_pipeline(cls, pipeline: Any) -> Optional["WorldFrame"]:
        """The frame of a loaded pipeline's training data (None when it cannot be told)."""
        outputs = getattr(getattr(pipeline, "datamanager", None), "train_dataparser_outputs", None)
        if outputs is None:
            return None
        return cls(outputs.dataparser_transform.detach().float().cpu()[:3, :4], float(outputs.dataparser_scale))

    def _matrix(self) -> Tensor:
        m = torch.eye(4, dtype=torch.float64)
        m[:3, :4] = self.transform.double()
        return m

    def to_source(self, c2w: Tensor) -> Tensor:
        """Poses ``[N, 3, 4]`` in this frame -> the frame of the data's ``transforms.json``."""
        poses = c2w[:, :3, :4].double().clone()
        poses[:, :, 3] /= self.scale
        full = torch.cat([poses, torch.tensor([0, 0, 0, 1.0], dtype=poses.dtype).expand(len(poses), 1, 4)], 1)
        return (torch.linalg.inv(self._matrix()) @ full)[:, :3, :4]

    def from_source(self, c2w: Tensor) -> Tensor:
        """Poses ``[N, 3, 4]`` in the frame of ``transforms.json`` -> this frame."""
        poses = c2w[:, :3, :4].double()
        full = torch.cat([poses, torch.tensor([0, 0, 0, 1.0], dtype=poses.dtype).expand(len(poses), 1, 4)], 1)
        out = (self._matrix() @ full)[:, :3, :4].clone()
        out[:, :, 3] *= self.scale
        return out

    def same_as(self, other: "WorldFrame", atol: float = 1e-6) -> bool:
        return abs(self.scale - other.scale) <= atol * max(1.0, abs(self.scale)) and torch.allclose(
            self.transform, other.transform, atol=atol
        )


def convert_poses(c2w: Tensor, source: Optional[WorldFrame], target: Optional[WorldFrame]) -> Tensor:
    """Poses ``[N, 3, 4]`` from frame ``source`` to frame ``target`` (unchanged when either is unknown or equal)."""
    if source is None or target is None or source.same_as(target):
        return c2w[:, :3, :4]
    return target.from_source(source.to_source(c2w)).to(c2w.dtype)
