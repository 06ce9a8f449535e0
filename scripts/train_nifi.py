#!/usr/bin/env python
"""Train the NiFi restorer (φ⁻ generator LoRA + φ⁺ critic LoRA) on paired renders.

    python scripts/train_nifi.py --config configs/default.yaml --data_root pairs/ --exp runs/nifi_train
    python scripts/train_nifi.py --config configs/default.yaml --data_root pairs/ --exp runs/nifi_smoke --smoke_test
    accelerate launch scripts/train_nifi.py ...        # multi-GPU

The command-line tool ``nifi-train`` as a script (the paths the NiFi README uses): same flags, same outputs; the code (options,
checks, outputs) lives in :mod:`nifi_ns.cli.train`.
"""
from __future__ import annotations

from nifi_ns.cli.train import main, parse_args  # noqa: F401  (the tool's names, as the script always had them)

if __name__ == "__main__":
    raise SystemExit(main())
