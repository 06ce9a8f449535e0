#!/usr/bin/env python
"""CPU rate-distortion sweep of the Nix codec on one splat PLY (no training, no GPU).

    python scripts/codec_rd_cpu.py --ply ../shared/data/splat_guitar/guitar.compressed.ply \
        --target-mb 0.1 0.15 0.22 0.36 --out /tmp/rd.json [--config-json '{"vq": true}']

Renders the splat with the project's CPU rasterizer (difix_ns.splat) from `--views` cameras on a circle around
it at `--size` pixels, encodes it at each target size (importance from those cameras, computed once), decodes,
renders again and scores against the *uncompressed* render: PSNR and, when the AlexNet weights are available,
LPIPS-alex. It isolates coding efficiency (bytes per Gaussian and quantization error); no fine-tune is involved.
"""
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
import tyro


def orbit(splat, views: int, size: int, radius: float, spread_deg: float):
    from difix_ns.splat.cameras import look_at_viewmat

    lo, hi = np.percentile(splat.means, [1, 99], axis=0)
    centre = (lo + hi) / 2
    out = []
    for az in np.linspace(-spread_deg, spread_deg, views):
        a = np.deg2rad(az)
        eye = centre + radius * np.array([np.cos(a), 0.0, np.sin(a)])
        viewmat = look_at_viewmat(eye, centre, np.array([0.0, -1.0, 0.0]))
        K = np.array([[1.1 * size, 0, size / 2], [0, 1.1 * size, size / 2], [0, 0, 1]])
        out.append((viewmat.astype(np.float32), K.astype(np.float32)))
    return out


def render(splat, cams, size: int) -> torch.Tensor:
    from difix_ns.splat.splat_render import render_splat

    imgs = []
    for viewmat, K in cams:
        with torch.no_grad():
            imgs.append(render_splat(splat, torch.from_numpy(viewmat)[None], torch.from_numpy(K)[None], size, size)[0])
    return torch.stack(imgs)


@dataclass
class CodecRdConfig:
    """Options of the CPU rate-distortion sweep."""

    ply: Path
    """splat PLY to encode"""
    target_mb: List[float] = field(default_factory=lambda: [0.1, 0.15, 0.22, 0.36])
    """target container sizes (MB)"""
    size: int = 128
    """rendered image size (pixels, square)"""
    views: int = 4
    """cameras on the circle around the splat"""
    radius: float = 5.5
    """camera distance from the splat centre"""
    spread_deg: float = 40.0
    """azimuth spread of the cameras (degrees either side)"""
    config_json: str = "{}"
    """CodecConfig fields (JSON) applied to every encode"""
    rate: Optional[float] = None
    """start from this rate preset's config"""
    label: str = ""
    """free text saved with every JSON line"""
    out: Optional[Path] = None
    """append one JSON line per encode to this file"""


def main(argv=None) -> int:
    args = tyro.cli(CodecRdConfig, args=argv, description=__doc__, config=(tyro.conf.FlagCreatePairsOff,))
    if not args.ply.is_file():
        raise SystemExit(f"error: --ply {args.ply} does not exist")

    from nifi_ns.codec import CameraSet, CodecConfig, compress_with_report, decompress, importance_order, preset_config
    from nifi_ns.io import read_ply

    splat = read_ply(args.ply)
    cams = orbit(splat, args.views, args.size, args.radius, args.spread_deg)
    camset = CameraSet(np.stack([c[0] for c in cams]), np.stack([c[1] for c in cams]), args.size, args.size)
    order = importance_order(splat, camset)
    reference = render(splat, cams, args.size)
    try:
        from difix_ns.metrics.lpips import LPIPS

        lpips = LPIPS("alex").eval()
    except Exception as err:  # weights not available offline
        print(f"LPIPS-alex unavailable: {err}", file=sys.stderr)
        lpips = None
    overrides = json.loads(args.config_json)
    cfg = preset_config(args.rate, **overrides) if args.rate is not None else CodecConfig(**overrides)
    for target in args.target_mb:
        t0 = time.perf_counter()
        blob, rep = compress_with_report(splat, target_mb=target, config=cfg, order=order)
        enc = time.perf_counter() - t0
        t1 = time.perf_counter()
        dec = decompress(blob)
        dec_s = time.perf_counter() - t1
        img = render(dec, cams, args.size)
        mse = ((img - reference) ** 2).mean(dim=(1, 2, 3))
        row = {
            "label": args.label, "target_mb": target, "size_mb": rep.size_mb, "num_gaussians": rep.num_gaussians,
            "bits_per_gaussian": rep.bits_per_gaussian, "psnr": float((-10 * torch.log10(mse)).mean()),
            "encode_s": enc, "decode_s": dec_s,
        }
        if lpips is not None:
            with torch.no_grad():
                row["lpips_alex"] = float(lpips(img, reference).mean())
        print(json.dumps(row), flush=True)
        if args.out is not None:
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
