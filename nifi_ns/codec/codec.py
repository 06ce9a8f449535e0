"""Nix: the rate-controlled codec for splatfacto Gaussians (prune -> SH reduction -> quantize -> Morton -> rANS).

Pipeline (`compress`):
1. rank Gaussians by importance (`importance.py`: opacity x transmittance accumulated over the training cameras,
   or 14 virtual views) and keep the top `max_gaussians` (the rate knob);
2. drop SH bands above `sh_degree`;
3. quantize: positions on a uniform grid of `position_bits` per axis over the kept Gaussians' bounding box
   (precision = extent / (2^bits - 1)); log-scales and SH DC on per-channel uniform grids (ranges clipped at a
   small percentile); quaternions (normalised, w >= 0) per component on [-1, 1]; opacity on a uniform grid of
   sigmoid(opacity); SH rest by a k-means codebook (float16 centroids + one label per Gaussian);
4. sort by the Morton code of the quantized position; positions are stored as deltas between consecutive sorted
   codes (an Elias-gamma-like split: the delta's bit length is entropy coded, the bits below its leading one are
   stored raw), so the position cost falls with spatial density;
5. entropy-code every other symbol stream with rANS and a per-stream histogram model (`entropy.py`);
6. write the self-describing, CRC-checked container (`container.py`).

Decoding only reads codes and stored parameters; encoder and decoder share `_reconstruct`, so
`decompress(blob)` equals the encoder's dequantized Gaussians bit for bit.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from nifi_ns.codec import positions, vq
from nifi_ns.codec.container import pack_container, unpack_container
from nifi_ns.codec.entropy import (
    CODERS,
    decode_stream,
    encode_stream,
    pack_varbits,
    unpack_varbits,
)
from nifi_ns.codec.errors import NixFormatError
from nifi_ns.codec.importance import CameraSet, importance_order
from nifi_ns.codec.validation import check_decoded, validate_header
from nifi_ns.codec.quantize import (
    bit_length,
    kmeans,
    morton_decode,
    morton_encode,
    opacity_quantize,
    opacity_table,
    position_range,
    quat_dequantize,
    quat_quantize,
    uniform_dequantize,
    uniform_quantize,
    uniform_range,
)
from nifi_ns.io.gaussians import GaussianSplat, num_sh_rest
from nifi_ns.io.ply import inria_ply_num_bytes

MB = float(1 << 20)
FORMAT_NAME = "nix-gaussians"


@dataclass
class CodecConfig:
    """Quantization settings of one encode (the Gaussian budget is `max_gaussians`)."""

    max_gaussians: int | None = None
    """Keep at most this many Gaussians (highest importance first); None keeps all."""
    sh_degree: int | None = None
    """Highest SH degree kept (None keeps the input's)."""
    position_bits: int = 16
    """Bits per axis of the position grid over the bounding box (1..21)."""
    scale_bits: int = 7
    """Bits per log-scale axis."""
    rotation_bits: int = 8
    """Bits per quaternion component."""
    opacity_bits: int = 7
    """Bits of the sigmoid(opacity) grid (1..10)."""
    color_bits: int = 7
    """Bits per SH DC channel."""
    sh_codebook_size: int = 1024
    """k-means codebook entries for the SH rest vectors (1..65536)."""
    kmeans_iters: int = 10
    """Lloyd iterations of the SH codebook fit."""
    kmeans_sample: int = 32768
    """The codebook is fitted on at most this many random Gaussians (labels are assigned for all)."""
    clip_percentile: float = 0.05
    """Scale / colour grid ranges span [p, 100 - p] percentiles; values outside are clamped."""
    entropy_coder: str = "auto"
    """'rans' (constriction range-ANS, per-stream histogram models, conditioned on the previous channel),
    'lzma' (stdlib baseline on the same symbols) or 'auto' (per stream, whichever is shorter)."""
    seed: int = 0
    """Seed of the k-means initialisation."""
    cov_codebook_size: int = 0
    """> 0: vector-quantise (log-scale, rotation) jointly with a k-means codebook of this many entries instead of
    the scale / rotation grids (container version 2, `vq.py`); 0 keeps the grids."""
    color_codebook_size: int = 0
    """> 0: vector-quantise the SH DC colour with a k-means codebook of this many entries; 0 keeps the grid."""
    position_contraction: bool = False
    """Quantize positions on a log-radial warp about the scene centre (`positions.py`, container version 2): finer
    steps near the centre, coarser far away, so few position bits still place the foreground accurately."""
    vq_iters: int = 12
    """Lloyd iterations of the covariance / colour codebook fits."""

    def __post_init__(self) -> None:
        limits = {"position_bits": 21, "scale_bits": 12, "rotation_bits": 12, "opacity_bits": 10, "color_bits": 12}
        for name, top in limits.items():
            value = getattr(self, name)
            if not 1 <= value <= top:
                raise ValueError(f"CodecConfig.{name}={value} must be in [1, {top}]")
        for name in ("cov_codebook_size", "color_codebook_size"):
            if not 0 <= getattr(self, name) <= 65536:
                raise ValueError(f"CodecConfig.{name}={getattr(self, name)} must be in [0, 65536]")
        if not 1 <= self.sh_codebook_size <= 65536:
            raise ValueError(f"CodecConfig.sh_codebook_size={self.sh_codebook_size} must be in [1, 65536]")
        if self.max_gaussians is not None and self.max_gaussians < 1:
            raise ValueError(f"CodecConfig.max_gaussians={self.max_gaussians} must be >= 1")
        if self.sh_degree is not None and not 0 <= self.sh_degree <= 4:
            raise ValueError(f"CodecConfig.sh_degree={self.sh_degree} must be in [0, 4]")
        if self.entropy_coder not in CODERS:
            raise ValueError(f"CodecConfig.entropy_coder={self.entropy_coder!r} must be one of {CODERS}")
        if not 0 <= self.clip_percentile < 50:
            raise ValueError(f"CodecConfig.clip_percentile={self.clip_percentile} must be in [0, 50)")


@dataclass(frozen=True)
class RatePreset:
    target_mb: float
    """Container size aimed at (the paper's Mip-NeRF360 HAC++ size at this lambda)."""
    config: CodecConfig


# NiFi convention: larger lambda = smaller file. Targets are the Table-1 Mip-NeRF360 sizes; bits and SH degree
# fall with the rate and the Gaussian budget is searched so the container meets the target.
RATE_PRESETS: dict[float, RatePreset] = {
    0.1: RatePreset(
        1.15,
        CodecConfig(
            sh_degree=1,
            position_bits=14,
            position_contraction=True,
            scale_bits=6,
            rotation_bits=5,
            opacity_bits=5,
            color_bits=6,
            sh_codebook_size=1024,
        ),
    ),
    # Below 0.5 MB the Gaussian count matters more than per-attribute precision: coarser grids (~55 instead of
    # ~80 bits per Gaussian) keep ~1.5x more Gaussians at the same size and score better (docs/codec.md, guitar
    # sweep); the compression-aware fine-tune renders through these grids, so it adapts the survivors to them.
    0.5: RatePreset(
        0.36, CodecConfig(
            sh_degree=0, position_bits=13, position_contraction=True, scale_bits=5, rotation_bits=4, opacity_bits=4,
            color_bits=5,
        ),
    ),
    1.0: RatePreset(
        0.22, CodecConfig(
            sh_degree=0, position_bits=12, position_contraction=True, scale_bits=4, rotation_bits=4, opacity_bits=4,
            color_bits=5,
        ),
    ),
}


def rate_preset(rate: float) -> RatePreset:
    for key, preset in RATE_PRESETS.items():
        if math.isclose(float(rate), key, rel_tol=0, abs_tol=1e-9):
            return preset
    raise ValueError(f"rate={rate} is not a preset; choose one of {sorted(RATE_PRESETS)} or use target_mb")


@dataclass
class CompressionReport:
    """What one `compress` produced. Sizes are container bytes; MB = 2^20 bytes."""

    size_bytes: int
    num_gaussians: int
    num_input_gaussians: int
    sh_degree: int
    input_sh_degree: int
    ply_bytes: int
    """Size of the uncompressed INRIA 3DGS PLY of the *input* splat (the ratio's reference)."""
    rate: float | None = None
    target_mb: float | None = None
    encode_seconds: float = 0.0
    section_bytes: dict[str, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def size_mb(self) -> float:
        return self.size_bytes / MB

    @property
    def compression_ratio(self) -> float:
        return self.ply_bytes / self.size_bytes

    @property
    def bits_per_gaussian(self) -> float:
        return 8.0 * self.size_bytes / max(self.num_gaussians, 1)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            size_mb=self.size_mb,
            compression_ratio=self.compression_ratio,
            bits_per_gaussian=self.bits_per_gaussian,
            ply_mb=self.ply_bytes / MB,
        )
        return out

    def summary(self) -> str:
        return (
            f"{self.size_bytes} bytes = {self.size_mb:.4f} MB, {self.num_gaussians}/{self.num_input_gaussians} "
            f"Gaussians, SH degree {self.sh_degree}, {self.compression_ratio:.1f}x smaller than the "
            f"{self.ply_bytes / MB:.2f} MB INRIA PLY, {self.bits_per_gaussian:.1f} bits/Gaussian"
        )


# ---------------------------------------------------------------------------------------------------------------
# one encode at a fixed budget


def _color_residuals(qc: np.ndarray, bits: int) -> list[np.ndarray]:
    """Channel 0 as is; channels 1 and 2 as differences to the previous channel's code (offset to >= 0).

    SH DC channels are strongly correlated (grey-ish colours), so the differences have ~1-1.5 bits less entropy.
    """
    offset = (1 << bits) - 1
    return [qc[:, 0], qc[:, 1] - qc[:, 0] + offset, qc[:, 2] - qc[:, 1] + offset]


def _color_from_residuals(residuals: list[np.ndarray], bits: int) -> np.ndarray:
    offset = (1 << bits) - 1
    q0 = residuals[0]
    q1 = residuals[1] - offset + q0
    q2 = residuals[2] - offset + q1
    qc = np.stack([q0, q1, q2], axis=1)
    if qc.size and (qc.min() < 0 or qc.max() > offset):
        raise NixFormatError("corrupt container: colour residuals decode outside the colour grid")
    return qc


def _f32_list(a: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(a, np.float32)]


def _encode(splat: GaussianSplat, order: np.ndarray, n: int, cfg: CodecConfig, extra: dict):
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
        warp = {"centre": _f32_list(centre), "scale": float(warp_scale)}
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
        "position": {"bits": cfg.position_bits, "lo": _f32_list(pos_lo), "hi": _f32_list(pos_hi)},
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
        header["scale"] = {"bits": cfg.scale_bits, "lo": _f32_list(s_lo), "hi": _f32_list(s_hi)}
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
        book, labels = vq.fit_color(kept.features_dc, cfg.color_codebook_size, cfg.vq_iters, cfg.kmeans_sample, cfg.seed)
        header["color_vq"] = {"codebook_size": int(book.shape[0]), "label_bits": vq.label_bits(book.shape[0])}
        sections["color_codebook"] = book.astype("<f2").tobytes()
        sections["color_labels"] = encode_stream(labels, header["color_vq"]["label_bits"], None, coder)
        codes.update(color_codebook=book, color_labels=labels)
    else:
        c_lo, c_hi = uniform_range(kept.features_dc, cfg.clip_percentile)
        header["color"] = {"bits": cfg.color_bits, "lo": _f32_list(c_lo), "hi": _f32_list(c_hi)}
        qc = uniform_quantize(kept.features_dc, c_lo, c_hi, cfg.color_bits)
        codes["color"] = qc
        residuals = _color_residuals(qc, cfg.color_bits)
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


# ---------------------------------------------------------------------------------------------------------------
# decoding


def _section(sections: dict[str, bytes], name: str) -> bytes:
    if name not in sections:
        raise NixFormatError(f"corrupt container: section '{name}' missing")
    return sections[name]


def _floats(header: dict, key: str, field_name: str, size: int) -> np.ndarray:
    values = np.asarray(header[key][field_name], dtype=np.float32)
    if values.shape != (size,):
        raise NixFormatError(f"header field {key}.{field_name} has shape {values.shape}, expected ({size},)")
    return values


def _reconstruct(header: dict, codes: dict[str, np.ndarray]) -> GaussianSplat:
    """Dequantize integer codes with the header's parameters; the only path from codes to floats (both sides)."""
    n, degree = int(header["num_gaussians"]), int(header["sh_degree"])
    pb = int(header["position"]["bits"])
    means = uniform_dequantize(
        codes["position"], _floats(header, "position", "lo", 3), _floats(header, "position", "hi", 3), pb
    )
    warp = header["position"].get("contraction")
    if warp is not None:
        centre = np.asarray(warp["centre"], dtype=np.float32)
        if centre.shape != (3,) or not float(warp["scale"]) > 0:
            raise NixFormatError("corrupt container: bad position contraction parameters")
        means = positions.expand(means, centre, np.float32(warp["scale"]))
    if "cov_vq" in header:
        scales, quats = vq.covariance_from_codebook(codes["cov_codebook"], codes["cov_labels"])
    else:
        sb, rb = int(header["scale"]["bits"]), int(header["rotation"]["bits"])
        scales = uniform_dequantize(
            codes["scale"], _floats(header, "scale", "lo", 3), _floats(header, "scale", "hi", 3), sb
        )
        quats = quat_dequantize(codes["rotation_index"], codes["rotation"], rb)
    if "color_vq" in header:
        dc = vq.color_from_codebook(codes["color_codebook"], codes["color_labels"])
    else:
        cb = int(header["color"]["bits"])
        dc = uniform_dequantize(
            codes["color"], _floats(header, "color", "lo", 3), _floats(header, "color", "hi", 3), cb
        )
    opacities = codes["opacity_table"][codes["opacity"]][:, None]
    k = num_sh_rest(degree)
    rest = np.zeros((n, k, 3), np.float32)
    if degree > 0:
        size, dim = int(header["sh_rest"]["codebook_size"]), int(header["sh_rest"]["dim"])
        rest = codes["sh_codebook"].astype(np.float32).reshape(size, dim)[codes["sh_labels"]].reshape(n, k, 3)
    if "position_outlier_index" in codes:
        means[codes["position_outlier_index"]] = codes["position_outlier_xyz"]
    return GaussianSplat(means, scales, quats, opacities, dc, rest, degree)


def _read_codes(header: dict, sections: dict[str, bytes]) -> dict[str, np.ndarray]:
    """Entropy-decode every section back to the integer codes / stored tables, validating against the header."""
    if header.get("format") != FORMAT_NAME:
        raise NixFormatError(f"container format {header.get('format')!r} is not {FORMAT_NAME!r}")
    n, degree = int(header["num_gaussians"]), int(header["sh_degree"])
    pb = int(header["position"]["bits"])
    classes = decode_stream(_section(sections, "position_class"), n, 7)
    if classes.max(initial=0) > 3 * pb:
        raise NixFormatError("corrupt container: position delta wider than the position grid")
    lengths = np.maximum(classes - 1, 0)
    mantissas = unpack_varbits(_section(sections, "position_bits"), lengths)
    deltas = np.where(classes > 0, (np.uint64(1) << lengths.astype(np.uint64)) + mantissas, np.uint64(0))
    morton = np.cumsum(deltas.astype(np.uint64), dtype=np.uint64)
    if morton.size and (morton[-1] >> np.uint64(3 * pb) or (morton[1:] < morton[:-1]).any()):
        raise NixFormatError("corrupt container: position codes leave the position grid")
    codes = {"position": morton_decode(morton)}
    outliers = header["position"].get("outliers", 0)
    if outliers:
        index = np.frombuffer(_section(sections, "position_outlier_index"), "<u4").astype(np.int64)
        xyz = np.frombuffer(_section(sections, "position_outlier_xyz"), "<f4").astype(np.float32)
        if index.size != outliers or xyz.size != 3 * outliers:
            raise NixFormatError(f"corrupt container: outlier sections do not hold {outliers} positions")
        if index.max() >= n or (np.diff(index) <= 0).any() or not np.isfinite(xyz).all():
            raise NixFormatError("corrupt container: outlier positions out of order, out of range or non-finite")
        codes.update(position_outlier_index=index, position_outlier_xyz=xyz.reshape(outliers, 3))
    ob = int(header["opacity"]["bits"])
    if "cov_vq" in header:
        size = int(header["cov_vq"]["codebook_size"])
        codes["cov_codebook"] = vq.read_codebook(_section(sections, "cov_codebook"), size, 7, "covariance")
        labels = decode_stream(_section(sections, "cov_labels"), n, int(header["cov_vq"]["label_bits"]))
        codes["cov_labels"] = vq.check_labels(labels, size, "covariance")
        opacity_context = vq.scale_context(codes["cov_codebook"], codes["cov_labels"])
    else:
        sb, rb = int(header["scale"]["bits"]), int(header["rotation"]["bits"])
        scale = []
        for i in range(3):
            scale.append(decode_stream(_section(sections, f"scale_{i}"), n, sb, scale[i - 1] if i else None))
        codes["scale"] = np.stack(scale, 1)
        codes["rotation_index"] = decode_stream(_section(sections, "rot_index"), n, 2)
        rotation = []
        for i in range(3):
            reference = rotation[i - 1] if i else codes["rotation_index"]
            rotation.append(decode_stream(_section(sections, f"rot_{i}"), n, rb, reference))
        codes["rotation"] = np.stack(rotation, 1)
        opacity_context = codes["scale"].sum(1)
    codes["opacity"] = decode_stream(_section(sections, "opacity"), n, ob, opacity_context)
    codes["opacity_table"] = np.frombuffer(_section(sections, "opacity_table"), dtype="<f4").astype(np.float32)
    if codes["opacity_table"].size != 1 << ob:
        raise NixFormatError(
            f"corrupt container: opacity table has {codes['opacity_table'].size} entries, " f"expected {1 << ob}"
        )
    if "color_vq" in header:
        size = int(header["color_vq"]["codebook_size"])
        codes["color_codebook"] = vq.read_codebook(_section(sections, "color_codebook"), size, 3, "colour")
        labels = decode_stream(_section(sections, "color_labels"), n, int(header["color_vq"]["label_bits"]))
        codes["color_labels"] = vq.check_labels(labels, size, "colour")
    else:
        cb = int(header["color"]["bits"])
        residuals = []
        for i in range(3):
            reference = residuals[i - 1] if i else None
            residuals.append(decode_stream(_section(sections, f"color_{i}"), n, cb + (i > 0), reference))
        codes["color"] = _color_from_residuals(residuals, cb)
    if degree > 0:
        meta = header["sh_rest"]
        size, dim = int(meta["codebook_size"]), int(meta["dim"])
        codes["sh_codebook"] = np.frombuffer(_section(sections, "sh_codebook"), dtype="<f2")
        if dim != 3 * num_sh_rest(degree) or codes["sh_codebook"].size != size * dim:
            raise NixFormatError(
                f"corrupt container: SH codebook holds {codes['sh_codebook'].size} values, " f"expected {size}x{dim}"
            )
        codes["sh_labels"] = decode_stream(_section(sections, "sh_labels"), n, int(meta["label_bits"]))
        if codes["sh_labels"].max(initial=0) >= size:
            raise NixFormatError("corrupt container: SH label beyond the codebook")
    return codes


def _decode(header: dict, sections: dict[str, bytes]) -> GaussianSplat:
    try:
        return _reconstruct(header, _read_codes(header, sections))
    except NixFormatError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, OverflowError) as err:
        raise NixFormatError(f"corrupt container: {type(err).__name__}: {err}") from err


def decompress(blob: bytes) -> GaussianSplat:
    """Decode a Nix container to Gaussians (Morton order). Raises `NixFormatError` (a ValueError) on bad input."""
    header, sections = unpack_container(blob)
    validate_header(header, sections, len(blob))  # every field in bounds before anything is allocated
    splat = _decode(header, sections)
    check_decoded(splat)
    return splat


def read_header(blob: bytes) -> dict:
    """The verified container header (shapes, quantization parameters, section table, encoder settings)."""
    return unpack_container(blob)[0]


# ---------------------------------------------------------------------------------------------------------------
# rate control


def _resolve(rate, target_mb, config) -> tuple[CodecConfig, float | None]:
    if rate is not None:
        preset = rate_preset(rate)
        return (config or preset.config), (preset.target_mb if target_mb is None else target_mb)
    return (config or CodecConfig()), target_mb


def compress_with_report(
    splat: GaussianSplat,
    rate: float | None = None,
    target_mb: float | None = None,
    cameras: Any = None,
    config: CodecConfig | None = None,
    tolerance: float = 0.03,
    return_dequantized: bool = False,
    order: np.ndarray | None = None,
):
    """Compress `splat`; see `compress`. Returns `(container, CompressionReport)`.

    With `return_dequantized=True` returns `(container, report, dequantized, source_index)`: the encoder's
    dequantized Gaussians, built from the integer codes (`decompress(container)` must equal it bit for bit), and,
    for each, its row in the input `splat`.
    `tolerance`: the target-size search accepts sizes in [(1 - tolerance) * target, target].
    `order`: a precomputed importance ranking (input rows, most important first; e.g. `importance_order(...)`)
    so repeated encodes of one splat skip the scoring; `cameras` is then ignored.
    """
    t0 = time.perf_counter()
    if splat.num_gaussians == 0:
        raise ValueError("cannot compress an empty GaussianSplat")
    for name in ("means", "scales", "quats", "opacities", "features_dc", "features_rest"):
        bad = int((~np.isfinite(getattr(splat, name))).sum())
        if bad:
            raise ValueError(f"cannot compress: {bad} non-finite values in {name}")
    if target_mb is not None and not target_mb > 0:
        raise ValueError(f"target_mb={target_mb} must be > 0")
    cfg, target = _resolve(rate, target_mb, config)
    if cameras is not None and not isinstance(cameras, CameraSet):
        cameras = CameraSet.from_nerfstudio(cameras)
    if order is None:
        order = importance_order(splat, cameras)
    else:
        order = np.asarray(order, dtype=np.int64)
        if order.shape != (splat.num_gaussians,) or not np.array_equal(np.sort(order), np.arange(splat.num_gaussians)):
            raise ValueError("order must be a permutation of range(num_gaussians)")
    n_all = splat.num_gaussians
    ply_bytes = inria_ply_num_bytes(n_all, splat.sh_degree)
    extra = {
        "source": {"num_gaussians": n_all, "sh_degree": splat.sh_degree, "ply_bytes": ply_bytes},
        "encoder": {"rate": rate, "target_mb": target, "config": asdict(cfg)},
    }
    n_max = min(n_all, cfg.max_gaussians or n_all)

    if target is None:
        blob, header, source_index, codes = _encode(splat, order, n_max, cfg, extra)
    else:
        blob, header, source_index, codes = _search_budget(splat, order, n_max, cfg, extra, int(target * MB), tolerance)
    report = CompressionReport(
        size_bytes=len(blob),
        num_gaussians=header["num_gaussians"],
        num_input_gaussians=n_all,
        sh_degree=header["sh_degree"],
        input_sh_degree=splat.sh_degree,
        ply_bytes=ply_bytes,
        rate=rate,
        target_mb=target,
        encode_seconds=time.perf_counter() - t0,
        section_bytes={s["name"]: s["length"] for s in read_header(blob)["sections"]},
        config=asdict(cfg),
    )
    if return_dequantized:  # straight from the codes, without the entropy coder or the container
        return blob, report, _reconstruct(header, codes), source_index
    return blob, report


def _search_budget(splat, order, n_max, cfg, extra, target_bytes, tolerance):
    """Largest budget whose container fits `target_bytes`, accepting any fit within `tolerance` below it.

    Size is close to affine in the Gaussian count (a fixed overhead of header, histograms and tables plus a
    per-Gaussian cost), so a secant step between two measured bracketing encodes converges in a few encodes.
    The bracket starts at one Gaussian (whose size *is* the overhead; assuming zero bytes there made the secant
    crawl down from above on small targets and give up), and a secant step that does not halve the bracket is
    followed by a bisection step, so the search always ends on a fitting budget.
    """
    tried: dict[int, tuple] = {}

    def size(n: int) -> int:
        if n not in tried:
            tried[n] = _encode(splat, order, n, cfg, extra)
        return len(tried[n][0])

    if size(n_max) <= target_bytes:
        return tried[n_max]
    if size(1) > target_bytes:
        raise ValueError(
            f"target {target_bytes / MB:.4f} MB is below the smallest container for this input "
            f"({size(1) / MB:.4f} MB with one Gaussian at these quantization settings)"
        )
    lo, s_lo = 1, size(1)
    hi, s_hi = n_max, size(n_max)
    aim = target_bytes * (1.0 - tolerance / 3)
    bisect = False
    for _ in range(16):
        if hi - lo <= 1 or s_lo >= target_bytes * (1.0 - tolerance):
            break
        if bisect:
            n = (lo + hi) // 2
        else:
            guess = lo + (aim - s_lo) * (hi - lo) / max(s_hi - s_lo, 1)
            n = int(min(max(guess, lo + 1), hi - 1))
        width = hi - lo
        s = size(n)
        if s <= target_bytes:
            lo, s_lo = n, s
        else:
            hi, s_hi = n, s
        bisect = not bisect and 2 * (hi - lo) > width
    return tried[lo]


def compress(
    splat: GaussianSplat,
    rate: float | None = None,
    target_mb: float | None = None,
    cameras: Any = None,
    config: CodecConfig | None = None,
) -> bytes:
    """Compress Gaussians into a Nix container.

    rate: preset lambda in {0.1, 0.5, 1.0} (larger = smaller file); picks quantization settings and a target
      size (1.15 / 0.36 / 0.22 MB). target_mb: explicit container size to hit (overrides the preset's target).
      With neither, `config` (default `CodecConfig()`) is applied with its own `max_gaussians`.
    cameras: optional `CameraSet` or nerfstudio `Cameras` for view-dependent importance.
    config: explicit quantization settings (replaces the preset's).
    """
    return compress_with_report(splat, rate=rate, target_mb=target_mb, cameras=cameras, config=config)[0]


def preset_config(rate: float, **overrides: Any) -> CodecConfig:
    """The preset's CodecConfig with fields replaced (e.g. entropy_coder='lzma' for the baseline)."""
    return replace(rate_preset(rate).config, **overrides)
