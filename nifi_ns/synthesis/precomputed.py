"""Pairs from renders made by an external codec (e.g. HAC++, as NiFi evaluates), validated before writing.

Expected input, per scene and rate (λ in NiFi's convention, larger = smaller file):

    <compressed_root>/<scene>/rate_<λ>/[<split>/]<name>.png     render of the compressed model
    <dataset_root>/<scene>/<images dir>/<name>.<ext>           the photo at the same camera

The photo is matched by file stem; the images dir is the first of `images`, `images_2`, `images_4`, `images_8`,
`rgb` that exists (or `--images-dir`). A photo whose size differs from its render by a uniform downscale is
resized to the render's size (LANCZOS); any other size mismatch is an error. All checks run before any file is
written, so bad input leaves no partial output.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from nifi_ns.synthesis.layout import list_images, pair_dirs, rate_label, write_manifest, write_prompt

DEFAULT_IMAGE_DIRS = ("images", "images_2", "images_4", "images_8", "rgb")


class LayoutError(ValueError):
    """The precomputed renders or the dataset do not follow the documented layout."""


def find_images_dir(scene_dir: Path, images_dir: Optional[str] = None) -> Path:
    candidates = (images_dir,) if images_dir else DEFAULT_IMAGE_DIRS
    for name in candidates:
        path = Path(scene_dir) / name
        if path.is_dir():
            return path
    raise LayoutError(f"{scene_dir}: no photo folder (looked for {list(candidates)})")


def renders_dir(compressed_scene: Path, rate: float, split: str) -> Path:
    base = Path(compressed_scene) / rate_label(rate)
    if not base.is_dir():
        present = sorted(p.name for p in Path(compressed_scene).glob("rate_*"))
        raise LayoutError(f"missing renders folder {base} (present: {present or 'none'})")
    return base / split if (base / split).is_dir() else base


def plan_pairs(
    dataset_scene: Path,
    compressed_scene: Path,
    rates: Sequence[float],
    split: str = "test",
    images_dir: Optional[str] = None,
) -> Dict[float, List[Tuple[Path, Path, Tuple[int, int]]]]:
    """rate -> [(photo, render, render size)] after validating everything; raises LayoutError."""
    from PIL import Image

    if not Path(dataset_scene).is_dir():
        raise LayoutError(f"dataset scene folder {dataset_scene} does not exist")
    if not Path(compressed_scene).is_dir():
        raise LayoutError(f"compressed-renders scene folder {compressed_scene} does not exist")
    photos = {p.stem: p for p in list_images(find_images_dir(dataset_scene, images_dir))}
    plan: Dict[float, List[Tuple[Path, Path, Tuple[int, int]]]] = {}
    for rate in rates:
        folder = renders_dir(compressed_scene, rate, split)
        renders = list_images(folder)
        if not renders:
            raise LayoutError(f"no renders (*.png, *.jpg) in {folder}")
        unmatched = [r.name for r in renders if r.stem not in photos]
        if unmatched:
            raise LayoutError(
                f"{folder}: {len(unmatched)} render(s) have no photo of the same name in "
                f"{find_images_dir(dataset_scene, images_dir)}, e.g. {unmatched[:3]}"
            )
        items = []
        for render in renders:
            photo = photos[render.stem]
            with Image.open(render) as r, Image.open(photo) as p:
                rw, rh = r.size
                pw, ph = p.size
            if abs(pw / rw - ph / rh) > 0.02 * max(pw / rw, ph / rh):
                raise LayoutError(f"{render} is {rw}x{rh} but its photo {photo} is {pw}x{ph} (different aspect ratio)")
            items.append((photo, render, (rw, rh)))
        plan[rate] = items
    return plan


def pairs_from_precomputed(
    dataset_scene: Path,
    compressed_scene: Path,
    out_scene: Path,
    rates: Sequence[float] = (0.1, 0.5, 1.0),
    split: str = "test",
    images_dir: Optional[str] = None,
    prompt: Optional[str] = None,
    codec_name: str = "precomputed",
) -> dict:
    """Validate, then write `<out_scene>/rate_<λ>/<split>/{clean,degraded}/<stem>.png`; returns the manifest."""
    from PIL import Image

    plan = plan_pairs(dataset_scene, compressed_scene, rates, split, images_dir)
    manifest: dict = {"source": "precomputed", "codec": codec_name, "compressed_root": str(compressed_scene),
                      "dataset_scene": str(dataset_scene), "rates": {}}
    for rate, items in plan.items():
        dirs = pair_dirs(out_scene, rate, split)
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        for photo, render, size in items:
            with Image.open(photo) as p:
                clean = p.convert("RGB")
                if clean.size != size:
                    clean = clean.resize(size, Image.LANCZOS)
                clean.save(dirs["clean"] / f"{render.stem}.png")
            with Image.open(render) as r:
                r.convert("RGB").save(dirs["degraded"] / f"{render.stem}.png")
        manifest["rates"][rate_label(rate)] = {"rate": float(rate), "counts": {split: len(items)}}
    if prompt:
        write_prompt(out_scene, prompt)
    write_manifest(out_scene, manifest)
    return manifest
