#!/usr/bin/env python
"""Register a local copy of the NiFi training scenes (DL3DV) under --out; never downloads anything.

    python scripts/download_data.py --dataset dl3dv --out data/ --dl3dv_source /path/to/local/dl3dv_subset

A thin wrapper of :mod:`nifi_ns.cli.download_data` (same flags, same outputs), where the options, checks and
outputs live.
"""
from __future__ import annotations

from nifi_ns.cli.download_data import main  # noqa: F401  (the script's names)

if __name__ == "__main__":
    raise SystemExit(main())
