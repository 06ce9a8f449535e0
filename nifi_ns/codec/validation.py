"""Validation of a Nix container's header against the format's bounds, before anything is allocated or decoded.

A crafted container with valid CRCs must fail as `NixFormatError`, never decode to wrong data or crash: every
header field is checked for type and range (finite float32 ranges with lo <= hi, bit widths, SH degree, codebook
shape), the Gaussian count against a hard cap and against the container size, and the section table against the
sections the header implies. Decoded floats are checked for finiteness afterwards (`check_decoded`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nifi_ns.codec.errors import NixFormatError

# Bit-width bounds of the format (CodecConfig enforces the same on the encoder side).
BIT_LIMITS = {"position": 21, "scale": 12, "rotation": 12, "opacity": 10, "color": 12}
MAX_SH_DEGREE = 4
MAX_CODEBOOK = 65536
# Hard cap on the Gaussian count (a 3DGS scene holds a few million) and a floor on the container cost per Gaussian:
# the encoder never gets below ~10 bits/Gaussian, so 1/4 bit leaves a wide margin while keeping a 100-byte blob
# from announcing 10^12 Gaussians (and a 7 TiB allocation).
MAX_GAUSSIANS = 1 << 27
MIN_BITS_PER_GAUSSIAN = 0.25
MAX_HEADER_BYTES = 1 << 20  # decompressed JSON header


def _fail(message: str) -> NixFormatError:
    return NixFormatError(f"corrupt container: {message}")


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"header field {name} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise _fail(f"header field {name}={value} outside [{lo}, {hi}]")
    return value


def _dict(header: dict, key: str) -> dict:
    value = header.get(key)
    if not isinstance(value, dict):
        raise _fail(f"header field {key} missing or not an object")
    return value


def _range(header: dict, key: str) -> None:
    """`lo`/`hi`: three finite float32 values each, lo <= hi, and a finite float32 step."""
    meta = _dict(header, key)
    values = {}
    for name in ("lo", "hi"):
        raw = meta.get(name)
        if not isinstance(raw, list) or len(raw) != 3 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw
        ):
            raise _fail(f"header field {key}.{name} must be a list of 3 numbers")
        with np.errstate(over="ignore", invalid="ignore"):
            values[name] = np.asarray(raw, dtype=np.float64).astype(np.float32)
        if not np.isfinite(values[name]).all():
            raise _fail(f"header field {key}.{name}={raw} is not finite (as float32)")
    lo, hi = values["lo"], values["hi"]
    if (lo > hi).any():
        raise _fail(f"header field {key}: lo {lo.tolist()} > hi {hi.tolist()}")
    with np.errstate(over="ignore"):
        if not np.isfinite(hi - lo).all():
            raise _fail(f"header field {key}: range {lo.tolist()}..{hi.tolist()} overflows float32")


def expected_sections(header: dict) -> set[str]:
    names = {"position_class", "position_bits", "opacity", "opacity_table"}
    if "cov_vq" in header:  # version 2: joint (scale, rotation) codebook instead of the grids
        names |= {"cov_codebook", "cov_labels"}
    else:
        names |= {"rot_index"} | {f"{p}_{i}" for p in ("scale", "rot") for i in range(3)}
    if "color_vq" in header:  # version 2: colour codebook instead of the grid
        names |= {"color_codebook", "color_labels"}
    else:
        names |= {f"color_{i}" for i in range(3)}
    if header["sh_degree"] > 0:
        names |= {"sh_codebook", "sh_labels"}
    if header["position"].get("outliers", 0):
        names |= {"position_outlier_index", "position_outlier_xyz"}
    return names


def validate_section_table(table: Any, blob_size: int) -> None:
    """The header's section table: a list of {name: str, length: int >= 0, crc32: uint32}, names unique."""
    if not isinstance(table, list):
        raise _fail("section table is not a list")
    seen = set()
    for entry in table:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise _fail("section table entry is not an object with a name")
        name = entry["name"]
        if name in seen:
            raise _fail(f"section '{name}' listed twice")
        seen.add(name)
        _int(entry.get("length"), f"sections[{name}].length", 0, blob_size)
        _int(entry.get("crc32"), f"sections[{name}].crc32", 0, 0xFFFFFFFF)


def validate_header(header: dict, sections: dict[str, bytes], blob_size: int) -> None:
    """Check every field `decode.read_codes` / `decode.reconstruct` use; raises NixFormatError naming the field."""
    from nifi_ns.io.gaussians import num_sh_rest

    if not isinstance(header, dict):
        raise _fail("header is not an object")
    n_cap = min(MAX_GAUSSIANS, int(blob_size * 8 / MIN_BITS_PER_GAUSSIAN) + 1)
    _int(header.get("num_gaussians"), "num_gaussians", 1, n_cap)
    degree = _int(header.get("sh_degree"), "sh_degree", 0, MAX_SH_DEGREE)
    gridded = {"position", "opacity"}
    gridded |= set() if "cov_vq" in header else {"scale", "rotation"}
    gridded |= set() if "color_vq" in header else {"color"}
    for key in ("cov_vq", "color_vq"):
        if key in header:
            meta = _dict(header, key)
            size = _int(meta.get("codebook_size"), f"{key}.codebook_size", 1, MAX_CODEBOOK)
            _int(meta.get("label_bits"), f"{key}.label_bits", max(1, (size - 1).bit_length()), 16)
    for key, top in BIT_LIMITS.items():
        if key in gridded:
            _int(_dict(header, key).get("bits"), f"{key}.bits", 1, top)
    for key in ("position", "scale", "color"):
        if key in gridded:
            _range(header, key)
    warp = header["position"].get("contraction")
    if warp is not None:
        centre, scale = (warp.get("centre"), warp.get("scale")) if isinstance(warp, dict) else (None, None)
        if not (isinstance(centre, list) and len(centre) == 3
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in centre)
                and np.isfinite(np.asarray(centre, np.float64)).all()
                and isinstance(scale, (int, float)) and not isinstance(scale, bool) and 0 < scale < 3.0e38):
            raise _fail("header field position.contraction must hold a finite 3-vector centre and a scale > 0")
    if "outliers" in header["position"]:
        _int(header["position"]["outliers"], "position.outliers", 1, header["num_gaussians"])
    source = header.get("source")
    if isinstance(source, dict) and isinstance(source.get("sh_degree"), int) and degree > source["sh_degree"]:
        raise _fail(f"sh_degree {degree} exceeds the source's SH degree {source['sh_degree']}")
    if degree > 0:
        meta = _dict(header, "sh_rest")
        size = _int(meta.get("codebook_size"), "sh_rest.codebook_size", 1, MAX_CODEBOOK)
        _int(meta.get("dim"), "sh_rest.dim", 3 * num_sh_rest(degree), 3 * num_sh_rest(degree))
        _int(meta.get("label_bits"), "sh_rest.label_bits", max(1, (size - 1).bit_length()), 16)
    elif "sh_rest" in header:
        raise _fail("sh_degree 0 but the header describes an SH codebook")
    expected = expected_sections(header)
    extra = set(sections) - expected
    missing = expected - set(sections)
    if missing:
        raise _fail(f"section '{sorted(missing)[0]}' missing")
    if extra:
        raise _fail(f"unexpected section '{sorted(extra)[0]}' for this header (e.g. SH sections with sh_degree 0)")


def check_decoded(splat) -> None:
    """Every decoded float finite (a crafted opacity table or codebook could hold NaN/Inf)."""
    for name in ("means", "scales", "quats", "opacities", "features_dc", "features_rest"):
        values = getattr(splat, name)
        if not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).sum())
            raise _fail(f"{bad} non-finite decoded values in {name}")

