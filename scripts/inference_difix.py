#!/usr/bin/env python
"""Seed-compatible wrapper: ``python scripts/inference_difix.py --input_image ... --output_dir ...`` = ``difix-fix``."""
import sys
from pathlib import Path

# Let the seed command work from a plain checkout too (the package is normally installed).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from difix_ns.cli.fix_images import entrypoint  # noqa: E402

if __name__ == "__main__":
    entrypoint()
