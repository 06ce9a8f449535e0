"""Paired data of ``difix-train``: upstream Difix JSON files ``{"train": {id: {image, target_image, ref_image?,
prompt}}, "test": {...}}``, as written by ``difix-make-pairs``.

Everything is checked before training starts (files exist, image/target/reference sizes match, the split is not
empty), and problems are reported as one ``InputError`` naming the file. Relative paths are resolved against the
JSON file's folder first, then the working directory (upstream's loader opens paths as given).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image

from difix_ns.io import InputError


@dataclass(frozen=True)
class PairEntry:
    id: str
    image: Path
    target: Path
    ref: Optional[Path]
    size: tuple[int, int]  # (height, width)
    recipe: str


def _resolve(value: str, base: Path) -> Path:
    p = Path(value)
    if p.is_absolute():
        return p
    return base / p if (base / p).exists() or not p.exists() else p


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read image '{path}': {err}") from err


def load_entries(json_paths: Sequence[Path], split: str, hint: str = "") -> list[PairEntry]:
    """All pairs of ``split`` in the given JSON files, validated (see module docstring)."""
    if not json_paths:
        raise InputError("no pair data given: pass --data PAIRS.json (from difix-make-pairs) or --scene DATA")
    entries: list[PairEntry] = []
    for jp in json_paths:
        jp = Path(jp)
        if not jp.is_file():
            raise InputError(f"--data {jp}: file not found")
        try:
            data = json.loads(jp.read_text())
        except json.JSONDecodeError as err:
            raise InputError(f"--data {jp}: not valid JSON ({err})") from err
        if not isinstance(data, dict) or not isinstance(data.get(split, {}), dict):
            raise InputError(f"--data {jp}: expected {{\"train\": {{id: {{...}}}}, \"test\": {{...}}}}")
        for pid, rec in data.get(split, {}).items():
            for key in ("image", "target_image"):
                if key not in rec:
                    raise InputError(f"{jp}: {split} pair {pid!r} has no {key!r}")
            img = _resolve(rec["image"], jp.parent)
            tgt = _resolve(rec["target_image"], jp.parent)
            ref = _resolve(rec["ref_image"], jp.parent) if rec.get("ref_image") else None
            for what, p in (("image", img), ("target_image", tgt), ("ref_image", ref)):
                if p is not None and not p.is_file():
                    raise InputError(f"{jp}: {split} pair {pid!r}: {what} '{p}' does not exist")
            size = _image_size(img)
            for what, p in (("target_image", tgt), ("ref_image", ref)):
                if p is not None and _image_size(p) != size:
                    h, w = _image_size(p)
                    raise InputError(
                        f"{jp}: {split} pair {pid!r}: size mismatch: image '{img}' is {size[1]}x{size[0]} but "
                        f"{what} '{p}' is {w}x{h}"
                    )
            if min(size) < 64:
                raise InputError(f"{jp}: {split} pair {pid!r}: image '{img}' is {size[1]}x{size[0]}; "
                                 "Difix needs >= 64 px")
            entries.append(PairEntry(f"{jp.parent.name}/{pid}", img, tgt, ref, size, str(rec.get("recipe", ""))))
    if not entries:
        names = ", ".join(str(p) for p in json_paths)
        raise InputError(f"the {split!r} split of {names} is empty{hint}")
    return entries


def _load(path: Path) -> torch.Tensor:
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


class PairDataset(torch.utils.data.Dataset):
    """Items ``{"input": [V,3,h,w], "target": [V,3,h,w]}`` in [-1, 1]; V = 2 (image + reference, the reference
    being its own target as upstream) when ``use_refs``, else 1. ``crop``: random square crops of that side
    (training); None: the top-left crop to a multiple of 8 (evaluation, pixel-aligned)."""

    def __init__(self, entries: Sequence[PairEntry], use_refs: bool, crop: Optional[int], flip: bool = False):
        self.entries = list(entries)
        self.use_refs = use_refs
        self.crop = crop
        self.flip = flip
        if use_refs:
            missing = [e.id for e in self.entries if e.ref is None]
            if missing:
                raise InputError(f"the model mixes reference views but pair {missing[0]!r} has no ref_image "
                                 f"({len(missing)} such pairs); use a model without reference mixing")

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, idx: int) -> dict:
        e = self.entries[idx]
        img, tgt = _load(e.image), _load(e.target)
        views_in, views_out = [img], [tgt]
        if self.use_refs:
            ref = _load(e.ref)
            views_in.append(ref)
            views_out.append(ref)
        x, y = torch.stack(views_in), torch.stack(views_out)
        h, w = x.shape[-2:]
        if self.crop is not None:
            top = random.randint(0, h - self.crop)
            left = random.randint(0, w - self.crop)
            x = x[..., top : top + self.crop, left : left + self.crop]
            y = y[..., top : top + self.crop, left : left + self.crop]
            if self.flip and random.random() < 0.5:
                x, y = x.flip(-1), y.flip(-1)
        else:
            x, y = x[..., : h // 8 * 8, : w // 8 * 8], y[..., : h // 8 * 8, : w // 8 * 8]
        return {"input": x * 2 - 1, "target": y * 2 - 1}


def crop_size_for(entries: Sequence[PairEntry], requested: int) -> int:
    """The training crop: ``requested`` floored to a multiple of 8 and to the smallest image."""
    smallest = min(min(e.size) for e in entries)
    return max(8, min(requested, smallest) // 8 * 8)
