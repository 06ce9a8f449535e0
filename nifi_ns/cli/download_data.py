"""Register a local copy of the NiFi training scenes (DL3DV) under --out; never downloads anything.

    python scripts/download_data.py --dataset dl3dv --out data/ --dl3dv_source /path/to/local/dl3dv_subset

Every scene folder of --dl3dv_source must hold an images*/ folder and camera poses (transforms.json, COLMAP
sparse/0/ or poses_bounds.npy; DL3DV's nerfstudio/ sub-folder is accepted). Valid scenes are symlinked into
<out>/dl3dv/ and listed in <out>/dl3dv/dataset_manifest.json. Without a local copy the exact manual download steps are
printed and the exit code is 1; a malformed copy exits with 2 naming the bad scene.

Runs as ``python scripts/download_data.py`` (a thin wrapper) or
``python -m nifi_ns.cli.download_data``.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Tuple

from difix_ns.cli.tyro_style import parse
from nifi_ns.evaluation.datasets import DL3DV_INSTRUCTIONS, link_scenes, scene_problem, write_manifest


@dataclass(kw_only=True)
class DownloadDataConfig:
    """Options of ``scripts/download_data.py`` (the NiFi script's flags)."""

    dataset: Literal["dl3dv"] = "dl3dv"
    """Training dataset to register."""
    out: Path
    """Data root; scenes are linked into <out>/dl3dv/."""
    dl3dv_source: Optional[Path] = None
    """Local DL3DV subset (one folder per scene)."""
    scenes: Optional[Tuple[str, ...]] = None
    """Scene folder names to use (default: all)."""


def main(argv=None) -> int:
    args = parse(DownloadDataConfig, argv, description=__doc__)
    dest = args.out / "dl3dv"
    if args.dl3dv_source is None:
        existing = [d.name for d in dest.iterdir() if d.is_dir() and scene_problem(d) is None] if dest.is_dir() else []
        if existing:
            print(json.dumps({"dataset": "dl3dv", "root": str(dest), "scenes": existing, "status": "present"},
                             indent=2))
            return 0
        print(f"DL3DV is not present under '{dest}' and no --dl3dv_source was given; nothing is downloaded "
              f"automatically.\n\n" + DL3DV_INSTRUCTIONS.format(out=args.out), file=sys.stderr)
        return 1
    source = args.dl3dv_source
    if not source.is_dir():
        print(f"error: --dl3dv_source '{source}' does not exist.\n\n" + DL3DV_INSTRUCTIONS.format(out=args.out),
              file=sys.stderr)
        return 1
    scenes = args.scenes or sorted(d.name for d in source.iterdir() if d.is_dir() and not d.name.startswith("."))
    problems = {s: r for s in scenes if (r := scene_problem(source / s)) is not None}
    if problems or not scenes:
        detail = "; ".join(f"{k}: {v}" for k, v in problems.items()) or "no scene folders"
        print(f"error: --dl3dv_source '{source}' is not a usable DL3DV copy ({detail})", file=sys.stderr)
        return 2
    linked = link_scenes(source, dest, scenes)
    manifest = write_manifest(dest, {"dataset": "dl3dv", "source": str(source.resolve()), "scenes": linked})
    print(json.dumps({"dataset": "dl3dv", "root": str(dest), "scenes": linked, "manifest": str(manifest),
                      "status": "registered"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
