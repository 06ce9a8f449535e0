"""Pose interpolation: rotations <-> quaternions, slerp, Catmull-Rom centres, trajectories through poses.

All poses are nerfstudio camera-to-world matrices ``[..., 3, 4]`` (OpenGL convention, dataparser-normalised world).
Used by ``difix-trajectory`` (a smooth video through the training cameras).
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from difix_ns.geometry.poses import pose_distance, scene_extent


# ---------------------------------------------------------------- rotations <-> quaternions (w, x, y, z)


def matrix_to_quaternion(rot: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] -> unit quaternions [..., 4] (w, x, y, z), w >= 0."""
    m = rot.double()
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # Each candidate is numerically best where its own component is largest (Shepperd's method).
    qw = torch.sqrt((1 + m00 + m11 + m22).clamp_min(0)) / 2
    qx = torch.sqrt((1 + m00 - m11 - m22).clamp_min(0)) / 2
    qy = torch.sqrt((1 - m00 + m11 - m22).clamp_min(0)) / 2
    qz = torch.sqrt((1 - m00 - m11 + m22).clamp_min(0)) / 2
    cands = torch.stack(
        [
            torch.stack([qw, (m[..., 2, 1] - m[..., 1, 2]) / (4 * qw), (m[..., 0, 2] - m[..., 2, 0]) / (4 * qw),
                         (m[..., 1, 0] - m[..., 0, 1]) / (4 * qw)], -1),
            torch.stack([(m[..., 2, 1] - m[..., 1, 2]) / (4 * qx), qx, (m[..., 0, 1] + m[..., 1, 0]) / (4 * qx),
                         (m[..., 0, 2] + m[..., 2, 0]) / (4 * qx)], -1),
            torch.stack([(m[..., 0, 2] - m[..., 2, 0]) / (4 * qy), (m[..., 0, 1] + m[..., 1, 0]) / (4 * qy), qy,
                         (m[..., 1, 2] + m[..., 2, 1]) / (4 * qy)], -1),
            torch.stack([(m[..., 1, 0] - m[..., 0, 1]) / (4 * qz), (m[..., 0, 2] + m[..., 2, 0]) / (4 * qz),
                         (m[..., 1, 2] + m[..., 2, 1]) / (4 * qz), qz], -1),
        ],
        dim=-2,
    )  # [..., 4 candidates, 4]
    best = torch.stack([qw, qx, qy, qz], -1).argmax(-1)
    quat = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    quat = torch.where(quat[..., :1] < 0, -quat, quat)
    return (quat / quat.norm(dim=-1, keepdim=True)).to(rot.dtype)


def quaternion_to_matrix(quat: Tensor) -> Tensor:
    """Quaternions [..., 4] (w, x, y, z; normalised here) -> rotation matrices [..., 3, 3]."""
    q = quat / quat.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        dim=-2,
    )


def slerp(q0: Tensor, q1: Tensor, t: Tensor) -> Tensor:
    """Shortest-arc spherical interpolation. q0, q1: [4]; t: [T] in [0, 1]. Returns [T, 4]."""
    q0 = q0 / q0.norm()
    q1 = q1 / q1.norm()
    dot = torch.dot(q0, q1)
    if dot < 0:  # q and -q are the same rotation: take the short way round
        q1, dot = -q1, -dot
    t = t[:, None].to(q0.dtype)
    if dot > 0.9995:  # nearly parallel: linear interpolation is exact enough and avoids 0/0
        out = q0 + t * (q1 - q0)
    else:
        theta = torch.arccos(dot.clamp(-1.0, 1.0))
        out = (torch.sin((1 - t) * theta) * q0 + torch.sin(t * theta) * q1) / torch.sin(theta)
    return out / out.norm(dim=-1, keepdim=True)


# ---------------------------------------------------------------- trajectories


def catmull_rom(points: Tensor, segment: int, t: Tensor) -> Tensor:
    """Uniform Catmull-Rom spline through ``points`` [N, 3] on segment ``segment`` (points[i] -> points[i+1]).

    The end tangents use mirrored neighbours, so the curve passes through every camera centre. t: [T] -> [T, 3].
    """
    n = points.shape[0]
    p1, p2 = points[segment], points[segment + 1]
    p0 = points[segment - 1] if segment > 0 else 2 * p1 - p2
    p3 = points[segment + 2] if segment + 2 < n else 2 * p2 - p1
    t = t[:, None].to(points.dtype)
    t2, t3 = t * t, t * t * t
    return 0.5 * (
        2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t3
    )


def num_trajectory_frames(num_poses: int, n_interp: int) -> int:
    """Frame count of :func:`interpolate_poses`: ``(num_poses - 1) * n_interp + 1``."""
    return (num_poses - 1) * n_interp + 1


def interpolate_poses(
    c2w: Tensor, n_interp: int, translation: Literal["linear", "spline"] = "linear"
) -> tuple[Tensor, Tensor]:
    """Smooth trajectory through consecutive poses.

    Every consecutive pair (i, i+1) contributes ``n_interp`` frames at t = 0, 1/n_interp, ..., (n_interp-1)/n_interp
    (the first is pose i itself); the last pose is appended once. So ``N`` poses give exactly
    ``(N - 1) * n_interp + 1`` frames, and every input pose appears in the trajectory (at frame i * n_interp).
    Rotations are slerped; translations are linear or a Catmull-Rom spline through the camera centres.

    c2w: [N, 3, 4] with N >= 2, n_interp >= 1. Returns (poses [F, 3, 4], segment position [F] as float i + t).
    """
    if c2w.ndim != 3 or c2w.shape[-2:] != (3, 4):
        raise ValueError(f"interpolate_poses: expected camera-to-world poses [N, 3, 4], got {tuple(c2w.shape)}")
    if c2w.shape[0] < 2:
        raise ValueError(f"interpolate_poses: need at least 2 poses to interpolate, got {c2w.shape[0]}")
    if n_interp < 1:
        raise ValueError(f"interpolate_poses: n_interp must be >= 1, got {n_interp}")
    poses = c2w.double()
    quats = matrix_to_quaternion(poses[:, :3, :3])
    centres = poses[:, :3, 3]
    t = torch.arange(n_interp, dtype=torch.float64) / n_interp
    frames, where = [], []
    for i in range(poses.shape[0] - 1):
        rot = quaternion_to_matrix(slerp(quats[i], quats[i + 1], t))  # [T, 3, 3]
        if translation == "spline":
            pos = catmull_rom(centres, i, t)
        elif translation == "linear":
            pos = centres[i] + t[:, None] * (centres[i + 1] - centres[i])
        else:
            raise ValueError(f"interpolate_poses: translation must be 'linear' or 'spline', got {translation!r}")
        frames.append(torch.cat([rot, pos[:, :, None]], dim=-1))
        where.append(i + t)
    frames.append(poses[-1:])
    where.append(torch.tensor([float(poses.shape[0] - 1)], dtype=torch.float64))
    return torch.cat(frames).to(c2w.dtype), torch.cat(where)


def order_by_proximity(c2w: Tensor) -> Tensor:
    """Greedy nearest-neighbour ordering of poses (start at pose 0) for smoother trajectories. Returns indices [N]."""
    c2w = c2w.float()
    dist = pose_distance(c2w, c2w, scene_extent(c2w))  # translation in scene extents + 1 x angle
    order = [0]
    remaining = set(range(1, c2w.shape[0]))
    while remaining:
        last = order[-1]
        nxt = min(remaining, key=lambda j: float(dist[last, j]))
        order.append(nxt)
        remaining.remove(nxt)
    return torch.tensor(order, dtype=torch.long)
