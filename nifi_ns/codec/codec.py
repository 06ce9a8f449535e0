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

Decoding only reads codes and stored parameters; encoder and decoder share `decode.reconstruct`, so
`decompress(blob)` equals the encoder's dequantized Gaussians bit for bit.

This module is the orchestration (`compress`, `compress_with_report`, `decompress`, `read_header`); the concepts
live in their own modules: `config.py` (`CodecConfig`), `presets.py` (rate presets, `rate_label`), `importance.py`
(ranking for pruning), `quantize.py` / `positions.py` / `vq.py` (quantisation), `encode.py` (one encode at a fixed
budget), `rate_control.py` (the budget search), `decode.py`, `entropy.py`, `container.py` + `validation.py` (the
byte format), `report.py` (`CompressionReport`).
"""


from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import numpy as np

from nifi_ns.codec.config import CodecConfig
from nifi_ns.codec.container import unpack_container
from nifi_ns.codec.decode import decode_sections, reconstruct
from nifi_ns.codec.encode import encode_budget
from nifi_ns.codec.importance import CameraSet, importance_order
from nifi_ns.codec.presets import RATE_PRESETS, RatePreset, preset_config, rate_label, rate_preset
from nifi_ns.codec.rate_control import search_budget
from nifi_ns.codec.report import MB, CompressionReport
from nifi_ns.codec.validation import check_decoded, validate_header
from nifi_ns.io.gaussians import GaussianSplat
from nifi_ns.io.ply import inria_ply_num_bytes

__all__ = [
    "RATE_PRESETS",
    "CodecConfig",
    "CompressionReport",
    "RatePreset",
    "compress",
    "compress_with_report",
    "decompress",
    "preset_config",
    "rate_label",
    "rate_preset",
    "read_header",
]


def resolve_settings(rate, target_mb, config) -> tuple[CodecConfig, float | None]:
    """The settings and target size of one ``compress`` call: a preset's (``rate``) or ``config`` / defaults."""
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
    cfg, target = resolve_settings(rate, target_mb, config)
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
        blob, header, source_index, codes = encode_budget(splat, order, n_max, cfg, extra)
    else:
        blob, header, source_index, codes = search_budget(splat, order, n_max, cfg, extra, int(target * MB), tolerance)
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
        return blob, report, reconstruct(header, codes), source_index
    return blob, report


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


def decompress(blob: bytes) -> GaussianSplat:
    """Decode a Nix container to Gaussians (Morton order). Raises `NixFormatError` (a ValueError) on bad input."""
    header, sections = unpack_container(blob)
    validate_header(header, sections, len(blob))  # every field in bounds before anything is allocated
    splat = decode_sections(header, sections)
    check_decoded(splat)
    return splat


def read_header(blob: bytes) -> dict:
    """The verified container header (shapes, quantization parameters, section table, encoder settings)."""
    return unpack_container(blob)[0]

