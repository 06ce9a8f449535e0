"""Pair curation: (degraded render, clean photo, nearest clean reference) triplets from one capture.

Recipes (Difix3D paper Sec. 4.1.1 / NVIDIA Fixer's recipe; difix3d.md §2.3):

- ``sparse``: train splatfacto on every n-th usable view, render the views in between;
- ``underfit``: train on all usable views and render them from the model at 25-75 % of the schedule;
- ``cross``: split the trajectory into contiguous blocks, train without one block and render that block;
- ``holdout`` (evaluation only, not a default): train on every usable view and render the held-out views
  (``holdout`` != none); these pairs always go to "test". They are what a 3D method trained on the capture sees.

Outputs (``out/``)::

    pairs.json                      {"train": {id: {image, target_image, ref_image, prompt, recipe, ...}},
                                     "test": {...}}
    clean/<frame>.png               photos at the resolution splatfacto trained on (targets and references)
    renders/<run>/<frame>[_s<step>].png
    runs/<run>/done.json            the run's pair records; a finished run is skipped on the next call
    work/                           sub-scenes and splatfacto outputs

Paths in pairs.json are relative to its folder (``absolute_paths`` writes absolute ones, as upstream's loader
expects). Pairs whose target frame has ``index % test_every == 1`` go to "test".
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence

import numpy as np
import torch

from difix_ns.io import InputError, save_png
from difix_ns.training.scenes import Frame, Scene, holdout_split, load_scene, nearest_frame, write_sub_scene
from difix_ns.training.splat_runs import SplatSettings

PROMPT = "remove degradation"
RECIPES = ("sparse", "underfit", "cross")
EVAL_RECIPES = ("holdout",)
PAIRS_FILE = "pairs.json"


@dataclass
class MakePairsConfig:
    """What ``difix-make-pairs`` builds."""

    scene: Path = Path(".")
    """nerfstudio-data folder (transforms.json) or COLMAP folder (sparse/0 + images/)."""
    out: Path = Path("pairs")
    """Output folder (pairs.json, clean/, renders/, runs/, work/). Re-running resumes: finished runs are skipped."""
    recipes: tuple[Literal["sparse", "underfit", "cross", "holdout"], ...] = RECIPES
    """Which degradation recipes to run."""
    steps: int = 2000
    """splatfacto iterations of every run (short schedules on purpose)."""
    sparse_every: int = 4
    """sparse: train on every n-th usable view, render the others."""
    sparse_offsets: int = 1
    """sparse: number of runs, each shifting which views train by one."""
    underfit_fractions: tuple[float, ...] = (0.25, 0.5, 0.75)
    """underfit: fractions of ``steps`` at which the training views are rendered."""
    cross_blocks: int = 4
    """cross: contiguous trajectory blocks; each run leaves one block out and renders it."""
    cross_runs: Optional[int] = None
    """cross: run only this many of the blocks (evenly spaced); None runs all."""
    holdout: Literal["none", "fraction", "interval"] = "none"
    """Views never used (not trained, rendered or referenced): nerfstudio's eval split of the capture. A per-scene
    fixer uses the mode ns-train will evaluate with (nerfstudio-data's default is "fraction")."""
    holdout_fraction: float = 0.9
    """Train fraction of ``holdout fraction`` (nerfstudio's --train-split-fraction)."""
    holdout_interval: int = 8
    """Interval of ``holdout interval`` (nerfstudio's --eval-interval)."""
    split: Literal["mixed", "train", "test"] = "mixed"
    """Where pairs go: "mixed" uses ``test_every``; "train"/"test" put every pair there (e.g. an evaluation scene)."""
    test_every: int = 6
    """mixed split: pairs whose target frame index % test_every == 1 are test pairs (0: none)."""
    absolute_paths: bool = False
    """Write absolute image paths into pairs.json (upstream's train_difix.py opens them as given)."""
    splat: SplatSettings = field(default_factory=SplatSettings)
    """splatfacto settings of the runs."""


@dataclass
class RunPlan:
    """One splatfacto run: which frames train, which are rendered at which steps."""

    run_id: str
    recipe: str
    train: list[Frame]
    render: list[Frame]
    render_split: str  # "train" (underfit: the training views) or "eval"
    render_steps: list[int]


def _atomic_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _save_png(path: Path, rgb: torch.Tensor) -> None:
    """[H,W,3] float in [0,1] -> 8-bit PNG, written atomically."""
    save_png(rgb.permute(2, 0, 1), path, atomic=True)


def check_config(cfg: MakePairsConfig) -> None:
    if cfg.steps < 1:
        raise InputError(f"--steps must be >= 1, got {cfg.steps}")
    if not cfg.recipes:
        raise InputError("--recipes is empty; choose from " + ", ".join(RECIPES))
    if cfg.sparse_every < 2:
        raise InputError(f"--sparse-every must be >= 2, got {cfg.sparse_every}")
    if cfg.cross_blocks < 2:
        raise InputError(f"--cross-blocks must be >= 2, got {cfg.cross_blocks}")
    unknown = sorted(set(cfg.recipes) - set(RECIPES + EVAL_RECIPES))
    if unknown:
        raise InputError(f"unknown recipe(s) {unknown}; choose from {', '.join(RECIPES + EVAL_RECIPES)}")
    bad = [f for f in cfg.underfit_fractions if not 0 < f < 1]
    if bad:
        raise InputError(f"--underfit-fractions must lie in (0, 1), got {bad}")


def plan_runs(cfg: MakePairsConfig, frames: list[Frame], held: Sequence[Frame] = ()) -> list[RunPlan]:
    """The runs of every requested recipe over the usable frames (in transforms.json order)."""
    n = len(frames)
    plans: list[RunPlan] = []
    if "sparse" in cfg.recipes:
        for off in range(min(cfg.sparse_offsets, cfg.sparse_every)):
            train = [f for i, f in enumerate(frames) if i % cfg.sparse_every == off]
            render = [f for i, f in enumerate(frames) if i % cfg.sparse_every != off]
            plans.append(RunPlan(f"sparse{cfg.sparse_every}_o{off}", "sparse", train, render, "eval", [cfg.steps]))
    if "underfit" in cfg.recipes:
        steps = sorted({max(1, round(fr * cfg.steps)) for fr in cfg.underfit_fractions})
        plans.append(RunPlan("underfit", "underfit", list(frames), list(frames), "train", steps))
    if "cross" in cfg.recipes:
        blocks = np.array_split(np.arange(n), cfg.cross_blocks)
        chosen = range(cfg.cross_blocks)
        if cfg.cross_runs is not None:
            k = max(1, min(cfg.cross_runs, cfg.cross_blocks))
            chosen = sorted({round(float(x)) for x in np.linspace(0, cfg.cross_blocks - 1, k)})
        for b in chosen:
            inside = {int(i) for i in blocks[b]}
            train = [f for i, f in enumerate(frames) if i not in inside]
            render = [f for i, f in enumerate(frames) if i in inside]
            if len(train) >= 2 and render:
                plans.append(RunPlan(f"cross{cfg.cross_blocks}_b{b}", "cross", train, render, "eval", [cfg.steps]))
    if "holdout" in cfg.recipes:
        if not held:
            raise InputError("recipe holdout needs held-out views: set --holdout fraction|interval")
        plans.append(RunPlan("holdout", "holdout", list(frames), list(held), "eval", [cfg.steps]))
    for p in plans:
        if len(p.train) < 2:
            raise InputError(f"recipe {p.recipe}: run {p.run_id} would train on {len(p.train)} view(s); the scene has "
                             f"{n} usable views (lower --sparse-every / --cross-blocks or use another scene)")
    return plans


def _pair_split(cfg: MakePairsConfig, frame: Frame, recipe: str) -> str:
    if recipe in EVAL_RECIPES:
        return "test"
    if cfg.split != "mixed":
        return cfg.split
    if cfg.test_every > 0 and frame.index % cfg.test_every == 1 % cfg.test_every:
        return "test"
    return "train"


def _run_done(out: Path, run_id: str) -> Optional[list[dict]]:
    done = out / "runs" / run_id / "done.json"
    if not done.is_file():
        return None
    try:
        records = json.loads(done.read_text())["pairs"]
    except (json.JSONDecodeError, KeyError):
        return None
    for rec in records:
        for key in ("image", "target_image", "ref_image"):
            if not (out / rec[key]).is_file():
                return None
    return records


def _rel(out: Path, path: Path) -> str:
    return str(path.relative_to(out))


def execute_run(cfg: MakePairsConfig, scene: Scene, plan: RunPlan, out: Path) -> list[dict]:
    """Train one splatfacto run and write its renders, clean photos and records."""
    from difix_ns.training.splat_runs import release_memory, train_and_render

    sub = write_sub_scene(scene, out / "work" / "scenes" / plan.run_id, plan.train, plan.render)
    by_name = {Path(f.file_path).name: f for f in scene.frames}
    wanted = {Path(f.file_path).name for f in plan.render}
    records: list[dict] = []
    many_steps = len(plan.render_steps) > 1

    def clean_path(frame: Frame) -> Path:
        return out / "clean" / f"{frame.stem}.png"

    def sink(step: int, split: str, key: str, rgb: torch.Tensor, gt: torch.Tensor) -> None:
        frame = by_name[key]
        suffix = f"_s{step:06d}" if many_steps else ""
        render_path = out / "renders" / plan.run_id / f"{frame.stem}{suffix}.png"
        _save_png(render_path, rgb)
        target = clean_path(frame)
        if not target.is_file():
            _save_png(target, gt)
        ref = nearest_frame(frame, plan.train, exclude_self=True)
        records.append(
            {
                "id": f"{scene.name}_{plan.run_id}_{frame.stem}{suffix}",
                "split": _pair_split(cfg, frame, plan.recipe),
                "image": _rel(out, render_path),
                "target_image": _rel(out, target),
                "ref_image": _rel(out, clean_path(ref)),
                "prompt": PROMPT,
                "recipe": plan.recipe,
                "scene": scene.name,
                "run": plan.run_id,
                "step": step,
                "steps": cfg.steps,
                "frame": frame.file_path,
                "ref_frame": ref.file_path,
            }
        )

    def clean_sink(key: str, gt: torch.Tensor) -> None:
        frame = by_name.get(key)
        if frame is not None and not clean_path(frame).is_file():
            _save_png(clean_path(frame), gt)

    render_at = [(s, plan.render_split) for s in plan.render_steps]
    train_and_render(
        sub, out / "work" / "runs", plan.run_id, cfg.steps, cfg.splat, render_at, sink, wanted, clean_sink=clean_sink
    )
    release_memory()
    missing = [r["ref_image"] for r in records if not (out / r["ref_image"]).is_file()]
    if missing:
        raise RuntimeError(f"run {plan.run_id}: reference photos were not written: {missing[:3]}")
    _atomic_json(out / "runs" / plan.run_id / "done.json", {"pairs": records})
    return records


def write_pairs_json(out: Path, records: list[dict], absolute: bool) -> dict:
    data: dict[str, dict] = {"train": {}, "test": {}}
    for rec in records:
        entry = {k: v for k, v in rec.items() if k not in ("id", "split")}
        if absolute:
            for key in ("image", "target_image", "ref_image"):
                entry[key] = str((out / entry[key]).resolve())
        data[rec["split"]][rec["id"]] = entry
    _atomic_json(out / PAIRS_FILE, data)
    return data


def make_pairs(cfg: MakePairsConfig, on_event: Optional[Callable[[str, dict], None]] = None) -> dict:
    """Run every planned run that is not finished yet; returns a summary
    ``{"pairs_json", "runs_done", "runs_skipped", "counts": {split: n}, "recipes": {recipe: n}}``."""
    check_config(cfg)
    out = Path(cfg.out)
    scene = load_scene(Path(cfg.scene), out / "work")
    usable, held = holdout_split(scene.frames, cfg.holdout, cfg.holdout_fraction, cfg.holdout_interval)
    plans = plan_runs(cfg, usable, held)
    notify = on_event or (lambda kind, info: None)
    out.mkdir(parents=True, exist_ok=True)
    all_records: list[dict] = []
    done, skipped = [], []
    for plan in plans:
        previous = _run_done(out, plan.run_id)
        if previous is not None:
            skipped.append(plan.run_id)
            all_records.extend(previous)
            notify("skip", {"run": plan.run_id, "pairs": len(previous)})
            continue
        notify("start", {"run": plan.run_id, "train": len(plan.train), "render": len(plan.render)})
        records = execute_run(cfg, scene, plan, out)
        all_records.extend(records)
        done.append(plan.run_id)
        write_pairs_json(out, all_records, cfg.absolute_paths)  # partial results stay usable
        notify("done", {"run": plan.run_id, "pairs": len(records)})
    data = write_pairs_json(out, all_records, cfg.absolute_paths)
    recipes: dict[str, int] = {}
    for rec in all_records:
        recipes[rec["recipe"]] = recipes.get(rec["recipe"], 0) + 1
    return {
        "pairs_json": str(out / PAIRS_FILE),
        "scene": scene.name,
        "held_out_frames": [f.file_path for f in held],
        "runs_done": done,
        "runs_skipped": skipped,
        "counts": {k: len(v) for k, v in data.items()},
        "recipes": recipes,
    }
