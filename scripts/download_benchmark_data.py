#!/usr/bin/env python
"""Check / register the NiFi benchmark datasets (Mip-NeRF 360, Tanks & Temples, Deep Blending); no network use.

    python scripts/download_benchmark_data.py --dataset all --out data/benchmarks
    python scripts/download_benchmark_data.py --dataset tanks_temples --out data/benchmarks --source /data/tandt

A thin wrapper of :mod:`nifi_ns.cli.download_benchmark_data` (same flags, same outputs), where the options, checks and
outputs live.
"""
from __future__ import annotations

from nifi_ns.cli.download_benchmark_data import main  # noqa: F401  (the script's names)

if __name__ == "__main__":
    raise SystemExit(main())
