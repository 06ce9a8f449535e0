"""Local dataset validation for ``scripts/download_data.py`` / ``download_benchmark_data.py``.

Nothing here touches the network: the datasets are large and license-gated (DL3DV needs a signed form), so the
scripts check a local copy, register it under ``--out`` with symlinks, and otherwise print the exact manual steps.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from nifi_ns.synthesis.layout import IMAGE_SUFFIXES


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    scenes: tuple[str, ...]
    folder: str  # sub-folder of the archive that holds the scenes
    instructions: str


MIPNERF360 = DatasetSpec(
    "mipnerf360",
    ("bicycle", "bonsai", "counter", "flowers", "garden", "kitchen", "room", "stump", "treehill"),
    "",
    "Mip-NeRF 360 (Barron et al.; 7 scenes in 360_v2.zip, flowers + treehill in 360_extra_scenes.zip):\n"
    "  mkdir -p {out}/mipnerf360 && cd {out}/mipnerf360\n"
    "  wget http://storage.googleapis.com/gresearch/refraw360/360_v2.zip && unzip 360_v2.zip\n"
    "  wget https://storage.googleapis.com/gresearch/refraw360/360_extra_scenes.zip && unzip 360_extra_scenes.zip\n",
)
TANKS_TEMPLES = DatasetSpec(
    "tanks_temples", ("train", "truck"), "tandt",
    "Tanks & Temples (train, truck) and Deep Blending (drjohnson, playroom), COLMAP-processed by the 3DGS authors:\n"
    "  mkdir -p {out} && cd {out}\n"
    "  wget https://repo-sam.inria.fr/fungraph/3d-gaussian-splatting/datasets/input/tandt_db.zip"
    " && unzip tandt_db.zip\n"
    "  mv tandt tanks_temples && mv db deepblending\n",
)
DEEPBLENDING = DatasetSpec("deepblending", ("drjohnson", "playroom"), "db", TANKS_TEMPLES.instructions)
BENCHMARKS = {s.name: s for s in (MIPNERF360, TANKS_TEMPLES, DEEPBLENDING)}
DL3DV_INSTRUCTIONS = (
    "DL3DV-10K (NiFi's training scenes) is gated: request access at https://github.com/DL3DV-10K/Dataset "
    "(Hugging Face\n"
    "dataset DL3DV/DL3DV-ALL-960P after accepting its terms), download a subset with the dataset's own download.py\n"
    "(e.g. `python download.py --odir /data/dl3dv --subset 1K --resolution 960P --file_type images+poses`), then run\n"
    "  python scripts/download_data.py --dataset dl3dv --out {out} --dl3dv_source /data/dl3dv/1K\n"
)


def scene_problem(scene_dir: Path) -> Optional[str]:
    """None if ``scene_dir`` looks like a posed capture (images + COLMAP or transforms.json), else what is missing."""
    if not scene_dir.is_dir():
        return f"'{scene_dir}' does not exist"
    roots = [scene_dir, scene_dir / "nerfstudio"]
    images = [d for r in roots if r.is_dir() for d in r.iterdir() if d.is_dir() and d.name.startswith("images")]
    if not any(any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir()) for d in images):
        return f"'{scene_dir}' has no images*/ folder with images"
    has_poses = any((r / "transforms.json").is_file() or (r / "sparse" / "0").is_dir()
                    or (r / "poses_bounds.npy").is_file()
                    for r in roots)
    if not has_poses:
        return f"'{scene_dir}' has no camera poses (transforms.json, sparse/0/ or poses_bounds.npy)"
    return None


def validate_scenes(root: Path, scenes: Sequence[str]) -> dict:
    """{"ok": [...], "problems": {scene: reason}} for the scenes expected under ``root``."""
    ok, problems = [], {}
    for scene in scenes:
        reason = scene_problem(root / scene)
        if reason is None:
            ok.append(scene)
        else:
            problems[scene] = reason
    return {"root": str(root), "ok": ok, "problems": problems}


def link_scenes(source: Path, dest: Path, scenes: Sequence[str]) -> list[str]:
    """Symlink valid ``source/<scene>`` folders into ``dest`` (no copy of GBs of photos)."""
    dest.mkdir(parents=True, exist_ok=True)
    linked = []
    for scene in scenes:
        target = dest / scene
        if target.exists() or target.is_symlink():
            if target.resolve() != (source / scene).resolve():
                raise FileExistsError(f"'{target}' already exists and is not a link to '{source / scene}'")
        else:
            os.symlink((source / scene).resolve(), target, target_is_directory=True)
        linked.append(scene)
    return linked


def write_manifest(dest: Path, payload: dict) -> Path:
    path = dest / "dataset_manifest.json"
    path.write_text(json.dumps(payload, indent=2))
    return path
