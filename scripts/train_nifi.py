#!/usr/bin/env python
"""Train the NiFi restorer (φ⁻ generator LoRA + φ⁺ critic LoRA) on paired renders.

    python scripts/train_nifi.py --config configs/default.yaml --data_root pairs/ --exp runs/nifi_train
    python scripts/train_nifi.py --config configs/default.yaml --data_root pairs/ --exp runs/nifi_smoke \
        --smoke_test
    accelerate launch scripts/train_nifi.py ...        # multi-GPU

The script form of the ``nifi-train`` command: same flags, same outputs. Options, checks and outputs live in
:mod:`nifi_ns.cli.train`; this file only runs it.
"""
from __future__ import annotations

from nifi_ns.cli.train import main, parse_args  # noqa: F401  (the tool's names, as the script always had them)

if __name__ == "__main__":
    raise SystemExit(main())
