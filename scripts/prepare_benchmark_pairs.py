#!/usr/bin/env python
"""Benchmark pairs (NiFi Sec. 4.2) for every scene of a dataset, at each rate, test split.

    python scripts/prepare_benchmark_pairs.py --dataset mipnerf360 --dataset_root data/benchmarks/mipnerf360 \\
        --out pairs/benchmarks --rates 0.1 0.5 1.0 --compression_method proxy [--max-num-iterations 30000]

A thin wrapper of :mod:`nifi_ns.cli.prepare_benchmark_pairs` (same flags, same outputs), where the options, checks and
outputs live.
"""
from __future__ import annotations

from nifi_ns.cli.prepare_benchmark_pairs import main  # noqa: F401  (the script's names)

if __name__ == "__main__":
    raise SystemExit(main())
