"""Reader of the paired restoration dataset written by the artifact-synthesis step.

Layout (what ``nifi_ns.synthesis`` and ``scripts/render_pairs.py`` write):
``<root>/[<dataset>/]<scene>/rate_<λ>/<split>/{clean,degraded}/<name>.png`` (png/jpg).
Pairs are matched by file stem. Captions (teacher/critic conditioning), first match wins:
  1. ``<scene>/rate_<λ>/<split>/prompts/<stem>.txt``  (per image)
  2. ``<scene>/prompt.json``: ``{"<stem>": "caption", "default": "caption"}``
  3. ``<scene>/prompt.txt``  (per scene)
  otherwise ``None`` (the trainer then uses its default prompt).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image

from nifi_ns.synthesis.layout import IMAGE_SUFFIXES  # the producer's list, so every file it writes is read


class PairLayoutError(ValueError):
    """The pairs folder does not follow <scene>/rate_<λ>/<split>/{clean,degraded}/ (names the offending path)."""


@dataclass(frozen=True)
class PairRecord:
    dataset: str
    scene: str
    rate: str  # label after "rate_", e.g. "0.1"
    split: str
    name: str  # file stem
    clean: Path
    degraded: Path
    caption: Optional[str]


def _images(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}


def _scene_captions(scene_dir: Path) -> tuple[dict[str, str], Optional[str]]:
    per_image: dict[str, str] = {}
    default = None
    pj = scene_dir / "prompt.json"
    if pj.is_file():
        try:
            data = json.loads(pj.read_text())
        except json.JSONDecodeError as err:
            raise PairLayoutError(f"'{pj}' is not valid JSON: {err}") from err
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise PairLayoutError(f"'{pj}' must map image stems (and optionally 'default') to caption strings")
        default = data.pop("default", None)
        per_image = data
    pt = scene_dir / "prompt.txt"
    if default is None and pt.is_file():
        default = pt.read_text().strip() or None
    return per_image, default


def scan_pairs(
    root: str | Path,
    split: str,
    rates: Optional[Sequence[str]] = None,
    scenes: Optional[Sequence[str]] = None,
) -> list[PairRecord]:
    """All pairs of ``split`` under ``root``; raises :class:`PairLayoutError` on a bad or empty layout."""
    root = Path(root)
    if not root.is_dir():
        raise PairLayoutError(f"pairs root '{root}' does not exist or is not a directory")
    # folders starting with "_" or "." hold intermediates (e.g. prepare_benchmark_pairs' _artifacts/), not pairs
    rate_dirs = sorted(
        p for p in root.rglob("rate_*")
        if p.is_dir() and not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts)
    )
    if not rate_dirs:
        raise PairLayoutError(
            f"no '<scene>/rate_<λ>/' folders under '{root}'; "
            "expected <root>/<scene>/rate_<λ>/<split>/{clean,degraded}/"
        )
    wanted_rates = None if rates is None else {_norm_rate(r) for r in rates}
    records: list[PairRecord] = []
    for rate_dir in rate_dirs:
        split_dir = rate_dir / split
        scene_dir = rate_dir.parent
        rel = scene_dir.relative_to(root).parts
        dataset = rel[0] if len(rel) >= 2 else "default"
        rate = rate_dir.name[len("rate_"):]
        if scenes is not None and scene_dir.name not in scenes:
            continue
        if wanted_rates is not None and _norm_rate(rate) not in wanted_rates:
            continue
        if not split_dir.is_dir():
            continue
        for sub in ("clean", "degraded"):
            if not (split_dir / sub).is_dir():
                raise PairLayoutError(f"'{split_dir}' has no '{sub}/' folder (expected clean/ and degraded/)")
        clean, degraded = _images(split_dir / "clean"), _images(split_dir / "degraded")
        lonely = sorted(set(degraded) ^ set(clean))
        if lonely:
            name = lonely[0]
            side = "clean" if name in degraded else "degraded"
            raise PairLayoutError(f"'{split_dir}': image '{name}' has no counterpart in {side}/ "
                                  f"({len(lonely)} unpaired)")
        per_image, scene_default = _scene_captions(scene_dir)
        for stem in sorted(clean):
            caption_file = split_dir / "prompts" / f"{stem}.txt"
            caption = caption_file.read_text().strip() if caption_file.is_file() else per_image.get(stem, scene_default)
            records.append(PairRecord(dataset, scene_dir.name, rate, split, stem, clean[stem], degraded[stem], caption))
    if not records:
        raise PairLayoutError(
            f"no '{split}' pairs under '{root}' (rates={list(rates) if rates else 'all'}, "
            f"scenes={list(scenes) if scenes else 'all'})"
        )
    return records


def _norm_rate(label: str) -> str:
    try:
        return repr(float(label))
    except ValueError:
        return label


def load_rgb(path: Path) -> torch.Tensor:
    """[3,H,W] float32 in [0,1]; names the file on failure."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as err:
        raise PairLayoutError(f"cannot read image '{path}': {err}") from err
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def load_pair(record: PairRecord) -> tuple[torch.Tensor, torch.Tensor]:
    clean, degraded = load_rgb(record.clean), load_rgb(record.degraded)
    if clean.shape != degraded.shape:
        raise PairLayoutError(
            f"size mismatch: '{record.clean}' is {tuple(clean.shape[1:])} but '{record.degraded}' is "
            f"{tuple(degraded.shape[1:])}"
        )
    return clean, degraded


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    h, w = images.shape[-2:]
    s_h, s_w = min(size, h), min(size, w)
    top, left = (h - s_h) // 2, (w - s_w) // 2
    return images[..., top:top + s_h, left:left + s_w]


class PairsDataset(torch.utils.data.Dataset):
    """Training pairs with one random crop shared by clean and degraded (both in [0,1])."""

    def __init__(self, records: Sequence[PairRecord], crop_size: int, seed: int | None = None):
        self.records = list(records)
        self.crop_size = int(crop_size)
        # With a seed, crop positions are a function of (seed, epoch, index): independent of when a batch is
        # fetched (loaders prefetch) and of worker seeding, so a resumed run crops exactly as an uninterrupted one.
        # Without, they come from torch's global RNG (seeded per DataLoader worker).
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        clean, degraded = load_pair(record)
        h, w = clean.shape[-2:]
        if h < self.crop_size or w < self.crop_size:
            raise PairLayoutError(
                f"'{record.clean}' is {w}x{h}, smaller than train.crop_size={self.crop_size}; lower crop_size"
            )
        generator = None
        if self.seed is not None:
            key = (self.seed * 1_000_003 + self.epoch) * 1_000_003 + index
            generator = torch.Generator().manual_seed(key % (1 << 63))
        top = int(torch.randint(0, h - self.crop_size + 1, (), generator=generator))
        left = int(torch.randint(0, w - self.crop_size + 1, (), generator=generator))
        window = (slice(None), slice(top, top + self.crop_size), slice(left, left + self.crop_size))
        return {"clean": clean[window], "degraded": degraded[window], "caption": record.caption or "", "index": index}
