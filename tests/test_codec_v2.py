"""Nix container version 2: vector-quantised covariance / colour, old-version containers, rate monotonicity,
and the fine-tune's quantisation grids."""

from pathlib import Path

import numpy as np
import pytest
import torch

from nifi_ns.codec import CodecConfig, NixFormatError, compress_with_report, decompress, read_header
from nifi_ns.codec.container import VERSION
from nifi_ns.codec.quantize import opacity_table
from nifi_ns.io import GaussianSplat

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def scene():
    return GaussianSplat.random(3000, sh_degree=1, seed=3)


def test_version_1_container_still_decodes_bit_exact():
    """Written by the version-1 encoder (before the VQ stages); its decode is pinned in the .npz next to it."""
    blob = (FIXTURES / "nix_v1_guitar_subset.nix").read_bytes()
    assert int.from_bytes(blob[8:10], "little") == 1
    decoded = decompress(blob)
    expected = np.load(FIXTURES / "nix_v1_guitar_subset_decoded.npz")
    for key in expected.files:
        assert np.array_equal(getattr(decoded, key), expected[key]), key
    assert decoded.sh_degree == 1 and decoded.num_gaussians == 202


def test_unknown_version_fails_with_a_clear_error(scene):
    blob = bytearray(compress_with_report(scene, config=CodecConfig(max_gaussians=50, sh_codebook_size=8))[0])
    assert int.from_bytes(blob[8:10], "little") == VERSION == 2
    blob[8:10] = (7).to_bytes(2, "little")
    with pytest.raises(NixFormatError, match="unsupported Nix container version 7 .*reads versions 1, 2"):
        decompress(bytes(blob))


@pytest.mark.parametrize("coder", ["rans", "lzma"])
def test_vq_round_trip_is_bit_exact(scene, coder):
    cfg = CodecConfig(cov_codebook_size=128, color_codebook_size=64, sh_codebook_size=32, entropy_coder=coder)
    blob, report, expected, index = compress_with_report(scene, config=cfg, return_dequantized=True)
    decoded = decompress(blob)
    assert decoded.equal(expected)
    header = read_header(blob)
    assert header["cov_vq"]["codebook_size"] == 128 and header["color_vq"]["codebook_size"] == 64
    assert "scale" not in header and "color" not in header
    names = {s["name"] for s in header["sections"]}
    assert {"cov_codebook", "cov_labels", "color_codebook", "color_labels"} <= names
    assert not names & {"scale_0", "rot_0", "color_0"}
    # quaternions stay unit length and scales come from the codebook
    assert np.allclose(np.linalg.norm(decoded.quats, axis=1), 1.0, atol=1e-5)
    assert len(np.unique(decoded.scales, axis=0)) <= 128
    # the VQ approximates the input (the same rows, in container order)
    src = scene.subset(index)
    assert (np.abs(decoded.features_dc - src.features_dc).mean()
            < np.abs(src.features_dc - src.features_dc.mean(0)).mean())


def test_vq_containers_are_smaller_per_gaussian(scene):
    grid = compress_with_report(scene, config=CodecConfig(sh_degree=0))[1]
    vq = compress_with_report(scene, config=CodecConfig(sh_degree=0, cov_codebook_size=64, color_codebook_size=64))[1]
    assert vq.bits_per_gaussian < grid.bits_per_gaussian - 10


def test_vq_corruption_is_detected(scene):
    blob, report = compress_with_report(scene, config=CodecConfig(sh_degree=0, cov_codebook_size=16))
    header = read_header(blob)
    offset = len(blob) - sum(s["length"] for s in header["sections"])
    for section in header["sections"]:
        if section["name"] == "cov_codebook":
            break
        offset += section["length"]
    bad = bytearray(blob)
    bad[offset] ^= 0xFF
    with pytest.raises(NixFormatError, match="cov_codebook"):
        decompress(bytes(bad))


def test_size_is_monotone_in_rate_and_target():
    guitar = GaussianSplat.random(20000, sh_degree=0, seed=11)
    sizes = [compress_with_report(guitar, rate=r)[1] for r in (0.1, 0.5, 1.0)]
    assert sizes[0].size_bytes > sizes[1].size_bytes > sizes[2].size_bytes
    reports = [compress_with_report(guitar, rate=1.0, target_mb=t)[1] for t in (0.02, 0.04, 0.08)]
    assert [r.size_bytes for r in reports] == sorted(r.size_bytes for r in reports)
    assert reports[0].num_gaussians < reports[1].num_gaussians < reports[2].num_gaussians
    for target, r in zip((0.02, 0.04, 0.08), reports):
        assert r.size_mb <= target


def test_fake_quantize_matches_the_codec_grids(scene):
    from nifi_ns.codec import preset_config
    from nifi_ns.nerfstudio.fake_quant import fake_quantize

    params = {k: v for k, v in scene.to_gauss_params().items()}
    cfg = preset_config(1.0)
    q = fake_quantize(params, cfg)
    # opacities land exactly on the codec's stored table (as float32 logits)
    table = torch.from_numpy(opacity_table(cfg.opacity_bits))
    assert torch.isin(q["opacities"].float().round(decimals=4), table.round(decimals=4)).all()
    # positions take at most 2^bits values per axis
    for axis in range(3):
        assert len(torch.unique(q["means"][:, axis])) <= 1 << cfg.position_bits
    assert len(torch.unique(q["features_dc"][:, 0])) <= 1 << cfg.color_bits
    # without the warp: within half a grid step of the input
    plain = fake_quantize(params, preset_config(1.0, position_contraction=False))
    step = (params["means"].max(0).values - params["means"].min(0).values) / ((1 << cfg.position_bits) - 1)
    assert ((plain["means"] - params["means"]).abs() <= step / 2 + 1e-6).all()
    # with it, the codec's own reconstruction and the fine-tune's agree closely
    blob, _, decoded, index = compress_with_report(scene, config=preset_config(1.0), return_dequantized=True)
    mirrored = q["means"][torch.from_numpy(index)].numpy()
    assert np.abs(mirrored - decoded.means).max() < 2 * float(step.max())


def test_position_contraction_is_exact_and_finer_near_the_centre():
    splat = GaussianSplat.random(3000, sh_degree=0, seed=1)
    splat.means[:100] *= 30  # far background splats stretch the bounding box
    errors = {}
    for warp in (False, True):
        cfg = CodecConfig(position_bits=10, position_contraction=warp)
        blob, _, expected, index = compress_with_report(splat, config=cfg, return_dequantized=True)
        decoded = decompress(blob)
        assert decoded.equal(expected)
        near = np.linalg.norm(splat.means[index], axis=1) < 1.0
        errors[warp] = np.abs(decoded.means - splat.means[index])[near].mean()
        assert ("contraction" in read_header(blob)["position"]) == warp
    assert errors[True] < errors[False] / 3
