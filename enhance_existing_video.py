#!/usr/bin/env python
"""Seed-compatible wrapper at the repository root: ``python enhance_existing_video.py --input in.mp4 --output
out.mp4`` (the reference workflow's spelling) = ``difix-enhance-video`` =
``python scripts/enhance_existing_video.py``."""
import sys
from pathlib import Path

# Let the seed command work from a plain checkout too (the package is normally installed).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from difix_ns.cli.enhance_video import entrypoint  # noqa: E402

if __name__ == "__main__":
    entrypoint()
