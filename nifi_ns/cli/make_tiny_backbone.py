"""Write a tiny random-weight restorer backbone (SD3 or SD-Turbo) in the real diffusers layout.

    python -m nifi_ns.cli.make_tiny_backbone [--backbone sd3|sdturbo] --out tiny_sd3

The folders come from :mod:`nifi_ns.restoration.testing` and load through the same ``from_pretrained`` path as the
real models; random weights prove plumbing (loading, shapes, CLIs), never quality. Prints the written folder. The
flags use the NiFi scripts' spelling (a tyro dataclass, like ``scripts/train_nifi.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence

from difix_ns.cli.tyro_style import parse
from nifi_ns.restoration.testing import MAKERS

BackboneName = Literal[tuple(sorted(MAKERS))]  # type: ignore[valid-type]


@dataclass(kw_only=True)
class MakeTinyBackboneConfig:
    """Options of ``python -m nifi_ns.cli.make_tiny_backbone``."""

    out: Path
    """Folder to write the backbone into (diffusers layout)."""
    backbone: BackboneName = "sd3"
    """Which backbone architecture to imitate."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse(MakeTinyBackboneConfig, argv,
                 description="Write a tiny random restorer backbone in the real diffusers layout.")
    print(MAKERS[args.backbone](str(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
