"""One encode at a fixed Gaussian budget: prune to the ``n`` most important, reduce SH, quantize, Morton-sort and
entropy-code every stream into a container (steps 1-6 of ``codec.py``'s pipeline, for one budget).

``encode_budget`` also returns the integer codes so the encoder can rebuild its dequantized Gaussians through the
decoder's own ``decode.reconstruct`` (the bit-exact round trip).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nifi_ns.codec import positions, vq
from nifi_ns.codec.config import CodecConfig
from nifi_ns.codec.container import FORMAT_NAME, pack_container
from nifi_ns.codec.entropy import encode_stream, pack_varbits
from nifi_ns.codec.quantize import (
    bit_length,
    color_residuals,
    kmeans,
    morton_encode,
    opacity_quantize,
    opacity_table,
    position_range,
    quat_quantize,
    uniform_quantize,
    uniform_range,
)
from nifi_ns.io.gaussians import GaussianSplat, num_sh_rest


def f32_list(a: np.ndarray) -> list[float]:
    """float32 values as Python floats (exact through the JSON header)."""
    return [float(v) for v in np.asarray(a, np.float32)]


def encode_budget(splat: GaussianSplat, order: np.ndarray, n: int, cfg: CodecConfig, extra: dict):
    """Container for the `n` most important Gaussians, its header, the input row of each stored Gaussian
    (container order) and the integer codes (for the encoder-side reconstruction)."""
    source_index = np.sort(order[:n])
    kept = splat.subset(source_index)
    degree = kept.sh_degree if cfg.sh_degree is None else min(cfg.sh_degree, kept.sh_degree)
    kept = kept.with_sh_degree(degree)
    coder = cfg.entropy_coder

    pos_values, warp = kept.means, None
    if cfg.position_contraction:
        centre, warp_scale = positions.fit(kept.means)
        warp = {"centre": f32_list(centre), "scale": float(warp_scale)}
        pos_values = positions.contract(kept.means, centre, warp_scale)
    pos_lo, pos_hi, far = position_range(pos_values)  # far-away outliers are stored exactly, off the grid
    qpos = uniform_quantize(pos_values, pos_lo, pos_hi, cfg.position_bits)
    morton = morton_encode(qpos)
    perm = np.argsort(morton, kind="stable")
    kept, morton, source_index, far = kept.subset(perm), morton[perm], source_index[perm], far[perm]
    deltas = np.diff(morton, prepend=np.uint64(0)).astype(np.uint64)
    classes = bit_length(deltas)
    lengths = np.maximum(classes - 1, 0)
    mantissas = np.where(classes > 0, deltas - (np.uint64(1) << lengths.astype(np.uint64)), np.uint64(0))
    codes: dict[str, np.ndarray] = {"position": qpos[perm]}
    sections: dict[str, bytes] = {
        "position_class": encode_stream(classes, 7, None, coder),
        "position_bits": pack_varbits(mantissas, lengths),
    }
    header: dict[str, Any] = {
        "format": FORMAT_NAME,
        "num_gaussians": int(n),
        "sh_degree": int(degree),
        "coder": coder,
        "position": {"bits": cfg.position_bits, "lo": f32_list(pos_lo), "hi": f32_list(pos_hi)},
        "opacity": {"bits": cfg.opacity_bits},
    }
    if warp is not None:
        header["position"]["contraction"] = warp
    if far.any():  # outlier positions as (uint32 index, float32 xyz), container order
        far_index = np.flatnonzero(far).astype(np.int64)
        far_xyz = kept.means[far_index].astype(np.float32)
        header["position"]["outliers"] = int(far_index.size)
        sections["position_outlier_index"] = far_index.astype("<u4").tobytes()
        sections["position_outlier_xyz"] = far_xyz.astype("<f4").tobytes()
        codes.update(position_outlier_index=far_index, position_outlier_xyz=far_xyz)
    if cfg.cov_codebook_size == 0:
        header["rotation"] = {"bits": cfg.rotation_bits}

    if cfg.cov_codebook_size > 0:  # version 2: joint (scale, rotation) codebook
        book, labels = vq.fit_covariance(
            kept.scales, kept.quats, cfg.cov_codebook_size, cfg.vq_iters, cfg.kmeans_sample, cfg.seed
        )
        header["cov_vq"] = {"codebook_size": int(book.shape[0]), "label_bits": vq.label_bits(book.shape[0])}
        sections["cov_codebook"] = book.astype("<f2").tobytes()
        sections["cov_labels"] = encode_stream(labels, header["cov_vq"]["label_bits"], None, coder)
        codes.update(cov_codebook=book, cov_labels=labels)
        opacity_context = vq.scale_context(book, labels)
    else:
        s_lo, s_hi = uniform_range(kept.scales, cfg.clip_percentile)
        header["scale"] = {"bits": cfg.scale_bits, "lo": f32_list(s_lo), "hi": f32_list(s_hi)}
        qs = uniform_quantize(kept.scales, s_lo, s_hi, cfg.scale_bits)
        ri, qr = quat_quantize(kept.quats, cfg.rotation_bits)
        codes.update(scale=qs, rotation_index=ri, rotation=qr)
        for i in range(3):  # each channel conditioned on the previous one (scales of one Gaussian are correlated)
            sections[f"scale_{i}"] = encode_stream(qs[:, i], cfg.scale_bits, qs[:, i - 1] if i else None, coder)
        sections["rot_index"] = encode_stream(ri, 2, None, coder)
        for i in range(3):
            sections[f"rot_{i}"] = encode_stream(qr[:, i], cfg.rotation_bits, qr[:, i - 1] if i else ri, coder)
        opacity_context = qs.sum(1)  # big splats: other opacities
    qo = opacity_quantize(kept.opacities[:, 0], cfg.opacity_bits)
    codes.update(opacity=qo, opacity_table=opacity_table(cfg.opacity_bits))
    sections["opacity"] = encode_stream(qo, cfg.opacity_bits, opacity_context, coder)
    sections["opacity_table"] = codes["opacity_table"].astype("<f4").tobytes()
    if cfg.color_codebook_size > 0:
        book, labels = vq.fit_color(kept.features_dc, cfg.color_codebook_size, cfg.vq_iters, cfg.kmeans_sample,
                                    cfg.seed)
        header["color_vq"] = {"codebook_size": int(book.shape[0]), "label_bits": vq.label_bits(book.shape[0])}
        sections["color_codebook"] = book.astype("<f2").tobytes()
        sections["color_labels"] = encode_stream(labels, header["color_vq"]["label_bits"], None, coder)
        codes.update(color_codebook=book, color_labels=labels)
    else:
        c_lo, c_hi = uniform_range(kept.features_dc, cfg.clip_percentile)
        header["color"] = {"bits": cfg.color_bits, "lo": f32_list(c_lo), "hi": f32_list(c_hi)}
        qc = uniform_quantize(kept.features_dc, c_lo, c_hi, cfg.color_bits)
        codes["color"] = qc
        residuals = color_residuals(qc, cfg.color_bits)
        for i, residual in enumerate(residuals):
            sections[f"color_{i}"] = encode_stream(
                residual, cfg.color_bits + (i > 0), residuals[i - 1] if i else None, coder
            )

    if degree > 0:
        dim = 3 * num_sh_rest(degree)
        codebook, labels = kmeans(
            kept.features_rest.reshape(n, dim), cfg.sh_codebook_size, cfg.kmeans_iters, cfg.kmeans_sample, cfg.seed
        )
        label_bits = max(1, int(codebook.shape[0] - 1).bit_length())
        header["sh_rest"] = {"codebook_size": int(codebook.shape[0]), "dim": dim, "label_bits": label_bits}
        sections["sh_codebook"] = codebook.astype("<f2").tobytes()
        sections["sh_labels"] = encode_stream(labels, label_bits, None, coder)
        codes.update(sh_codebook=codebook, sh_labels=labels)
    header.update(extra)
    return pack_container(header, sections), header, source_index, codes
