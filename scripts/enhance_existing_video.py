#!/usr/bin/env python
"""Seed-compatible wrapper: ``python scripts/enhance_existing_video.py --input in.mp4 --output out.mp4`` =
``difix-enhance-video``."""
from difix_ns.cli.enhance_video import entrypoint

if __name__ == "__main__":
    entrypoint()
