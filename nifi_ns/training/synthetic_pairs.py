"""Synthetic (clean, degraded) pairs for smoke tests and the GPU demo when no real 3DGS pairs exist.

The degradation is an image-space stand-in for extreme-rate 3DGS artifacts (loss of detail, blur, colour banding,
blotches); it is NOT the project's codec and NOT HAC++. The real producer renders compressed splats
(``nifi_ns.synthesis``). Rate semantics follow the paper: a larger λ label means a smaller file, hence a stronger
degradation (the third-party repro inverted this).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from difix_ns.io import tensor_to_pil
from nifi_ns.training.data import IMAGE_SUFFIXES, load_rgb

# λ label -> (downsample factor, blur sigma px, colour levels)
SEVERITY = {"0.1": (2.0, 0.8, 48), "0.5": (4.0, 1.2, 24), "1.0": (6.0, 1.6, 12)}


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(round(3 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    k = (k / k.sum()).to(x)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
                    groups=c)


def degrade(image: torch.Tensor, rate: str, seed: int = 0) -> torch.Tensor:
    """[3,H,W] in [0,1] -> degraded [3,H,W] in [0,1] (deterministic for a seed)."""
    if rate not in SEVERITY:
        raise ValueError(f"unknown synthetic rate '{rate}' (choose from {sorted(SEVERITY)})")
    factor, sigma, levels = SEVERITY[rate]
    x = image[None].float()
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(8, int(h / factor)), max(8, int(w / factor))), mode="bilinear", antialias=True,
                          align_corners=False)
    x = _blur(F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False), sigma)
    g = torch.Generator().manual_seed(seed)
    blotch = F.interpolate(torch.randn(1, 3, max(2, h // 24), max(2, w // 24), generator=g), size=(h, w),
                           mode="bilinear", align_corners=False)
    x = x + 0.04 * (factor / 4) * blotch  # low-frequency colour drift, as from missing/merged Gaussians
    x = torch.round(x.clamp(0, 1) * (levels - 1)) / (levels - 1)
    return x[0].clamp(0, 1)


def _save(t: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tensor_to_pil(t).save(path)


def write_synthetic_pairs(
    images_dir: str | Path, out_root: str | Path, scene: str = "fox", rates: Sequence[str] = ("0.1", "1.0"),
    test_every: int = 8, max_images: int | None = None, caption: str | None = None,
) -> Path:
    """Write ``out_root/<scene>/rate_<λ>/{train,test}/{clean,degraded}/*.png`` (every ``test_every``-th image ->
    test)."""
    images_dir, out_root = Path(images_dir), Path(out_root)
    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if images_dir.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no images in '{images_dir}'")
    files = files[:max_images] if max_images else files
    for i, path in enumerate(files):
        split = "test" if i % test_every == 0 else "train"
        clean = load_rgb(path)
        for rate in rates:
            base = out_root / scene / f"rate_{rate}" / split
            _save(clean, base / "clean" / f"{path.stem}.png")
            _save(degrade(clean, rate, seed=i), base / "degraded" / f"{path.stem}.png")
    if caption:
        (out_root / scene / "prompt.txt").write_text(caption + "\n")
    return out_root
