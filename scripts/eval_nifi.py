#!/usr/bin/env python
"""Evaluate a trained NiFi restorer on a pairs folder: LPIPS/DISTS (and PSNR/SSIM) before and after
restoration.

    python scripts/eval_nifi.py --ckpt runs/nifi_train/best.pt --data_root pairs/ --split test \
        --out runs/nifi_train/metrics.json

The script form of the ``nifi-eval`` command: same flags, same outputs. Options, checks and outputs live in
:mod:`nifi_ns.cli.evaluate`; this file only runs it.
"""
from __future__ import annotations

from nifi_ns.cli.evaluate import main  # noqa: F401  (the tool's names, as the script always had them)

if __name__ == "__main__":
    raise SystemExit(main())
