"""The clean/degraded pair layout shared by artifact synthesis, NiFi training and the benchmark.

    <pairs>/<scene>/rate_<λ>/<split>/clean/<name>.png      dataset photo at the camera (same size as degraded)
    <pairs>/<scene>/rate_<λ>/<split>/degraded/<name>.png   render of the compressed 3DGS at that camera
    <pairs>/<scene>/prompt.txt                             optional caption of the scene
    <pairs>/<scene>/manifest.json                          what made the pairs (rates, sizes, counts, source)

λ follows NiFi's convention (larger = smaller file); `rate_label` (defined with the codec's presets) formats it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterable, List

from nifi_ns.codec.presets import rate_label

__all__ = ["rate_label", "parse_rate_label", "pair_dirs", "list_images", "validate_pairs", "write_manifest",
           "write_prompt", "IMAGE_SUFFIXES", "PROMPT_FILE", "MANIFEST_FILE"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
PROMPT_FILE = "prompt.txt"
MANIFEST_FILE = "manifest.json"


def parse_rate_label(name: str) -> float:
    """'rate_0.5' -> 0.5; ValueError naming the folder otherwise."""
    if not name.startswith("rate_"):
        raise ValueError(f"folder {name!r} is not named rate_<lambda>")
    try:
        return float(name[len("rate_"):])
    except ValueError as err:
        raise ValueError(f"folder {name!r}: '{name[len('rate_'):]}' is not a number") from err


def pair_dirs(scene_root: Path, rate: float, split: str) -> Dict[str, Path]:
    base = Path(scene_root) / rate_label(rate) / split
    return {"clean": base / "clean", "degraded": base / "degraded"}


def list_images(folder: Path) -> List[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def write_manifest(scene_root: Path, manifest: dict) -> Path:
    path = Path(scene_root) / MANIFEST_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2), "utf8")
    return path


def write_prompt(scene_root: Path, prompt: str) -> Path:
    path = Path(scene_root) / PROMPT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prompt.strip() + "\n", "utf8")
    return path


def validate_pairs(scene_root: Path, rates: Iterable[float], splits: Iterable[str]) -> Dict[str, int]:
    """Check the layout under one scene: same file names and image sizes in clean/ and degraded/.

    Returns {"rate_0.5/test": count, ...}; raises ValueError naming the first offending path.
    """
    from PIL import Image

    counts: Dict[str, int] = {}
    for rate in rates:
        for split in splits:
            dirs = pair_dirs(scene_root, rate, split)
            for d in dirs.values():
                if not d.is_dir():
                    raise ValueError(f"missing folder {d}")
            clean = {p.stem: p for p in list_images(dirs["clean"])}
            degraded = {p.stem: p for p in list_images(dirs["degraded"])}
            if not clean:
                raise ValueError(f"no images in {dirs['clean']}")
            if set(clean) != set(degraded):
                only = sorted(set(clean) ^ set(degraded))[:5]
                raise ValueError(f"{dirs['clean'].parent}: clean/ and degraded/ differ in names, e.g. {only}")
            for stem, path in clean.items():
                with Image.open(path) as a, Image.open(degraded[stem]) as b:
                    if a.size != b.size:
                        raise ValueError(
                            f"{path} is {a.size[0]}x{a.size[1]} but {degraded[stem]} is {b.size[0]}x{b.size[1]}"
                        )
            counts[f"{rate_label(rate)}/{split}"] = len(clean)
    return counts
