"""INRIA 3DGS PLY write/read and the PlayCanvas compressed-PLY reader (synthetic files + the real guitar)."""


import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from nifi_ns.io import SH_C0, GaussianSplat, inria_ply_num_bytes, read_ply, write_ply
from nifi_ns.io.ply import read_playcanvas_compressed_ply
from conftest import GUITAR


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_inria_write_read_identity(tmp_path, degree):
    splat = GaussianSplat.random(500, sh_degree=degree, seed=degree)
    path = write_ply(splat, tmp_path / "s.ply")
    assert path.stat().st_size == inria_ply_num_bytes(500, degree)
    back = read_ply(path)
    assert back.equal(splat)


def test_inria_f_rest_is_channel_major(tmp_path):
    splat = GaussianSplat.random(10, sh_degree=2, seed=1)
    vertex = PlyData.read(str(write_ply(splat, tmp_path / "s.ply")))["vertex"]
    k = 8
    for c in range(3):
        for j in range(k):
            np.testing.assert_array_equal(vertex[f"f_rest_{c * k + j}"], splat.features_rest[:, j, c])
    names = [p.name for p in vertex.properties]
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[-8:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def test_gauss_params_round_trip():
    splat = GaussianSplat.random(50, sh_degree=3)
    params = splat.to_gauss_params()
    assert params["features_rest"].shape == (50, 15, 3) and params["opacities"].shape == (50, 1)
    params = {k: torch.nn.Parameter(v) for k, v in params.items()}  # as in splatfacto's ParameterDict
    assert GaussianSplat.from_gauss_params(params).equal(splat)
    with pytest.raises(ValueError, match="splatfacto"):
        GaussianSplat.from_gauss_params({"means": params["means"]})


def test_malformed_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.ply"):
        read_ply(tmp_path / "missing.ply")
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"not a ply at all\x00\x01")
    with pytest.raises(ValueError, match="garbage.ply"):
        read_ply(garbage)
    good = write_ply(GaussianSplat.random(20, sh_degree=0), tmp_path / "good.ply")
    truncated = tmp_path / "truncated.ply"
    truncated.write_bytes(good.read_bytes()[:-30])
    with pytest.raises(ValueError, match="truncated.ply"):
        read_ply(truncated)
    vertex = np.zeros(4, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])  # a point cloud, not 3DGS
    cloud = tmp_path / "cloud.ply"
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(cloud))
    with pytest.raises(ValueError, match=r"cloud.ply.*lacks properties.*f_dc_0"):
        read_ply(cloud)


def _pack_111011(t):  # t in [0,1]^3 -> uint32 11/10/11
    q = np.rint(np.asarray(t) * [2047, 1023, 2047]).astype(np.uint32)
    return (q[0] << 21) | (q[1] << 11) | q[2]


def test_playcanvas_layout_on_a_handmade_file(tmp_path):
    """Two splats whose packed words are built by hand; checks bit layout, lerp, rotation slots and SH."""
    chunk_names = [
        "min_x",
        "min_y",
        "min_z",
        "max_x",
        "max_y",
        "max_z",
        "min_scale_x",
        "min_scale_y",
        "min_scale_z",
        "max_scale_x",
        "max_scale_y",
        "max_scale_z",
        "min_r",
        "min_g",
        "min_b",
        "max_r",
        "max_g",
        "max_b",
    ]
    chunk = np.zeros(1, dtype=[(n, "<f4") for n in chunk_names])
    for n, v in zip(chunk_names, [-1, 0, 2, 1, 4, 3, -8, -8, -8, 0, 0, 0, 0, 0, 0, 1, 1, 1]):
        chunk[n] = v
    vertex = np.zeros(
        2, dtype=[(n, "<u4") for n in ["packed_position", "packed_rotation", "packed_scale", "packed_color"]]
    )
    vertex["packed_position"] = [_pack_111011([0, 0, 0]), _pack_111011([1, 0.5, 1])]
    vertex["packed_scale"] = [_pack_111011([1, 1, 1]), _pack_111011([0, 0, 0.5])]
    mid = 512  # ~0 after (t - 0.5) * sqrt2
    vertex["packed_rotation"] = [
        (0 << 30) | (mid << 20) | (mid << 10) | mid,  # identity, largest = w (rot_0)
        (3 << 30) | (mid << 20) | (mid << 10) | mid,
    ]  # largest = rot_3
    vertex["packed_color"] = [(255 << 24) | (0 << 16) | (128 << 8) | 255, (0 << 24) | (0 << 16) | (0 << 8) | 128]
    sh = np.zeros(2, dtype=[(f"f_rest_{i}", "u1") for i in range(9)])
    sh["f_rest_0"] = [255, 0]
    sh["f_rest_3"] = [128, 128]
    path = tmp_path / "tiny.compressed.ply"
    PlyData(
        [PlyElement.describe(chunk, "chunk"), PlyElement.describe(vertex, "vertex"), PlyElement.describe(sh, "sh")]
    ).write(str(path))
    s = read_ply(path)
    assert s.num_gaussians == 2 and s.sh_degree == 1
    np.testing.assert_allclose(s.means, [[-1, 0, 2], [1, 2.0019550, 3]], atol=1e-5)
    np.testing.assert_allclose(s.scales, [[0, 0, 0], [-8, -8, -3.9980459]], atol=1e-5)
    np.testing.assert_allclose(np.abs(s.quats), [[1, 0, 0, 0], [0, 0, 0, 1]], atol=2e-3)
    np.testing.assert_allclose(s.features_dc[0], (np.array([1, 0, 128 / 255]) - 0.5) / SH_C0, atol=1e-5)
    assert s.opacities[0, 0] > 5 and abs(s.opacities[1, 0] - np.log(128 / 127)) < 1e-4
    # f_rest_0 = channel 0, coefficient 0; f_rest_3 = channel 1, coefficient 0 (K = 3)
    np.testing.assert_allclose(s.features_rest[:, 0, 0], [4.0, -4.0])
    np.testing.assert_allclose(s.features_rest[:, 0, 1], [(128.5 / 256 - 0.5) * 8] * 2, atol=1e-6)

    bad = chunk.copy()
    bad["min_x"], bad["max_x"] = 2.0, 1.0
    path_bad = tmp_path / "bad.compressed.ply"
    PlyData([PlyElement.describe(bad, "chunk"), PlyElement.describe(vertex, "vertex")]).write(str(path_bad))
    with pytest.raises(ValueError, match=r"bad.compressed.ply.*min_x > chunk.max_x"):
        read_playcanvas_compressed_ply(path_bad)


@pytest.fixture(scope="module")
def guitar():
    if not GUITAR.is_file():
        pytest.skip(f"shared data not found: {GUITAR}")
    return read_ply(GUITAR)


def test_guitar_decodes_to_plausible_gaussians(guitar, tmp_path):
    assert guitar.num_gaussians == 90854 and guitar.sh_degree == 0
    np.testing.assert_allclose(np.linalg.norm(guitar.quats, axis=1), 1.0, atol=2e-3)
    extent = guitar.means.max(0) - guitar.means.min(0)
    assert np.all(extent > 0.5) and np.all(extent < 10)  # a guitar-sized object, metres-ish
    assert -21 < guitar.scales.min() and guitar.scales.max() < 0  # log std-devs: sub-unit splats
    alpha = guitar.activated_opacities()
    assert 0.1 < alpha.mean() < 0.9 and alpha.min() >= 0 and alpha.max() <= 1
    rgb = 0.5 + SH_C0 * guitar.features_dc
    assert -0.5 < rgb.min() and rgb.max() < 2.0 and 0.2 < rgb.mean() < 0.6  # DC colour is unclamped before SH
    lo, hi = np.percentile(rgb, [1, 99])
    assert -0.05 <= lo and hi <= 1.3
    # independent scalar decode of splat 1000 from the raw words
    ply = PlyData.read(str(GUITAR))
    word, ch = int(ply["vertex"]["packed_position"][1000]), ply["chunk"][1000 // 256]
    tx = (word >> 21 & 2047) / 2047
    assert abs(guitar.means[1000, 0] - (ch["min_x"] * (1 - tx) + ch["max_x"] * tx)) < 1e-5
    # INRIA write -> read keeps every bit
    assert read_ply(write_ply(guitar, tmp_path / "guitar.ply")).equal(guitar)
