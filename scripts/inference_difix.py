#!/usr/bin/env python
"""Seed-compatible wrapper: ``python scripts/inference_difix.py --input_image ... --output_dir ...`` = ``difix-fix``."""
from difix_ns.cli.fix_images import entrypoint

if __name__ == "__main__":
    entrypoint()
