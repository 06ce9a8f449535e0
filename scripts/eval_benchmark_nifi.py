#!/usr/bin/env python
"""Benchmark protocol (NiFi Sec. 4.2): restore every <dataset>/<scene>/rate_<λ>/test pair and compare with
Table 1.

    python scripts/eval_benchmark_nifi.py --ckpt runs/nifi_train/best.pt --data_root pairs/benchmarks --split test \
        --out runs/nifi_train/benchmark_metrics.json

The script form of the ``nifi-eval-benchmark`` command: same flags, same outputs. Options, checks and outputs live in
:mod:`nifi_ns.cli.evaluate_benchmark`; this file only runs it.
"""
from __future__ import annotations

from nifi_ns.cli.evaluate_benchmark import main  # noqa: F401  (the tool's names, as the script always had them)

if __name__ == "__main__":
    raise SystemExit(main())
