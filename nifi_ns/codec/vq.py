"""Vector quantisation stages of the Nix codec (container version 2): one k-means codebook shared by many Gaussians.

* covariance VQ: each Gaussian's (log-scale x3, unit quaternion x4) is replaced by the nearest entry of a codebook
  fitted on the kept Gaussians; the container stores the float16 codebook and one entropy-coded label per Gaussian.
  A joint codebook exploits that shape and orientation are correlated (isotropic splats need no orientation).
* colour VQ: the SH DC colour (3 values) through a codebook the same way.

At the sizes NiFi targets (< 0.5 MB) a label costs ~9-11 bits instead of ~33 (scale + rotation grids) or ~13
(colour grids), so about 1.5x more Gaussians fit in the same container (measured on the guitar splat in
docs/codec.md). Decoding is a table lookup on the stored float16 codebook (plus a float32 normalisation of the
quaternion), shared by encoder and decoder, so round trips stay bit-exact.
"""
from __future__ import annotations

import numpy as np

from nifi_ns.codec.errors import NixFormatError
from nifi_ns.codec.quantize import kmeans

F32 = np.float32
QUAT_WEIGHT = 1.0
"""Weight of the quaternion components against log-scales in the covariance k-means distance."""


def canonical_quats(quats: np.ndarray) -> np.ndarray:
    """Unit quaternions with w >= 0 (q and -q are the same rotation)."""
    q = quats.astype(np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    return np.where(q[:, :1] < 0, -q, q).astype(F32)


def label_bits(size: int) -> int:
    return max(1, int(size - 1).bit_length())


def fit_covariance(scales: np.ndarray, quats: np.ndarray, size: int, iters: int, sample: int, seed: int):
    """(float16 codebook [K, 7] = log-scales + weighted quaternion, labels [N])."""
    x = np.concatenate([scales.astype(F32), QUAT_WEIGHT * canonical_quats(quats)], axis=1)
    return kmeans(x, size, iters, sample, seed)


def covariance_from_codebook(codebook: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log-scales [N, 3], unit quaternions [N, 4]) of each label's codebook entry (float32, deterministic)."""
    table = codebook.astype(F32).reshape(-1, 7)
    scales = table[:, :3]
    q = table[:, 3:] / F32(QUAT_WEIGHT)
    norm = np.sqrt((q * q).sum(1, keepdims=True)).astype(F32)
    q = np.where(norm > 0, q / np.maximum(norm, F32(1e-12)), np.array([1, 0, 0, 0], F32)).astype(F32)
    return scales[labels].astype(F32), q[labels].astype(F32)


def scale_context(codebook: np.ndarray, labels: np.ndarray, buckets: int = 16) -> np.ndarray:
    """Per-Gaussian context for the opacity stream: the rank bucket of its codebook entry's summed log-scale."""
    total = codebook.astype(F32).reshape(-1, 7)[:, :3].sum(1)
    rank = np.argsort(np.argsort(total, kind="stable"), kind="stable")
    bucket = (rank * buckets) // max(len(total), 1)
    return bucket[labels].astype(np.int64)


def fit_color(dc: np.ndarray, size: int, iters: int, sample: int, seed: int):
    return kmeans(dc.astype(F32), size, iters, sample, seed)


def color_from_codebook(codebook: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return codebook.astype(F32).reshape(-1, 3)[labels].astype(F32)


def read_codebook(data: bytes, size: int, dim: int, name: str) -> np.ndarray:
    book = np.frombuffer(data, dtype="<f2")
    if book.size != size * dim:
        raise NixFormatError(f"corrupt container: {name} codebook holds {book.size} values, expected {size}x{dim}")
    if not np.isfinite(book).all():
        raise NixFormatError(f"corrupt container: {name} codebook has non-finite entries")
    return book.reshape(size, dim)


def check_labels(labels: np.ndarray, size: int, name: str) -> np.ndarray:
    if labels.max(initial=0) >= size:
        raise NixFormatError(f"corrupt container: {name} label beyond the codebook")
    return labels
