"""Quantizers, k-means codebooks and Morton ordering.

Every dequantizer is pure float32 arithmetic on integer codes plus float32 parameters stored in the
container (or a stored table), so encoder-side and decoder-side reconstructions are bit-identical.
"""

from __future__ import annotations

import numpy as np

from nifi_ns.codec.errors import NixFormatError

F32 = np.float32


def uniform_range(x: np.ndarray, clip_percentile: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-column [lo, hi] (float32); percentile clipping keeps rare outliers from stretching the grid."""
    if x.shape[0] == 0:
        return np.zeros(x.shape[1], F32), np.zeros(x.shape[1], F32)
    if clip_percentile > 0:
        lo, hi = np.percentile(x, [clip_percentile, 100 - clip_percentile], axis=0)
    else:
        lo, hi = x.min(0), x.max(0)
    return lo.astype(F32), np.maximum(hi, lo).astype(F32)


OUTLIER_QUANTILE = 0.1  # percent at each end: the bulk's box
OUTLIER_STRETCH = 256.0  # a box this many times wider than the bulk's would leave the bulk ~8 bits fewer


def position_range(means: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid box of the positions and a mask of outliers stored outside the grid.

    Normally the bounding box and no outliers. When a few far-away Gaussians (a floater at 1e30) would stretch the
    box more than `OUTLIER_STRETCH` times the extent of the bulk (the [0.1, 99.9] percentile box) on some axis,
    the grid spans the bulk box widened by half its extent on each side, and the Gaussians outside it are outliers,
    kept at float32 precision separately.
    """
    lo, hi = uniform_range(means)
    outliers = np.zeros(means.shape[0], bool)
    if means.shape[0] < 2:
        return lo, hi, outliers
    q_lo, q_hi = np.percentile(means.astype(np.float64), [OUTLIER_QUANTILE, 100 - OUTLIER_QUANTILE], axis=0)
    bulk = q_hi - q_lo
    full = hi.astype(np.float64) - lo.astype(np.float64)
    if not (full > OUTLIER_STRETCH * np.maximum(bulk, 1e-30)).any():
        return lo, hi, outliers
    margin = 0.5 * bulk  # the grid spans twice the bulk (1 bit): only the far-away Gaussians leave it
    lo = (q_lo - margin).astype(F32)
    hi = np.maximum((q_hi + margin).astype(F32), lo)
    outliers = ((means < lo) | (means > hi)).any(axis=1)
    return lo, hi, outliers


def uniform_step(lo: np.ndarray, hi: np.ndarray, bits: int) -> np.ndarray:
    return ((hi.astype(F32) - lo.astype(F32)) / F32((1 << bits) - 1)).astype(F32)


def uniform_quantize(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, bits: int) -> np.ndarray:
    step = uniform_step(lo, hi, bits).astype(np.float64)
    safe = np.where(step > 0, step, 1.0)
    q = np.rint((x.astype(np.float64) - lo) / safe)
    return np.clip(np.where(step > 0, q, 0), 0, (1 << bits) - 1).astype(np.int64)


def uniform_dequantize(q: np.ndarray, lo: np.ndarray, hi: np.ndarray, bits: int) -> np.ndarray:
    return (lo.astype(F32) + q.astype(F32) * uniform_step(lo, hi, bits)).astype(F32)


def opacity_table(bits: int) -> np.ndarray:
    """Logit of the bin centres of a uniform grid on sigmoid(opacity) in (0, 1); stored in the container."""
    t = (np.arange(1 << bits, dtype=np.float64) + 0.5) / (1 << bits)
    return np.log(t / (1.0 - t)).astype(F32)


def opacity_quantize(logits: np.ndarray, bits: int) -> np.ndarray:
    alpha = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return np.clip(np.floor(alpha * (1 << bits)), 0, (1 << bits) - 1).astype(np.int64)


_SMALL = np.full(3, 1.0 / np.sqrt(2.0), dtype=F32)  # |non-largest component| of a unit quaternion <= 1/sqrt(2)
_SLOTS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])  # where the three stored components go


def quat_quantize(quats: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Smallest-three: normalise, take the sign making the largest |component| positive, store its index
    (2 bits) and the other three components on a uniform grid over [-1/sqrt2, 1/sqrt2]. Returns ([N], [N, 3])."""
    q = quats.astype(np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    index = np.abs(q).argmax(1)
    rows = np.arange(q.shape[0])
    q = np.where(q[rows, index][:, None] < 0, -q, q)
    small = q[rows[:, None], _SLOTS[index]]
    return index.astype(np.int64), uniform_quantize(small, -_SMALL, _SMALL, bits)


def quat_dequantize(index: np.ndarray, codes: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of `quat_quantize`: the largest component is sqrt(1 - a^2 - b^2 - c^2) (float32, IEEE-exact)."""
    abc = uniform_dequantize(codes, -_SMALL, _SMALL, bits)
    a, b, c = abc[:, 0], abc[:, 1], abc[:, 2]
    largest = np.sqrt(np.maximum(F32(0), F32(1) - (a * a + b * b + c * c))).astype(F32)
    out = np.empty((abc.shape[0], 4), F32)
    rows = np.arange(abc.shape[0])
    out[rows, index] = largest
    for j in range(3):
        out[rows, _SLOTS[index][:, j]] = abc[:, j]
    return out


def kmeans(x: np.ndarray, k: int, iters: int = 10, sample: int = 32768, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd k-means (L2) fitted on a random subsample; returns (float16 codebook [k', D], labels [N]).

    Labels are assigned against the float16 codebook that is actually stored, so the decoder's lookup is exact.
    """
    import torch

    n = x.shape[0]
    rng = np.random.default_rng(seed)
    fit = x[rng.choice(n, min(n, sample), replace=False)] if n > sample else x
    k = max(1, min(k, fit.shape[0]))
    fit_t = torch.from_numpy(np.ascontiguousarray(fit, dtype=F32))
    cent = fit_t[torch.from_numpy(rng.choice(fit_t.shape[0], k, replace=False))].clone()
    for _ in range(iters):
        labels = _assign(fit_t, cent)
        sums = torch.zeros_like(cent).index_add_(0, labels, fit_t)
        counts = torch.bincount(labels, minlength=k).to(fit_t.dtype)
        cent = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], cent)
    codebook = cent.numpy().astype(np.float16)
    labels = _assign(torch.from_numpy(np.ascontiguousarray(x, dtype=F32)), torch.from_numpy(codebook.astype(F32)))
    return codebook, labels.numpy().astype(np.int64)


def _assign(x, cent, chunk: int = 16384):
    import torch

    c2 = (cent * cent).sum(1)
    out = []
    for start in range(0, x.shape[0], chunk):
        xb = x[start : start + chunk]
        out.append((c2[None, :] - 2.0 * xb @ cent.T).argmin(1))  # |x|^2 is constant per row
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def _spread3(v: np.ndarray) -> np.ndarray:
    """Insert two zero bits between each of the low 21 bits (Morton interleave helper)."""
    v = v.astype(np.uint64) & np.uint64(0x1FFFFF)
    for shift, mask in (
        (32, 0x1F00000000FFFF),
        (16, 0x1F0000FF0000FF),
        (8, 0x100F00F00F00F00F),
        (4, 0x10C30C30C30C30C3),
        (2, 0x1249249249249249),
    ):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def _compact3(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint64) & np.uint64(0x1249249249249249)
    for shift, mask in (
        (2, 0x10C30C30C30C30C3),
        (4, 0x100F00F00F00F00F),
        (8, 0x1F0000FF0000FF),
        (16, 0x1F00000000FFFF),
        (32, 0x1FFFFF),
    ):
        v = (v ^ (v >> np.uint64(shift))) & np.uint64(mask)
    return v


def morton_encode(q: np.ndarray) -> np.ndarray:
    """[N, 3] integer grid coordinates (< 2^21) -> [N] uint64 Morton codes."""
    return _spread3(q[:, 0]) | (_spread3(q[:, 1]) << np.uint64(1)) | (_spread3(q[:, 2]) << np.uint64(2))


def morton_decode(codes: np.ndarray) -> np.ndarray:
    return np.stack([_compact3(codes >> np.uint64(a)) for a in range(3)], axis=1).astype(np.int64)


def bit_length(v: np.ndarray) -> np.ndarray:
    """Vectorised int.bit_length for uint64."""
    v = v.astype(np.uint64)
    out = np.zeros(v.shape, np.int64)
    for b in range(64):
        out[(v >> np.uint64(b)) != 0] = b + 1
    return out


def color_residuals(qc: np.ndarray, bits: int) -> list[np.ndarray]:
    """Channel 0 as is; channels 1 and 2 as differences to the previous channel's code (offset to >= 0).

    SH DC channels are strongly correlated (grey-ish colours), so the differences have ~1-1.5 bits less entropy.
    """
    offset = (1 << bits) - 1
    return [qc[:, 0], qc[:, 1] - qc[:, 0] + offset, qc[:, 2] - qc[:, 1] + offset]


def color_from_residuals(residuals: list[np.ndarray], bits: int) -> np.ndarray:
    offset = (1 << bits) - 1
    q0 = residuals[0]
    q1 = residuals[1] - offset + q0
    q2 = residuals[2] - offset + q1
    qc = np.stack([q0, q1, q2], axis=1)
    if qc.size and (qc.min() < 0 or qc.max() > offset):
        raise NixFormatError("corrupt container: colour residuals decode outside the colour grid")
    return qc

