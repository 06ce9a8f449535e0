#!/usr/bin/env python
"""Seed-compatible wrapper: ``python scripts/enhance_existing_video.py --input in.mp4 --output out.mp4`` =
``difix-enhance-video``."""
import sys
from pathlib import Path

# Let the seed command work from a plain checkout too (the package is normally installed).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from difix_ns.cli.enhance_video import entrypoint  # noqa: E402

if __name__ == "__main__":
    entrypoint()
