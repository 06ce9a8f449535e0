"""Decoding: container sections back to integer codes (``read_codes``, validated against the header) and codes back
to Gaussians (``reconstruct``: the only path from codes to floats, shared with the encoder).
"""

from __future__ import annotations

import numpy as np

from nifi_ns.codec import positions, vq
from nifi_ns.codec.container import FORMAT_NAME
from nifi_ns.codec.entropy import decode_stream, unpack_varbits
from nifi_ns.codec.errors import NixFormatError
from nifi_ns.codec.quantize import (
    color_from_residuals,
    morton_decode,
    quat_dequantize,
    uniform_dequantize,
)
from nifi_ns.io.gaussians import GaussianSplat, num_sh_rest


def _section(sections: dict[str, bytes], name: str) -> bytes:
    if name not in sections:
        raise NixFormatError(f"corrupt container: section '{name}' missing")
    return sections[name]


def _floats(header: dict, key: str, field_name: str, size: int) -> np.ndarray:
    values = np.asarray(header[key][field_name], dtype=np.float32)
    if values.shape != (size,):
        raise NixFormatError(f"header field {key}.{field_name} has shape {values.shape}, expected ({size},)")
    return values


def reconstruct(header: dict, codes: dict[str, np.ndarray]) -> GaussianSplat:
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


def read_codes(header: dict, sections: dict[str, bytes]) -> dict[str, np.ndarray]:
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
        codes["color"] = color_from_residuals(residuals, cb)
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


def decode_sections(header: dict, sections: dict[str, bytes]) -> GaussianSplat:
    try:
        return reconstruct(header, read_codes(header, sections))
    except NixFormatError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, OverflowError) as err:
        raise NixFormatError(f"corrupt container: {type(err).__name__}: {err}") from err
