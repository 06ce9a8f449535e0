"""Nix codec: bit-exact round trip, rate control, container validation, importance pruning."""

import struct
import zlib

import numpy as np
import pytest

from nifi_ns.codec import (
    MAGIC,
    CameraSet,
    CodecConfig,
    NixFormatError,
    compress,
    compress_with_report,
    decompress,
    importance_order,
    importance_scores,
    preset_config,
    read_header,
)
from nifi_ns.codec.quantize import bit_length, morton_decode, morton_encode
from nifi_ns.io import GaussianSplat, inria_ply_num_bytes, read_ply
from conftest import GUITAR

MB = 1 << 20


@pytest.fixture(scope="module")
def scene():
    return GaussianSplat.random(4000, sh_degree=3, seed=7)


@pytest.fixture(scope="module")
def guitar():
    if not GUITAR.is_file():
        pytest.skip(f"shared data not found: {GUITAR}")
    return read_ply(GUITAR)


def test_morton_and_bit_length():
    rng = np.random.default_rng(0)
    q = rng.integers(0, 1 << 21, size=(1000, 3))
    assert np.array_equal(morton_decode(morton_encode(q)), q)
    assert morton_encode(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])).tolist() == [1, 2, 4]
    v = rng.integers(0, 1 << 62, size=100, dtype=np.uint64)
    v[:3] = [0, 1, 2]
    assert bit_length(v).tolist() == [int(x).bit_length() for x in v]


@pytest.mark.parametrize("coder", ["auto", "rans", "lzma"])
@pytest.mark.parametrize("degree", [0, 3])
def test_round_trip_is_bit_exact(scene, coder, degree):
    splat = scene.with_sh_degree(degree)
    cfg = CodecConfig(max_gaussians=3000, sh_codebook_size=64, entropy_coder=coder)
    blob, report, expected, index = compress_with_report(splat, config=cfg, return_dequantized=True)
    decoded = decompress(blob)
    assert decoded.equal(expected)  # entropy coding + container are lossless
    assert decoded.num_gaussians == report.num_gaussians == 3000 and decoded.sh_degree == degree
    # dequantized values sit within half a grid step of the inputs they came from
    header = read_header(blob)
    lo, hi = np.array(header["position"]["lo"]), np.array(header["position"]["hi"])
    step = (hi - lo) / (2**cfg.position_bits - 1)
    assert np.all(np.abs(decoded.means - splat.means[index]) <= step / 2 + 1e-6)
    q = splat.quats[index] / np.linalg.norm(splat.quats[index], axis=1, keepdims=True)
    assert np.abs((q * decoded.quats).sum(1)).min() > 0.999
    alpha_err = np.abs(decoded.activated_opacities() - splat.activated_opacities()[index])
    assert alpha_err.max() <= 0.5 / 2**cfg.opacity_bits + 1e-6
    # the kept Gaussians are the most important ones
    assert set(index.tolist()) == set(importance_order(splat)[:3000].tolist())


def test_entropy_streams_and_auto_choice(scene):
    from nifi_ns.codec.entropy import decode_stream, encode_stream

    rng = np.random.default_rng(1)
    ref = rng.integers(0, 64, 40000)
    correlated = np.clip(ref + rng.integers(-2, 3, 40000), 0, 63)  # predictable from ref
    plain = encode_stream(correlated, 6, None, "rans")
    conditioned = encode_stream(correlated, 6, ref, "rans")
    assert len(conditioned) < 0.7 * len(plain)
    assert np.array_equal(decode_stream(conditioned, 40000, 6, ref), correlated)
    repeats = np.tile(rng.integers(0, 64, 100), 400)  # long repeats: lzma's home ground
    assert encode_stream(repeats, 6, None, "auto")[0] == 1  # tag 1 = lzma chosen
    with pytest.raises(NixFormatError, match="coder tag"):
        decode_stream(b"\x07" + plain[1:], 40000, 6)
    cfg = CodecConfig(sh_degree=1, sh_codebook_size=64)
    sizes = {
        c: len(compress(scene, config=CodecConfig(**{**cfg.__dict__, "entropy_coder": c})))
        for c in ("auto", "rans", "lzma")
    }
    assert sizes["auto"] <= min(sizes["rans"], sizes["lzma"])


def test_report_fields(scene):
    blob, report = compress_with_report(scene, config=CodecConfig(sh_degree=1, sh_codebook_size=32))
    assert report.size_bytes == len(blob) and report.size_mb == len(blob) / MB
    assert report.ply_bytes == inria_ply_num_bytes(4000, 3)
    assert report.compression_ratio == pytest.approx(report.ply_bytes / len(blob))
    assert report.sh_degree == 1 and report.input_sh_degree == 3
    assert sum(report.section_bytes.values()) < len(blob)
    assert set(report.to_dict()) >= {"size_mb", "num_gaussians", "compression_ratio", "sh_degree"}


def test_rate_presets_on_guitar(guitar):
    sizes, counts = {}, {}
    for rate in (0.1, 0.5, 1.0):
        blob, report = compress_with_report(guitar, rate=rate)
        sizes[rate], counts[rate] = len(blob), report.num_gaussians
        assert report.size_mb <= {0.1: 1.15, 0.5: 0.36, 1.0: 0.22}[rate]
        assert decompress(blob).num_gaussians == report.num_gaussians
    assert sizes[0.1] > sizes[0.5] > sizes[1.0]
    assert counts[0.1] > counts[0.5] > counts[1.0]
    assert counts[1.0] < guitar.num_gaussians  # 0.22 MB cannot hold all 90k Gaussians: the budget was cut


def test_rate_monotone_when_everything_fits(scene):
    sizes = [len(compress(scene, rate=r)) for r in (0.1, 0.5, 1.0)]  # 4000 Gaussians fit every target
    assert sizes[0] > sizes[1] > sizes[2]
    assert decompress(compress(scene, rate=0.1)).sh_degree == 1
    assert decompress(compress(scene, rate=1.0)).sh_degree == 0


@pytest.mark.parametrize("target_mb", [0.05, 0.3])
def test_target_mb_is_met(guitar, target_mb):
    blob, report = compress_with_report(guitar, target_mb=target_mb)
    assert 0.97 * target_mb * MB <= len(blob) <= target_mb * MB
    assert report.target_mb == target_mb


def test_small_targets_dominated_by_the_fixed_overhead():
    """Header, histograms and tables cost ~1.1 kB: any target above the one-Gaussian container must be met."""
    splat = GaussianSplat.random(200, sh_degree=3, seed=0)
    smallest = len(compress(splat, config=preset_config(1.0, max_gaussians=1)))
    for target_bytes in (smallest + 40, smallest + 200, 1572, 2100):
        blob, report = compress_with_report(splat, rate=1.0, target_mb=target_bytes / MB)
        assert len(blob) <= target_bytes and report.num_gaussians >= 1
        assert decompress(blob).num_gaussians == report.num_gaussians
    with pytest.raises(ValueError, match="below the smallest container"):
        compress(splat, rate=1.0, target_mb=(smallest - 1) / MB)


def test_bad_arguments(scene):
    with pytest.raises(ValueError, match="not a preset"):
        compress(scene, rate=0.3)
    with pytest.raises(ValueError, match="below the smallest container"):
        compress(scene, target_mb=1e-5)
    broken = scene.subset(np.arange(10))
    broken.scales[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite values in scales"):
        compress(broken, config=CodecConfig())
    reverse = importance_order(scene)[::-1].copy()  # an explicit ranking overrides the scoring
    _, _, _, kept = compress_with_report(
        scene, config=CodecConfig(max_gaussians=100), order=reverse, return_dequantized=True
    )
    assert set(kept.tolist()) == set(reverse[:100].tolist())
    with pytest.raises(ValueError, match="permutation"):
        compress_with_report(scene, order=np.zeros(scene.num_gaussians, int))
    with pytest.raises(ValueError, match="position_bits"):
        CodecConfig(position_bits=30)
    with pytest.raises(ValueError, match="entropy_coder"):
        preset_config(0.5, entropy_coder="zip")


def test_container_errors(scene):
    blob = compress(scene, config=CodecConfig(max_gaussians=500, sh_degree=0))
    assert blob.startswith(MAGIC)
    with pytest.raises(NixFormatError, match="truncated"):
        decompress(blob[: len(blob) // 2])
    with pytest.raises(NixFormatError, match="truncated"):
        decompress(blob[:10])
    with pytest.raises(NixFormatError, match="magic"):
        decompress(b"PK\x03\x04" + blob[4:])
    wrong_version = blob[:8] + struct.pack("<H", 99) + blob[10:]
    with pytest.raises(NixFormatError, match="version 99"):
        decompress(wrong_version)
    flipped = bytearray(blob)
    flipped[-5] ^= 0x40  # inside the last section
    with pytest.raises(NixFormatError, match=r"section '\w+' CRC-32 mismatch"):
        decompress(bytes(flipped))
    flipped = bytearray(blob)
    flipped[22] ^= 0x01  # inside the header
    with pytest.raises(NixFormatError, match="header CRC-32"):
        decompress(bytes(flipped))
    with pytest.raises(NixFormatError, match="unexpected bytes"):
        decompress(blob + b"\x00")
    assert issubclass(NixFormatError, ValueError)


def test_consistent_crc_but_inconsistent_header_is_rejected(scene):
    """A re-checksummed but semantically broken header still raises NixFormatError, not a crash."""
    import json

    blob = compress(scene, config=CodecConfig(max_gaussians=300, sh_degree=0))
    head_len = struct.unpack_from("<I", blob, 12)[0]
    header = json.loads(zlib.decompress(blob[20 : 20 + head_len]))
    header["num_gaussians"] += 5
    head = zlib.compress(json.dumps(header).encode())
    forged = blob[:12] + struct.pack("<II", len(head), zlib.crc32(head)) + head + blob[20 + head_len :]
    with pytest.raises(NixFormatError):
        decompress(forged)


def test_importance_accounts_for_occlusion():
    """Two identical opaque sheets seen head-on: the front one matters, the hidden one does not."""
    rng = np.random.default_rng(0)
    n = 1000
    xy = rng.uniform(-1, 1, size=(n, 2))
    means = np.concatenate([np.c_[xy, np.zeros(n)], np.c_[xy, np.ones(n)]])  # front z=0, back z=1
    splat = GaussianSplat(
        means,
        np.full((2 * n, 3), -3.0),
        np.tile([1.0, 0, 0, 0], (2 * n, 1)),
        np.full((2 * n, 1), 2.0),
        np.zeros((2 * n, 3)),
        np.zeros((2 * n, 0, 3)),
        0,
    )
    viewmat = np.eye(4)
    viewmat[2, 3] = 5.0  # camera at z = -5 looking along +z
    K = np.array([[60.0, 0, 32], [0, 60.0, 32], [0, 0, 1]])
    camera = CameraSet(viewmat[None], K[None], 64, 64)
    scores = importance_scores(splat, camera, grid=16)  # ~30 centres per 4-pixel cell
    assert scores[:n].mean() > 20 * scores[n:].mean()
    assert (importance_order(splat, camera, grid=16)[:n] < n).mean() > 0.85


def test_camera_importance_prefers_visible_gaussians():
    splat = GaussianSplat.random(2000, sh_degree=0, seed=3)
    splat.scales[:] = -3.0
    splat.opacities[:] = 2.0
    # camera at z = -10 looking down +z (OpenCV), narrow field of view: only Gaussians near the axis are seen
    viewmat = np.eye(4)
    viewmat[2, 3] = 10.0
    K = np.array([[2000.0, 0, 64], [0, 2000.0, 64], [0, 0, 1]])
    scores = importance_scores(splat, CameraSet(viewmat[None], K[None], 128, 128))
    centred = (np.abs(splat.means[:, 0]) < 0.2) & (np.abs(splat.means[:, 1]) < 0.2)
    assert scores[~centred].max() == 0 or scores[centred].mean() > 10 * scores[~centred].mean()
    assert np.all(scores[centred] > 0)
    blob = compress(
        splat, cameras=CameraSet(viewmat[None], K[None], 128, 128), config=CodecConfig(max_gaussians=int(centred.sum()))
    )
    decoded = decompress(blob)
    assert np.all(np.abs(decoded.means[:, :2]) < 0.5)  # frustum half-width ~0.32 at the scene, plus splat radii
    assert (np.abs(splat.means[:, :2]) < 0.5).all(1).mean() < 0.1  # while most of the scene lies outside
