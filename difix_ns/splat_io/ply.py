"""3DGS PLY I/O: the INRIA layout (read/write) and the PlayCanvas/SuperSplat compressed PLY (read).

INRIA vertex properties, in file order: x y z nx ny nz f_dc_0..2 f_rest_0..3K-1 opacity scale_0..2 rot_0..3.
`f_rest` is channel-major: f_rest_{c*K + k} is SH coefficient k of colour channel c (this is how the reference
3DGS code and `ns-export gaussian-splat` write it), so features_rest[:, k, c] <-> f_rest_{c*K + k}.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from difix_ns.splat_io.gaussians import SH_C0, GaussianSplat, num_sh_rest, sh_degree_from_rest

PLAYCANVAS_CHUNK_SIZE = 256  # splats per chunk in the compressed format


def _inria_property_names(sh_degree: int) -> list[str]:
    k = num_sh_rest(sh_degree)
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(3 * k)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def inria_ply_num_bytes(num_gaussians: int, sh_degree: int) -> int:
    """Exact size of the binary INRIA PLY that `write_ply` writes (the codec's 'uncompressed' reference)."""
    names = _inria_property_names(sh_degree)
    header = "ply\nformat binary_little_endian 1.0\n" f"element vertex {num_gaussians}\n"
    header += "".join(f"property float {n}\n" for n in names) + "end_header\n"
    return len(header.encode("ascii")) + 4 * len(names) * num_gaussians


def write_ply(splat: GaussianSplat, path: str | Path) -> Path:
    """Write `splat` as a binary little-endian INRIA 3DGS PLY (float32, zero normals)."""
    from plyfile import PlyData, PlyElement

    path = Path(path)
    n, k = splat.num_gaussians, num_sh_rest(splat.sh_degree)
    names = _inria_property_names(splat.sh_degree)
    columns = np.concatenate(
        [
            splat.means,
            np.zeros((n, 3), np.float32),
            splat.features_dc,
            splat.features_rest.transpose(0, 2, 1).reshape(n, 3 * k),  # [N,K,3] -> channel-major [N,3K]
            splat.opacities,
            splat.scales,
            splat.quats,
        ],
        axis=1,
    ).astype("<f4")
    vertex = np.empty(n, dtype=[(name, "<f4") for name in names])
    for i, name in enumerate(names):
        vertex[name] = columns[:, i]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")  # no partial output on failure
    try:
        PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<").write(str(tmp))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # a full disk or an interrupt leaves no .tmp behind
    return path


def _read_plydata(path: Path):
    from plyfile import PlyData

    if not path.is_file():
        raise FileNotFoundError(f"PLY file not found: {path}")
    try:
        ply = PlyData.read(str(path))
    except Exception as err:  # plyfile raises several types for malformed headers / short bodies
        raise ValueError(f"{path}: not a readable PLY file ({type(err).__name__}: {err})") from err
    _check_binary_size(ply, path)
    return ply


def _check_binary_size(ply, path: Path) -> None:
    """A binary PLY of fixed-size rows must be exactly header + rows: extra or missing bytes mean the header's
    counts disagree with the data (plyfile would silently drop extra rows)."""
    if ply.text or any(getattr(p, "len_dtype", None) is not None for el in ply.elements for p in el.properties):
        return  # ASCII or list properties (faces): no fixed row size to check against
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    end = head.find(b"end_header")
    if end < 0:
        return
    newline = head.find(b"\n", end)
    if newline < 0:
        return
    body = sum(el.count * el.data.dtype.itemsize for el in ply.elements)
    expected, actual = newline + 1 + body, path.stat().st_size
    if expected != actual:
        counts = ", ".join(f"{el.count} {el.name}" for el in ply.elements)
        raise ValueError(f"{path}: file has {actual} bytes but its header ({counts}) implies {expected}; "
                         f"the header's counts disagree with the data ({actual - expected:+d} bytes)")


def _element(ply, name: str, path: Path):
    for el in ply.elements:
        if el.name == name:
            return el
    raise ValueError(f"{path}: PLY has no '{name}' element (elements: {[e.name for e in ply.elements]})")


def _require(el, names: list[str], path: Path) -> None:
    have = {p.name for p in el.properties}
    missing = [n for n in names if n not in have]
    if missing:
        raise ValueError(
            f"{path}: element '{el.name}' lacks properties {missing[:8]}{'...' if len(missing) > 8 else ''}"
        )


def read_inria_ply(path: str | Path) -> GaussianSplat:
    """Read an INRIA 3DGS PLY (any SH degree; normals ignored)."""
    path = Path(path)
    vertex = _element(_read_plydata(path), "vertex", path)
    props = [p.name for p in vertex.properties]
    n_rest = sum(1 for p in props if p.startswith("f_rest_"))
    if n_rest % 3:
        raise ValueError(f"{path}: {n_rest} f_rest_* properties is not a multiple of 3")
    try:
        degree = sh_degree_from_rest(n_rest // 3)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    names = [n for n in _inria_property_names(degree) if n not in ("nx", "ny", "nz")]
    _require(vertex, names, path)
    data = vertex.data
    col = lambda *ns: np.stack([np.asarray(data[n], dtype=np.float32) for n in ns], axis=1)  # noqa: E731
    n, k = len(data), num_sh_rest(degree)
    rest = col(*[f"f_rest_{i}" for i in range(3 * k)]) if k else np.zeros((n, 0), np.float32)
    splat = GaussianSplat(
        means=col("x", "y", "z"),
        scales=col("scale_0", "scale_1", "scale_2"),
        quats=col("rot_0", "rot_1", "rot_2", "rot_3"),
        opacities=col("opacity"),
        features_dc=col("f_dc_0", "f_dc_1", "f_dc_2"),
        features_rest=rest.reshape(n, 3, k).transpose(0, 2, 1),
        sh_degree=degree,
    )
    _check_finite(splat, path)
    return splat


def _check_finite(splat: GaussianSplat, path: Path) -> None:
    for name in ("means", "scales", "quats", "opacities", "features_dc", "features_rest"):
        arr = getattr(splat, name)
        bad = int((~np.isfinite(arr)).sum())
        if bad:
            raise ValueError(f"{path}: {bad} non-finite values in {name}")


def _unorm(values: np.ndarray, shift: int, bits: int) -> np.ndarray:
    return ((values >> np.uint32(shift)) & np.uint32((1 << bits) - 1)).astype(np.float32) / np.float32((1 << bits) - 1)


def _lerp(lo: np.ndarray, hi: np.ndarray, t: np.ndarray) -> np.ndarray:
    return lo * (1.0 - t) + hi * t


def read_playcanvas_compressed_ply(path: str | Path) -> GaussianSplat:
    """Decode a PlayCanvas/SuperSplat `.compressed.ply` (layout read from the header, then range-checked).

    Per 256-splat chunk: float min/max of position, log-scale and (optionally) colour. Per splat, uint32 words:
    position and log-scale as 11/10/11-bit unorms lerped in the chunk range; rotation as a 2-bit index of the
    largest |component| plus three 10-bit components in [-1/sqrt2, 1/sqrt2] (smallest-three, rot_0..3 order);
    colour as RGBA8 where RGB = 0.5 + SH_C0 * f_dc and A = sigmoid(opacity). An optional `sh` element holds
    f_rest_* as uint8 in [-4, 4].
    """
    path = Path(path)
    ply = _read_plydata(path)
    chunk, vertex = _element(ply, "chunk", path), _element(ply, "vertex", path)
    _require(chunk, ["min_x", "min_y", "min_z", "max_x", "max_y", "max_z"], path)
    _require(chunk, ["min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z"], path)
    packed_names = ["packed_position", "packed_rotation", "packed_scale", "packed_color"]
    _require(vertex, packed_names, path)
    n, n_chunks = len(vertex.data), len(chunk.data)
    if n_chunks != -(-n // PLAYCANVAS_CHUNK_SIZE):
        raise ValueError(f"{path}: {n_chunks} chunks cannot hold {n} splats at {PLAYCANVAS_CHUNK_SIZE} per chunk")
    for name in packed_names:
        if vertex.data.dtype[name] != np.dtype("<u4") and vertex.data.dtype[name] != np.dtype(">u4"):
            raise ValueError(f"{path}: vertex.{name} is {vertex.data.dtype[name]}, expected uint32")

    cd = chunk.data
    cget = lambda name: np.asarray(cd[name], np.float32)[np.arange(n) // PLAYCANVAS_CHUNK_SIZE]  # noqa: E731
    for name in cd.dtype.names:
        if not np.all(np.isfinite(np.asarray(cd[name], np.float32))):
            raise ValueError(f"{path}: chunk.{name} has non-finite values")
    for lo_name in ("min_x", "min_y", "min_z", "min_scale_x", "min_scale_y", "min_scale_z"):
        hi_name = lo_name.replace("min", "max")
        if np.any(np.asarray(cd[lo_name]) > np.asarray(cd[hi_name])):
            raise ValueError(f"{path}: chunk.{lo_name} > chunk.{hi_name} in some chunks")
    words = {name: np.asarray(vertex.data[name], dtype=np.uint32) for name in packed_names}

    def unpack_111011(w: np.ndarray, prefix: str, axes=("x", "y", "z")) -> np.ndarray:
        t = [_unorm(w, 21, 11), _unorm(w, 11, 10), _unorm(w, 0, 11)]
        return np.stack([_lerp(cget(f"min_{prefix}{a}"), cget(f"max_{prefix}{a}"), ti) for a, ti in zip(axes, t)], 1)

    means = unpack_111011(words["packed_position"], "")
    scales = unpack_111011(words["packed_scale"], "scale_")

    w = words["packed_rotation"]
    norm = np.float32(np.sqrt(2.0))  # components of a unit quaternion other than the largest are <= 1/sqrt(2)
    abc = np.stack([(_unorm(w, s, 10) - 0.5) * norm for s in (20, 10, 0)], axis=1)
    largest = np.sqrt(np.maximum(0.0, 1.0 - (abc**2).sum(1))).astype(np.float32)
    which = (w >> np.uint32(30)).astype(np.int64)
    quats = np.empty((n, 4), np.float32)
    rows = np.arange(n)
    quats[rows, which] = largest
    slot = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[which]  # where a, b, c go for each index
    for j in range(3):
        quats[rows, slot[:, j]] = abc[:, j]

    c = words["packed_color"]
    rgba = np.stack([_unorm(c, s, 8) for s in (24, 16, 8, 0)], axis=1)
    if all(f"min_{ch}" in cd.dtype.names for ch in "rgb"):
        rgb = np.stack([_lerp(cget(f"min_{ch}"), cget(f"max_{ch}"), rgba[:, i]) for i, ch in enumerate("rgb")], 1)
    else:
        rgb = rgba[:, :3]
    features_dc = (rgb - 0.5) / np.float32(SH_C0)
    alpha = np.clip(rgba[:, 3:4].astype(np.float64), 0.5 / 255.0, 1.0 - 0.5 / 255.0)  # avoid +-inf logits
    opacities = np.log(alpha / (1.0 - alpha)).astype(np.float32)

    degree, rest = 0, np.zeros((n, 0, 3), np.float32)
    if "sh" in {e.name for e in ply.elements}:
        sh = ply["sh"]
        n_rest = len(sh.properties)
        if n_rest % 3 or len(sh.data) != n:
            raise ValueError(f"{path}: 'sh' element has {n_rest} properties x {len(sh.data)} rows; expected 3K x {n}")
        degree = sh_degree_from_rest(n_rest // 3)
        k = n_rest // 3
        _require(sh, [f"f_rest_{i}" for i in range(n_rest)], path)
        raw = np.stack([np.asarray(sh.data[f"f_rest_{i}"], np.float32) for i in range(n_rest)], 1)
        t = np.where(raw == 0, 0.0, np.where(raw == 255, 1.0, (raw + 0.5) / 256.0)).astype(np.float32)
        rest = ((t - 0.5) * 8.0).reshape(n, 3, k).transpose(0, 2, 1)

    splat = GaussianSplat(means, scales, quats, opacities, features_dc, rest, degree)
    _check_finite(splat, path)
    qn = np.linalg.norm(splat.quats, axis=1)
    if np.any(np.abs(qn - 1.0) > 0.02):
        raise ValueError(f"{path}: decoded quaternions are not unit length (max |1-|q|| {np.abs(qn - 1).max():.3f})")
    return splat


def read_ply(path: str | Path) -> GaussianSplat:
    """Read either PLY flavour, chosen from the header."""
    path = Path(path)
    ply = _read_plydata(path)
    names = {e.name for e in ply.elements}
    if "chunk" in names:
        return read_playcanvas_compressed_ply(path)
    if "vertex" not in names:
        raise ValueError(f"{path}: PLY has no 'vertex' element; not a 3DGS file")
    return read_inria_ply(path)
