"""Write a tiny random-weight restorer backbone (SD3 or SD-Turbo) in the real diffusers layout.

    python -m nifi_ns.cli.make_tiny_backbone [--backbone sd3|sdturbo] --out tiny_sd3

The folders come from :mod:`nifi_ns.restoration.testing` and load through the same ``from_pretrained`` path as the
real models; random weights prove plumbing (loading, shapes, CLIs), never quality. Prints the written folder. The
flags use the NiFi scripts' spelling (argparse, like ``scripts/train_nifi.py``).
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from nifi_ns.restoration.testing import MAKERS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Write a tiny random restorer backbone in the real diffusers layout.")
    parser.add_argument("--backbone", choices=sorted(MAKERS), default="sd3")
    parser.add_argument("--out", required=True)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    print(MAKERS[args.backbone](args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
