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

import argparse
import json
import sys
from pathlib import Path

from nifi_ns.evaluation.datasets import DL3DV_INSTRUCTIONS, link_scenes, scene_problem, write_manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=["dl3dv"], default="dl3dv")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--dl3dv_source", type=Path, default=None, help="local DL3DV subset (one folder per scene)")
    p.add_argument("--scenes", nargs="*", default=None, help="scene folder names to use (default: all)")
    args = p.parse_args(argv)
    dest = args.out / "dl3dv"
    if args.dl3dv_source is None:
        existing = [d.name for d in dest.iterdir() if d.is_dir() and scene_problem(d) is None] if dest.is_dir() else []
        if existing:
            print(json.dumps({"dataset": "dl3dv", "root": str(dest), "scenes": existing, "status": "present"}, indent=2))
            return 0
        print(f"DL3DV is not present under '{dest}' and no --dl3dv_source was given; nothing is downloaded "
              f"automatically.\n\n" + DL3DV_INSTRUCTIONS.format(out=args.out), file=sys.stderr)
        return 1
    source = args.dl3dv_source
    if not source.is_dir():
        print(f"error: --dl3dv_source '{source}' does not exist.\n\n" + DL3DV_INSTRUCTIONS.format(out=args.out), file=sys.stderr)
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
