#!/usr/bin/env python
"""Benchmark protocol (NiFi Sec. 4.2): restore every <dataset>/<scene>/rate_<λ>/test pair and compare with Table 1.

    python scripts/eval_benchmark_nifi.py --ckpt runs/nifi_train/best.pt --data_root pairs/benchmarks --split test \
        --out runs/nifi_train/benchmark_metrics.json

The command-line tool ``nifi-eval-benchmark`` as a script (the paths the NiFi README uses): same flags, same outputs; the code (options,
checks, outputs) lives in :mod:`nifi_ns.cli.evaluate_benchmark`.
"""
from __future__ import annotations

from nifi_ns.cli.evaluate_benchmark import main  # noqa: F401  (the tool's names, as the script always had them)

if __name__ == "__main__":
    raise SystemExit(main())
