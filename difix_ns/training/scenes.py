"""Scenes for pair curation: the frames of a nerfstudio-data or COLMAP capture, and sub-scenes that train on some
frames and render others.

A sub-scene is a folder with a ``transforms.json`` listing *every* frame (so nerfstudio normalises all poses the
same way in every run) plus ``train_filenames`` / ``val_filenames`` / ``test_filenames``, and symlinks to the
capture's image folders. COLMAP captures are converted to ``transforms.json`` once with nerfstudio's own converter.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np

from difix_ns.io import InputError

COLMAP_MODEL_DIRS = ("colmap/sparse/0", "sparse/0", "sparse")


@dataclass(frozen=True)
class Frame:
    """One photo of the capture: its index in transforms.json, its file_path there, and the camera centre."""

    index: int
    file_path: str
    position: np.ndarray
    forward: np.ndarray

    @property
    def stem(self) -> str:
        return Path(self.file_path).stem


@dataclass
class Scene:
    """A capture ready for splatfacto runs: ``root`` holds transforms.json and the image folders."""

    name: str
    root: Path
    meta: dict
    frames: list[Frame]

    def frame_by_path(self, file_path: str) -> Frame:
        for f in self.frames:
            if f.file_path == file_path:
                return f
        raise KeyError(file_path)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _colmap_model_dir(data: Path) -> Optional[Path]:
    for rel in COLMAP_MODEL_DIRS:
        d = data / rel
        if (d / "cameras.bin").is_file() and (d / "images.bin").is_file():
            return d
    return None


def load_scene(data: Path, work: Path) -> Scene:
    """Read a nerfstudio-data folder (``transforms.json``) or a COLMAP folder (``sparse/0`` + ``images/``).

    COLMAP models are converted into ``work/colmap_scene`` (nerfstudio's ``colmap_to_json``) on first use.
    """
    data = Path(data)
    if not data.is_dir():
        raise InputError(f"--scene {data}: not a directory")
    if (data / "transforms.json").is_file():
        root = data
    else:
        model = _colmap_model_dir(data)
        if model is None:
            raise InputError(
                f"--scene {data}: neither transforms.json (nerfstudio-data) nor a COLMAP model "
                f"({', '.join(d + '/cameras.bin' for d in COLMAP_MODEL_DIRS)}) found"
            )
        if not (data / "images").is_dir():
            raise InputError(f"--scene {data}: COLMAP model found but no images/ folder next to it")
        root = work / "colmap_scene"
        if not (root / "transforms.json").is_file():
            from nerfstudio.process_data.colmap_utils import colmap_to_json

            root.mkdir(parents=True, exist_ok=True)
            colmap_to_json(recon_dir=model, output_dir=root)
            link = root / "images"
            if not link.exists():
                link.symlink_to((data / "images").resolve(), target_is_directory=True)
    try:
        meta = json.loads((root / "transforms.json").read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{root / 'transforms.json'} is not valid JSON: {err}") from err
    raw = meta.get("frames") or []
    if len(raw) < 3:
        raise InputError(f"{root / 'transforms.json'}: needs at least 3 frames, found {len(raw)}")
    frames = []
    for i, fr in enumerate(raw):
        c2w = np.asarray(fr["transform_matrix"], dtype=np.float64)
        # OpenGL convention: the camera looks along -z.
        frames.append(Frame(i, fr["file_path"], c2w[:3, 3].copy(), -c2w[:3, 2].copy()))
    return Scene(name=data.resolve().name, root=root, meta=meta, frames=frames)


def holdout_split(
    frames: Sequence[Frame], mode: Literal["none", "fraction", "interval"], fraction: float, interval: int
) -> tuple[list[Frame], list[Frame]]:
    """(usable, held out): the frames nerfstudio's ``--eval-mode fraction|interval`` would evaluate on are held out,
    so a per-scene fixer never sees the capture's evaluation views."""
    if mode == "none":
        return list(frames), []
    from nerfstudio.data.utils.dataparsers_utils import (
        get_train_eval_split_fraction,
        get_train_eval_split_interval,
    )

    names = [f.file_path for f in frames]
    if mode == "fraction":
        i_train, _ = get_train_eval_split_fraction(names, fraction)
    elif mode == "interval":
        i_train, _ = get_train_eval_split_interval(names, interval)
    else:
        raise InputError(f"unknown holdout mode {mode!r}")
    keep = {int(i) for i in i_train}
    return [f for i, f in enumerate(frames) if i in keep], [f for i, f in enumerate(frames) if i not in keep]


def nearest_frame(target: Frame, candidates: Sequence[Frame], exclude_self: bool = True) -> Frame:
    """The candidate closest to ``target``: camera distance, ties and near-ties broken by viewing direction."""
    best, best_score = None, float("inf")
    scale = np.median([np.linalg.norm(c.position - target.position) for c in candidates]) + 1e-9
    for c in candidates:
        if exclude_self and c.file_path == target.file_path:
            continue
        dist = np.linalg.norm(c.position - target.position) / scale
        angle = 1.0 - float(np.dot(c.forward, target.forward))
        score = dist + angle
        if score < best_score:
            best, best_score = c, score
    if best is None:
        raise InputError(f"no reference frame available for {target.file_path}")
    return best


def write_sub_scene(scene: Scene, folder: Path, train: Sequence[Frame], render: Sequence[Frame]) -> Path:
    """A scene folder training on ``train`` and evaluating (rendering) ``render``; all frames stay listed."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = dict(scene.meta)
    meta["train_filenames"] = [f.file_path for f in train]
    meta["val_filenames"] = [f.file_path for f in render]
    meta["test_filenames"] = [f.file_path for f in render]
    for child in scene.root.iterdir():
        if child.is_dir() and child.name.startswith("images"):
            link = folder / child.name
            if not link.exists():
                link.symlink_to(child.resolve(), target_is_directory=True)
    if meta.get("ply_file_path"):
        src = (scene.root / meta["ply_file_path"]).resolve()
        meta["ply_file_path"] = str(src)
    _atomic_write_text(folder / "transforms.json", json.dumps(meta))
    return folder
