"""Pose geometry: rotation angle, scene extent, pose distance, nearest views, stepping poses toward targets.

The one home of the pose distance that picks Difix reference views (fix rounds, ``rgb_fixed``, the viewer) and of
the progressive pose shift of the fix rounds. All poses are camera-to-world matrices ``[..., 3, 4]`` (or
``[..., 4, 4]``) in nerfstudio's world frame. Distances and steps are measured in *scene extents* so one setting works
whether or not the dataparser normalised the scene (runs with ``--auto-scale-poses False`` keep raw COLMAP units).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def rotation_angle(rot_a: Tensor, rot_b: Tensor) -> Tensor:
    """Geodesic angle in radians between rotation matrices ``[..., 3, 3]`` (broadcasting)."""
    rel = rot_a.transpose(-1, -2) @ rot_b  # [..., 3, 3]
    cos = (rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    return torch.arccos(cos.clamp(-1.0, 1.0))


def scene_extent(c2w: Tensor, fallback: float = 1.0) -> float:
    """Radius of the camera centres around their centroid: the unit of every pose step.

    ``c2w``: ``[N, 3, 4]``. With fewer than two distinct centres the ``fallback`` is returned.
    """
    centres = c2w[:, :3, 3].double()
    if centres.shape[0] < 2:
        return float(fallback)
    radius = (centres - centres.mean(0, keepdim=True)).norm(dim=-1).max().item()
    return float(radius) if radius > 1e-9 else float(fallback)


def pose_distance(c2w_a: Tensor, c2w_b: Tensor, extent: float = 1.0, rotation_weight: float = 1.0) -> Tensor:
    """Pairwise distance ``[A, B]``: translation (in scene extents) + ``rotation_weight`` x angle (radians)."""
    ta, tb = c2w_a[:, None, :3, 3], c2w_b[None, :, :3, 3]
    trans = (ta - tb).norm(dim=-1) / extent  # [A, B]
    ang = rotation_angle(c2w_a[:, None, :3, :3], c2w_b[None, :, :3, :3])  # [A, B]
    return trans + rotation_weight * ang


DEFAULT_ROTATION_WEIGHT = 1.0
"""Weight of one radian of viewing-direction change against one scene extent of camera translation (runs without a
configured ``reference_rotation_weight``, e.g. stock splatfacto / nerfacto, use it)."""


def nearest_views(
    queries: Tensor, candidates: Tensor, extent: float | None = None, rotation_weight: float = DEFAULT_ROTATION_WEIGHT
) -> Tensor:
    """Index ``[Q]`` of the nearest candidate pose for each query pose (:func:`pose_distance`).

    ``queries`` ``[Q, 3, 4]``, ``candidates`` ``[N, 3, 4]`` (float32; candidates follow the queries' device).
    ``extent`` defaults to ``scene_extent(candidates)``, the unit of the fix rounds.
    """
    if candidates.shape[0] == 0:
        raise ValueError("nearest_views: there are no candidate (training) poses to choose a reference from")
    queries = queries.float()
    candidates = candidates.float().to(queries.device)
    if extent is None:
        extent = scene_extent(candidates)
    return pose_distance(queries, candidates, float(extent), rotation_weight).argmin(dim=1)


def _slerp_rotation(rot_a: Tensor, rot_b: Tensor, frac: Tensor) -> Tensor:
    """Rotate ``rot_a`` toward ``rot_b`` by ``frac`` of their relative rotation (axis-angle), ``[N, 3, 3]``."""
    rel = rot_a.transpose(-1, -2) @ rot_b  # rotation taking a to b, in a's frame
    angle = rotation_angle(torch.eye(3, dtype=rel.dtype, device=rel.device).expand_as(rel), rel)  # [N]
    axis = torch.stack([rel[:, 2, 1] - rel[:, 1, 2], rel[:, 0, 2] - rel[:, 2, 0], rel[:, 1, 0] - rel[:, 0, 1]], -1)
    sin = torch.sin(angle)
    small = sin.abs() < 1e-7
    axis = axis / (2 * sin.masked_fill(small, 1.0))[:, None]
    near_pi = small & (angle > 1.0)
    if near_pi.any():  # the antisymmetric part vanishes at pi: take the axis from the symmetric part instead
        sym = (rel[near_pi] + torch.eye(3, dtype=rel.dtype, device=rel.device)) / 2
        col = sym.diagonal(dim1=-2, dim2=-1).argmax(-1)
        picked = sym[torch.arange(sym.shape[0]), :, col]
        axis[near_pi] = picked / picked.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    theta = (angle * frac)[:, None]  # [N, 1]
    k = torch.zeros_like(rel)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(-1, -2)
    eye = torch.eye(3, dtype=rel.dtype, device=rel.device).expand_as(rel)
    step = eye + torch.sin(theta)[..., None] * k + (1 - torch.cos(theta))[..., None] * (k @ k)  # Rodrigues
    step = torch.where(small[:, None, None] & ~near_pi[:, None, None], eye, step)
    return rot_a @ step


@dataclass
class PoseShiftResult:
    """Output of :func:`shift_poses`."""

    poses: Tensor
    """New poses ``[T, 3, 4]``, one per target."""
    arrived: Tensor
    """``[T]`` bool: the pose now equals its target."""


def shift_poses(
    current: Tensor,
    targets: Tensor,
    step_fraction: float,
    extent: float,
    max_rotation_step: float = float("inf"),
) -> PoseShiftResult:
    """Move each ``current[i]`` toward ``targets[i]`` by at most ``step_fraction * extent`` world units.

    The rotation is slerped by the same fraction of the remaining path as the translation, and by at most
    ``max_rotation_step`` radians, so a pose with a tiny offset but a large turn still arrives gradually. A pose
    whose remaining translation and rotation both fit within one step snaps to its target (so it always arrives
    after ``ceil(max(dist / step, angle / max_rotation_step))`` rounds).

    ``current`` / ``targets``: ``[T, 3, 4]`` (``[T, 4, 4]`` accepted).
    """
    if current.shape[0] != targets.shape[0]:
        raise ValueError(f"shift_poses: {current.shape[0]} current poses for {targets.shape[0]} targets")
    if step_fraction <= 0:
        raise ValueError(f"shift_poses: step_fraction must be > 0, got {step_fraction}")
    cur, tgt = current[:, :3, :4].double(), targets[:, :3, :4].double()
    step = step_fraction * extent
    delta = tgt[:, :, 3] - cur[:, :, 3]  # [T, 3]
    dist = delta.norm(dim=-1)  # [T]
    angle = rotation_angle(cur[:, :, :3], tgt[:, :, :3])  # [T]
    frac_t = torch.where(dist > step, step / dist.clamp_min(1e-12), torch.ones_like(dist))
    frac_r = torch.where(angle > max_rotation_step, max_rotation_step / angle.clamp_min(1e-12), torch.ones_like(angle))
    frac = torch.minimum(frac_t, frac_r)
    arrived = frac >= 1.0
    out = torch.empty_like(cur)
    out[:, :, 3] = cur[:, :, 3] + frac[:, None] * delta
    out[:, :, :3] = _slerp_rotation(cur[:, :, :3], tgt[:, :, :3], frac)
    out[arrived] = tgt[arrived]
    return PoseShiftResult(poses=out.to(current.dtype), arrived=arrived)
