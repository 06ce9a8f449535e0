"""The fix round on disk: the :class:`FixRound` record and its one file format (write / list / load).

A round is ``<run>/difix_rounds/step_<step, 9 digits>/`` with ``{render,fixed,reference,alpha,mask}/NNNN.png`` and
``poses.json`` (format :data:`ROUND_FORMAT`: round-level settings plus one entry per view with its camera, target,
arrival and reference view). Writes are crash-safe: everything goes into a hidden ``.step_*.partial`` folder that is
renamed when complete, and ``poses.json`` is written last, so a folder named ``step_*`` with a ``poses.json`` is a
complete round. Loading checks the format version, the file names (plain names inside the round only) and the image
sizes, and raises :class:`RoundFileError` naming the bad file.

Used by the pipeline (persist, resume) and the viewer (draw the latest round of a finished run).
"""
from __future__ import annotations

import json
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, List, Optional

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from PIL import Image
from torch import Tensor

ROUND_FORMAT = "difix3d-round/1"
"""Format tag in every ``poses.json``; rounds with another tag are refused."""
ROUND_PREFIX = "step_"
"""Folder name of a round: ``step_`` + the step, 9 digits."""
_SUBDIRS = ("render", "fixed", "reference", "alpha", "mask")


class RoundFileError(ValueError):
    """A persisted fix round is unreadable (truncated PNG, bad poses.json, ...); the message names the file."""


@dataclass
class FixRound:
    """One fix round: the novel-view cameras and what Difix made of them.

    Loaded rounds carry ``cameras``, ``fixed``, ``masks`` and ``step``; the other per-view lists are only kept while
    a round is written (renders, references and alphas are saved for inspection, never read back).
    """

    step: int
    """Training step at which the round ran."""
    cameras: Cameras
    """``[N]`` novel-view cameras (their poses are the round's novel poses)."""
    fixed: List[Tensor]
    """N x ``[H, W, 3]`` uint8: the fixed images (the pool's targets)."""
    masks: List[Tensor]
    """N x ``[H, W, 1]`` bool: supervised pixels (rendered opacity above the threshold)."""
    renders: List[Tensor] = field(default_factory=list)
    """N x ``[H, W, 3]`` float in [0, 1]: the raw renders."""
    references: List[Tensor] = field(default_factory=list)
    """N x ``[H, W, 3]`` float in [0, 1]: the reference view given to the fixer, at the render's size."""
    alphas: List[Tensor] = field(default_factory=list)
    """N x ``[H, W, 1]`` float: rendered opacity (accumulation)."""
    arrived: List[bool] = field(default_factory=list)
    """Per view: the pose reached its target this round."""
    reference_index: List[int] = field(default_factory=list)
    """Per view: index of the reference training view."""
    reference_names: List[Optional[str]] = field(default_factory=list)
    """Per view: file name of the reference training view (None when unknown)."""
    info: dict = field(default_factory=dict)
    """Round-level settings written to ``poses.json`` (scene extent, pose step, alpha threshold, fixer, ...)."""

    @property
    def poses(self) -> Tensor:
        """``[N, 3, 4]`` camera-to-world poses of the novel views."""
        return self.cameras.camera_to_worlds

    def __len__(self) -> int:
        return len(self.fixed)


def round_dir_name(step: int) -> str:
    return f"{ROUND_PREFIX}{int(step):09d}"


# ---------------------------------------------------------------- write


def _save_png(path: Path, image_hwc: Tensor) -> None:
    array = image_hwc.detach().cpu()
    if array.dtype != torch.uint8:
        array = (array.float().clamp(0, 1) * 255).round().to(torch.uint8)
    if array.shape[-1] == 1:
        array = array[..., 0]
    Image.fromarray(array.numpy()).save(path, compress_level=1)  # lossless either way; level 1 is ~5x faster


def _view_entry(fix_round: FixRound, i: int, name: str) -> dict:
    cams = fix_round.cameras
    has_ref = i < len(fix_round.reference_index)
    return {
        "file": name,
        "camera_to_world": fix_round.poses[i].tolist(),
        "fx": float(cams.fx[i]),
        "fy": float(cams.fy[i]),
        "cx": float(cams.cx[i]),
        "cy": float(cams.cy[i]),
        "width": int(cams.width[i]),
        "height": int(cams.height[i]),
        "target_index": i,
        "arrived": bool(fix_round.arrived[i]) if i < len(fix_round.arrived) else False,
        "reference_index": int(fix_round.reference_index[i]) if has_ref else None,
        "reference_image": fix_round.reference_names[i] if i < len(fix_round.reference_names) else None,
    }


def write_round(rounds_dir: Path, fix_round: FixRound) -> Path:
    """Write ``fix_round`` to ``rounds_dir/step_<step>/`` atomically; returns that folder.

    Files go into a hidden temporary folder that is renamed when complete: a crash or a full disk mid-round never
    leaves a ``step_*`` folder that looks complete. A stale round of the same step (a run that went past its last
    checkpoint) is replaced.
    """
    rounds_dir = Path(rounds_dir)
    final_dir = rounds_dir / round_dir_name(fix_round.step)
    round_dir = rounds_dir / f".{round_dir_name(fix_round.step)}.partial"
    if round_dir.exists():
        shutil.rmtree(round_dir)
    for sub in _SUBDIRS:
        (round_dir / sub).mkdir(parents=True, exist_ok=True)
    views = []
    try:
        for i in range(len(fix_round.cameras)):
            name = f"{i:04d}.png"
            if i < len(fix_round.renders):
                _save_png(round_dir / "render" / name, fix_round.renders[i])
            _save_png(round_dir / "fixed" / name, fix_round.fixed[i])
            if i < len(fix_round.references):
                _save_png(round_dir / "reference" / name, fix_round.references[i])
            if i < len(fix_round.alphas):
                _save_png(round_dir / "alpha" / name, fix_round.alphas[i])  # float: clamped to [0, 1] there
            _save_png(round_dir / "mask" / name, fix_round.masks[i].to(torch.uint8) * 255)  # exact mask for resume
            views.append(_view_entry(fix_round, i, name))
        meta = {"format": ROUND_FORMAT, "step": int(fix_round.step), **fix_round.info, "views": views}
        # default=str: Path options of the fixer config; poses.json is written last (marks the round complete)
        (round_dir / "poses.json").write_text(json.dumps(meta, indent=1, default=str))
        if final_dir.exists():
            shutil.rmtree(final_dir)
        round_dir.rename(final_dir)
    finally:
        if round_dir.exists():
            shutil.rmtree(round_dir, ignore_errors=True)
    return final_dir


def cpu_copy(fix_round: FixRound) -> FixRound:
    """The round with every image on the CPU as the 8-bit values its PNGs hold (the background writer must not touch
    device tensors). Images on a GPU are quantised there and copied without waiting (into pinned memory): the caller
    synchronises before the copies are read."""

    def to_cpu(images: list[Tensor], unit: bool = True) -> list[Tensor]:
        out = []
        for t in images:
            t = t.detach()
            if unit and t.dtype != torch.uint8:  # what _save_png would make of it
                t = (t.float().clamp(0, 1) * 255).round().to(torch.uint8)
            out.append(t.to("cpu", non_blocking=t.is_cuda))
        return out

    return replace(fix_round, renders=to_cpu(fix_round.renders), fixed=to_cpu(fix_round.fixed),
                   references=to_cpu(fix_round.references), alphas=to_cpu(fix_round.alphas),
                   masks=to_cpu(fix_round.masks, unit=False))


class RoundWriter:
    """Writes rounds on one background thread while training goes on (PNG encoding releases the GIL).

    ``wait()`` blocks until the last round is on disk and re-raises its error; the pipeline waits before the next
    round and before every checkpoint, so a checkpoint never refers to a round that is not complete on disk. When it
    returns, the round's arguments (CPU copies of its images) are released too: the job drops them before it ends,
    instead of the executor's work item holding them until its thread gets round to deleting it.
    """

    def __init__(self) -> None:
        self._executor: Optional[ThreadPoolExecutor] = None
        self._pending: Optional[Future] = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self.wait()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="difix-round-writer")
        job = [fn, args]

        def run_and_release() -> Any:
            call, call_args = job
            job.clear()
            return call(*call_args)  # this frame, the last holder of the arguments, ends before the result is set

        self._pending = self._executor.submit(run_and_release)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()


# ---------------------------------------------------------------- list / load


def list_rounds(rounds_dir: Path) -> list[tuple[int, Path]]:
    """Completed rounds (those with ``poses.json``) in ``rounds_dir``, sorted by step."""
    found = []
    for d in Path(rounds_dir).glob(f"{ROUND_PREFIX}*"):
        digits = d.name[len(ROUND_PREFIX):]
        if (d / "poses.json").is_file() and digits.isdigit():
            found.append((int(digits), d))
    return sorted(found)


def _load_png(path: Path) -> Tensor:
    if not path.exists():
        raise RoundFileError(f"Difix3D round file missing: {path}")
    try:
        with Image.open(path) as image:
            image.load()  # decodes fully: a truncated file fails here, naming it, not later in training
            return torch.from_numpy(np.array(image))
    except (OSError, ValueError, SyntaxError) as err:
        raise RoundFileError(f"unreadable Difix3D round file {path}: {err}") from None


def _round_file(round_dir: Path, sub: str, name: Any) -> Path:
    """``round_dir/sub/name`` for a plain file name from poses.json (never a path leaving the run)."""
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", "..") or "\\" in name:
        raise RoundFileError(f"{round_dir / 'poses.json'}: view file {name!r} is not a plain file name in the round")
    return round_dir / sub / name


def load_round(round_dir: Path) -> FixRound:
    """Read a complete round (cameras, fixed images, masks, step); :class:`RoundFileError` names a bad file."""
    round_dir = Path(round_dir)
    meta_path = round_dir / "poses.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RoundFileError(f"corrupt Difix3D round metadata {meta_path}: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != ROUND_FORMAT:
        raise RoundFileError(f"{meta_path}: unknown round format (expected {ROUND_FORMAT})")
    views = meta.get("views")
    if not isinstance(views, list) or not views or not all(isinstance(v, dict) for v in views):
        raise RoundFileError(f"{meta_path}: no views")
    try:
        return _load_views(round_dir, meta, views)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AssertionError) as err:
        if isinstance(err, RoundFileError):
            raise
        raise RoundFileError(f"corrupt Difix3D round metadata {meta_path}: {type(err).__name__}: {err}") from None


def _load_views(round_dir: Path, meta: dict, views: list) -> FixRound:
    col = lambda k, dtype=torch.float32: torch.tensor([[v[k]] for v in views], dtype=dtype)  # noqa: E731
    poses = torch.tensor([v["camera_to_world"] for v in views], dtype=torch.float32)
    cameras = Cameras(
        camera_to_worlds=poses,
        fx=col("fx"),
        fy=col("fy"),
        cx=col("cx"),
        cy=col("cy"),
        width=col("width", torch.long),
        height=col("height", torch.long),
        camera_type=CameraType.PERSPECTIVE,
    )
    images, masks = [], []
    for v in views:
        image = _load_png(_round_file(round_dir, "fixed", v["file"]))
        mask = _load_png(_round_file(round_dir, "mask", v["file"]))
        if image.ndim != 3 or image.shape[-1] < 3 or tuple(image.shape[:2]) != (v["height"], v["width"]):
            raise RoundFileError(f"{round_dir / 'fixed' / v['file']}: size {tuple(image.shape)} does not match "
                                 f"its camera ({v['height']}x{v['width']})")
        if tuple(mask.shape[:2]) != tuple(image.shape[:2]):
            raise RoundFileError(f"{round_dir / 'mask' / v['file']}: size does not match the fixed image")
        images.append(image[..., :3].contiguous())
        masks.append(mask.reshape(*mask.shape[:2], -1)[..., :1] > 127)
    info = {k: v for k, v in meta.items() if k not in ("format", "step", "views")}
    return FixRound(
        step=int(meta["step"]),
        cameras=cameras,
        fixed=images,
        masks=masks,
        arrived=[bool(v.get("arrived", False)) for v in views],
        reference_index=[v.get("reference_index") for v in views],
        reference_names=[v.get("reference_image") for v in views],
        info=info,
    )


def load_latest_round(rounds_dir: Optional[Path]) -> Optional[FixRound]:
    """The latest complete round under ``rounds_dir`` (None when there is none); a corrupt one raises
    :class:`RoundFileError`."""
    if rounds_dir is None or not Path(rounds_dir).is_dir():
        return None
    rounds = list_rounds(Path(rounds_dir))
    return load_round(rounds[-1][1]) if rounds else None
