#!/usr/bin/env python
"""Train a 3DGS (nerfstudio `nifi-splatfacto`) on a scene, compress it at each rate and render train/test splits.

    python scripts/build_3dgs_and_compress.py --scene data/mipnerf360/garden --rates 0.1 0.5 1.0 \\
        --out artifacts/garden/ [--max-num-iterations 30000] [--downscale-factor 4]

A thin wrapper of :mod:`nifi_ns.cli.build_3dgs_and_compress` (same flags, same outputs), where the options, checks and
outputs live.
"""
from __future__ import annotations

from nifi_ns.cli.build_3dgs_and_compress import build, check_scene, main  # noqa: F401  (the script's names)

if __name__ == "__main__":
    raise SystemExit(main())
