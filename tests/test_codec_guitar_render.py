"""Renders of the real guitar splat before and after the Nix codec (CPU rasterizer), compared by PSNR."""


import numpy as np
import pytest
import torch

from nifi_ns.codec import CodecConfig, compress_with_report, decompress
from nifi_ns.io import GaussianSplat, read_ply
from conftest import GUITAR

SIZE = 80  # pixels; tiny keeps the CPU rasterizer fast


def _front_camera(splat: GaussianSplat):
    lo, hi = np.percentile(splat.means, [1, 99], axis=0)
    centre = (lo + hi) / 2
    eye = centre + np.array([5.5, 0.0, 0.0])  # the guitar's face looks along +x; its neck runs along -y
    forward = (centre - eye) / np.linalg.norm(centre - eye)
    right = np.cross(forward, [0.0, -1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])
    viewmat = np.eye(4)
    viewmat[:3, :3], viewmat[:3, 3] = rot, -rot @ eye
    K = np.array([[90.0, 0, SIZE / 2], [0, 90.0, SIZE / 2], [0, 0, 1]])
    return torch.tensor(viewmat, dtype=torch.float32)[None], torch.tensor(K, dtype=torch.float32)[None]


def _render(splat: GaussianSplat, camera) -> torch.Tensor:
    from difix_ns.splat import rasterization

    g = splat.to_gauss_params()
    colors = torch.cat([g["features_dc"][:, None], g["features_rest"]], dim=1)
    img, _, _ = rasterization(
        g["means"],
        g["quats"],
        torch.exp(g["scales"]),
        torch.sigmoid(g["opacities"][:, 0]),
        colors,
        camera[0],
        camera[1],
        SIZE,
        SIZE,
        sh_degree=splat.sh_degree,
    )
    return img[0].clamp(0, 1)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10(((a - b) ** 2).mean()))


def test_guitar_renders_survive_compression():
    if not GUITAR.is_file():
        pytest.skip(f"shared data not found: {GUITAR}")
    pytest.importorskip("difix_ns.splat.rendering", reason="CPU rasterizer (difix_ns.splat) not available")
    guitar = read_ply(GUITAR)
    camera = _front_camera(guitar)
    reference = _render(guitar, camera)
    assert reference.mean() > 0.05  # the guitar is in view

    psnr, counts = {}, {}
    for rate in (0.1, 0.5, 1.0):
        blob, report = compress_with_report(guitar, rate=rate)
        psnr[rate], counts[rate] = _psnr(_render(decompress(blob), camera), reference), report.num_gaussians
    print(f"guitar PSNR vs uncompressed render ({SIZE}px): {psnr}, Gaussians kept: {counts}")
    assert psnr[0.1] > 30  # all Gaussians kept, fine quantization
    assert psnr[0.1] > psnr[0.5] > psnr[1.0] > 18

    # importance pruning beats pruning the same number of Gaussians at random
    rng = np.random.default_rng(0)
    random_keep = guitar.subset(np.sort(rng.choice(guitar.num_gaussians, counts[1.0], replace=False)))
    blob = compress_with_report(
        random_keep, config=CodecConfig(position_bits=14, scale_bits=6, rotation_bits=6, opacity_bits=5, color_bits=6)
    )[0]
    psnr_random = _psnr(_render(decompress(blob), camera), reference)
    print(f"random pruning to {counts[1.0]} Gaussians: PSNR {psnr_random:.2f}")
    assert psnr[1.0] > psnr_random + 1.0
