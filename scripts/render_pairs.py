#!/usr/bin/env python
"""Build the clean/degraded pair layout of one split from build_3dgs_and_compress.py artifacts.

    python scripts/render_pairs.py --scene artifacts/garden/ --split train --out pairs/garden/
    python scripts/render_pairs.py --scene artifacts/garden/ --split test  --out pairs/garden/

A thin wrapper of :mod:`nifi_ns.cli.render_pairs` (same flags, same outputs), where the options, checks and
outputs live.
"""
from __future__ import annotations

from nifi_ns.cli.render_pairs import main  # noqa: F401  (the script's names)

if __name__ == "__main__":
    raise SystemExit(main())
