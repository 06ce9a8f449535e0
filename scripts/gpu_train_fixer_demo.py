#!/usr/bin/env python
r"""GPU demonstration: train a *small* Difix fixer from random initialisation on pairs made by ``difix-make-pairs``
and measure, honestly, whether it helps on a scene it never saw.

1. pairs (sparse / underfit / cross recipes, short splatfacto runs) from strecha castle-P30, Herz-Jesus-P25 and
   fox (images_4); fox keeps nerfstudio's eval views (every 8th) out and also renders them ("holdout" pairs);
2. ``difix-train --architecture small`` from scratch, as long as the time budget allows;
3. strecha entry-P10 (never trained on): splatfacto on every 2nd view, render the other 5; PSNR / SSIM / LPIPS of the
   raw renders vs the fixed renders against the photos;
4. per-scene fixer: the generic fixer fine-tuned on fox pairs only, evaluated on fox's held-out views (raw vs
   generic vs per-scene), if time is left.

Writes into --out: ``gpu_train_fixer_demo.json`` (updated after every phase), ``fixer_small.tar`` (the trained fixer
in the HF layout, bf16 weights; ``tar xf`` then ``--pipeline.fixer.model-name fixer_small``),
``fixer_small_fox.tar`` (per-scene), ``eval_train.csv`` and ``entry_P10_examples.png`` (raw | fixed | photo).

    source .device/setup.sh && python scripts/gpu_train_fixer_demo.py --out $OUT
    python scripts/gpu_train_fixer_demo.py --smoke-cpu --out /tmp/demo   # tiny CPU dry run (not a result)
"""
import json
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch
import tyro

NOTE = ("The fixer is trained from RANDOM initialisation for a few minutes on a few hundred pairs of three scenes "
        "(no pretrained Difix weights are reachable here). It is a tiny model (`small`, ~5M parameters) vs the "
        "866M-parameter UNet of nvidia/difix: these numbers show what a from-scratch fixer learns in this budget, "
        "not what Difix3D achieves.")


def stage_alexnet(work: Path) -> str:
    """Offline GPU box: give the metric cache the AlexNet weights .device ships (DEVICE_ALEXNET_FEATURES)."""
    from difix_ns.metrics.weights import stage_features

    return stage_features("alexnet", os.environ.get("DEVICE_ALEXNET_FEATURES"), work / "metric_cache")


def stage_vgg(shipped: Path) -> bool:
    """VGG16 features for the LPIPS-vgg / Gram losses: from the metric cache, or copied from ``shipped`` (the lead
    copies ~/.cache/difix_ns/backbones/vgg16_imagenet_features.pth to .device/). Never probes the network."""
    from difix_ns.metrics.weights import cached_features_path

    target = cached_features_path("vgg16")
    if target.exists():
        return True
    if not shipped.is_file():
        print(f"no VGG16 features at {shipped}: the loss uses LPIPS-alex and no Gram term")
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shipped, target)
    return True


def shrink_scene(src: Path, dst: Path, image_dir: str, factor: int, keep_every: int) -> Path:
    """A smaller copy (every keep_every-th frame, images shrunk by factor) for the CPU dry run."""
    from PIL import Image

    meta = json.loads((src / "transforms.json").read_text())
    meta["frames"] = meta["frames"][::keep_every][:8]
    for key in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
        if key in meta:
            meta[key] = meta[key] / factor
    for fr in meta["frames"]:
        for key in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
            if key in fr:
                fr[key] = fr[key] / factor
    (dst / image_dir).mkdir(parents=True, exist_ok=True)
    for fr in meta["frames"]:
        name = Path(fr["file_path"]).name
        im = Image.open(src / image_dir / name)
        im.resize((im.width // factor, im.height // factor), Image.LANCZOS).save(dst / image_dir / name)
    (dst / "transforms.json").write_text(json.dumps(meta))
    return dst


def images_of(records: list[dict], root: Path):
    from PIL import Image

    def load(rel: str) -> torch.Tensor:
        arr = np.asarray(Image.open(root / rel).convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1)

    raw = torch.stack([load(r["image"]) for r in records])
    gt = torch.stack([load(r["target_image"]) for r in records])
    ref = torch.stack([load(r["ref_image"]) for r in records])[:, None]
    return raw, gt, ref


def evaluate_fixers(records: list[dict], root: Path, fixers: dict, metrics) -> dict:
    """Mean and per-view PSNR/SSIM/LPIPS of the raw renders and of every fixer's output, against the photos."""
    raw, gt, ref = images_of(records, root)
    result = {"views": [r["frame"] for r in records], "raw": metrics(raw, gt),
              "raw_per_view": {k: v.tolist() for k, v in metrics.per_image(raw, gt).items()}}
    outputs = {}
    for name, fixer in fixers.items():
        fixed = torch.cat([fixer.fix(raw[i : i + 1], ref[i : i + 1] if fixer.uses_references else None)
                           for i in range(len(raw))])
        outputs[name] = fixed
        result[name] = metrics(fixed, gt)
        result[f"{name}_per_view"] = {k: v.tolist() for k, v in metrics.per_image(fixed, gt).items()}
    return result, (raw, gt, outputs)


def save_grid(path: Path, raw, gt, fixed, n: int = 3) -> None:
    from difix_ns.io import save_png

    rows = []
    for i in range(min(n, len(raw))):
        rows.append(torch.cat([raw[i], fixed[i], gt[i]], dim=2))
    save_png(torch.cat(rows, dim=1), path)


def tar_dir(src: Path, dst: Path, arcname: str) -> int:
    with tarfile.open(dst, "w") as tar:
        tar.add(src, arcname=arcname)
    return dst.stat().st_size


@dataclass
class FixerDemoConfig:
    """Options of the from-scratch fixer demonstration."""

    out: Path
    """output folder (JSON, fixer tars, CSV, example PNG)"""
    data_root: Optional[Path] = None
    """folder with fox/ and strecha/ (default: .device/data, else ../shared/data)"""
    smoke_cpu: bool = False
    """tiny CPU dry run: shrunk scenes, tiny model, few steps"""
    budget_s: float = 420.0
    """wall-clock budget of the whole script"""
    splat_steps: int = 1500
    """splatfacto iterations per pair-making run"""
    train_seconds: float = 170.0
    """upper bound on generic fixer training"""
    per_scene_seconds: float = 30.0
    """fox per-scene fine-tuning (0: skip)"""
    batch_size: int = 8
    """training batch size"""
    crop: int = 256
    """training crop (pixels)"""
    lr: float = 3e-4
    """learning rate (the per-scene fine-tune uses a third of it)"""
    pairs_fraction: float = 0.6
    """start no further training scene once this fraction of the budget is spent"""
    work: Optional[Path] = None
    """work folder (default: a temporary one)"""
    vgg_features: Path = ROOT / ".device" / "vgg16_imagenet_features.pth"
    """VGG16 features file to stage into the metric cache (LPIPS-vgg + Gram losses)"""


def main(argv=None) -> int:
    args = tyro.cli(FixerDemoConfig, args=argv, description=__doc__, config=(tyro.conf.FlagCreatePairsOff,))
    t0 = time.perf_counter()
    smoke = args.smoke_cpu
    if not smoke and not torch.cuda.is_available():
        sys.exit("error: this demonstration needs a CUDA GPU (use --smoke-cpu for a CPU dry run)")
    data_root = args.data_root
    if data_root is None:
        data_root = ROOT / ".device" / "data" if (ROOT / ".device" / "data").is_dir() else ROOT / ".." / "shared" / "data"
    scenes = {  # insertion order = pair-making order
        "castle-P30": (data_root / "strecha" / "castle-P30", "images", None),
        "Herz-Jesus-P25": (data_root / "strecha" / "Herz-Jesus-P25", "images", None),
        "fox": (data_root / "fox", "images_4", 4),
    }
    eval_scene = ("entry-P10", data_root / "strecha" / "entry-P10", "images", None)
    for name, (path, img_dir, _) in list(scenes.items()) + [(eval_scene[0], eval_scene[1:])]:
        path, img_dir = (path, img_dir) if name != "entry-P10" else (eval_scene[1], eval_scene[2])
        if not (path / "transforms.json").is_file() or not (path / img_dir).is_dir():
            sys.exit(f"error: scene {name}: {path}/transforms.json or {path}/{img_dir}/ missing")
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="fixer_demo_"))
    work.mkdir(parents=True, exist_ok=True)

    report = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor()})",
        "smoke_cpu": smoke, "torch": torch.__version__, "python": platform.python_version(), "note": NOTE,
        "alexnet": stage_alexnet(work), "phases": {}, "timing_s": {},
    }
    if smoke:
        report["note"] = "CPU DRY RUN with a tiny random model and a few steps: plumbing only, numbers mean nothing."
    json_path = args.out / "gpu_train_fixer_demo.json"

    def save() -> None:
        report["timing_s"]["total"] = round(time.perf_counter() - t0, 1)
        tmp = json_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2))
        os.replace(tmp, json_path)

    from difix_ns.training.pairs import MakePairsConfig, make_pairs
    from difix_ns.training.splat_runs import SplatSettings

    if smoke:
        small = work / "small_scenes"
        for name, (path, img_dir, ds) in list(scenes.items()):
            scenes[name] = (shrink_scene(path, small / name, img_dir, 4, 3 if name == "fox" else 2), img_dir, ds)
        eval_scene = ("entry-P10", shrink_scene(eval_scene[1], small / "entry-P10", "images", 4, 1), "images", None)

    def splat(ds):
        if smoke:
            return SplatSettings(num_random=200, sh_degree=0, downscale_factor=ds)
        return SplatSettings(downscale_factor=ds)

    steps = 6 if smoke else args.splat_steps
    # 1. pairs: the evaluation scene first (essential), then the training scenes while the budget allows ------------
    t = time.perf_counter()
    eval_cfg = MakePairsConfig(scene=eval_scene[1], out=work / "pairs" / "entry-P10", steps=steps, sparse_every=2,
                               recipes=("sparse",), split="test", splat=splat(None))
    report["phases"]["eval_pairs"] = make_pairs(eval_cfg) | {"seconds": round(time.perf_counter() - t, 1)}
    save()
    pair_files = []
    report["phases"]["pairs"] = {}
    # CPU dry run: fewer runs (the CPU rasterizer is slow); every recipe still runs once
    smoke_recipes = {"castle-P30": ("underfit",), "Herz-Jesus-P25": ("cross",), "fox": ("sparse", "holdout")}
    for name, (path, _, ds) in scenes.items():
        spent = time.perf_counter() - t0
        if not smoke and pair_files and spent > args.pairs_fraction * args.budget_s:
            report["phases"]["pairs"][name] = {"skipped": f"budget: {spent:.0f} s spent before this scene"}
            continue
        t = time.perf_counter()
        cfg = MakePairsConfig(
            scene=path, out=work / "pairs" / name, steps=steps, sparse_every=3,
            underfit_fractions=(0.5,) if smoke else (0.25, 0.5, 0.75),
            cross_blocks=4, cross_runs=1 if smoke else 2, splat=splat(ds),
            holdout="interval" if name == "fox" else "none", holdout_interval=8 if not smoke else 4,
            recipes=smoke_recipes[name] if smoke else (
                ("sparse", "underfit", "cross", "holdout") if name == "fox" else ("sparse", "underfit", "cross")),
        )
        summary = make_pairs(cfg)
        summary["seconds"] = round(time.perf_counter() - t, 1)
        report["phases"]["pairs"][name] = summary
        pair_files.append(cfg.out / "pairs.json")
        print(f"pairs {name}: {summary['counts']} in {summary['seconds']} s", flush=True)
        save()
    report["timing_s"]["pairs"] = round(time.perf_counter() - t0, 1)
    save()

    # 2. generic fixer from scratch --------------------------------------------------------------------------------
    from difix_ns.training.trainer import LossConfig, TrainConfig, train

    use_vgg = not smoke and stage_vgg(args.vgg_features)
    report["loss_backbone"] = "vgg16 (LPIPS-vgg + Gram)" if use_vgg else "alexnet (LPIPS-alex, no Gram)"
    loss = LossConfig(lpips_net="vgg" if use_vgg else "alex", gram=0.5 if use_vgg else 0.0, gram_warmup=1000,
                      gram_crop=224)
    remaining = args.budget_s - (time.perf_counter() - t0)
    reserve = 25.0 + (args.per_scene_seconds + 25.0 if args.per_scene_seconds > 0 else 0.0)
    train_seconds = max(20.0, min(args.train_seconds, remaining - reserve))
    tcfg = TrainConfig(
        out=work / "fixer", data=tuple(pair_files), architecture="tiny" if smoke else "small", lr=args.lr,
        lr_warmup_steps=0 if smoke else 100, max_steps=3 if smoke else 100000, max_seconds=None if smoke else train_seconds,
        batch_size=2 if smoke else args.batch_size, crop=64 if smoke else args.crop, loss=loss,
        eval_every=2 if smoke else 500, eval_pairs=4 if smoke else 40, checkpoint_every=0 if smoke else 2000,
        num_workers=0 if smoke else 6, save_dtype="float32" if smoke else "bfloat16", seed=0,
    )
    report["phases"]["train"] = {"config": {k: str(v) for k, v in vars(tcfg).items() if k != "pairs"},
                                 "loss": vars(loss), "planned_seconds": train_seconds}
    save()
    t = time.perf_counter()
    summary = train(tcfg)
    report["phases"]["train"].update(summary)
    report["timing_s"]["train"] = round(time.perf_counter() - t, 1)
    if (tcfg.out / "eval.csv").is_file():
        shutil.copyfile(tcfg.out / "eval.csv", args.out / "eval_train.csv")
    size = tar_dir(tcfg.out / "model", args.out / "fixer_small.tar", "fixer_small")
    report["phases"]["train"]["tar_bytes"] = size
    save()

    # 3. entry-P10 (never trained on) ------------------------------------------------------------------------------
    from difix_ns.fixer import DifixFixer
    from difix_ns.metrics import ImageMetrics

    device = "cuda" if torch.cuda.is_available() else "cpu"
    metrics = ImageMetrics(device, perceptual=("lpips",))
    generic = DifixFixer(model_name=str(tcfg.out / "model"), device=device, dtype="float32", batch_size=1)
    eval_root = eval_cfg.out
    eval_json = json.loads((eval_root / "pairs.json").read_text())
    records = [dict(v, id=k) for k, v in eval_json["test"].items()]
    result, (raw, gt, outs) = evaluate_fixers(records, eval_root, {"fixed": generic}, metrics)
    result["delta"] = {k: result["fixed"][k] - result["raw"][k] for k in result["raw"]}
    report["phases"]["entry_P10"] = result
    save_grid(args.out / "entry_P10_examples.png", raw, gt, outs["fixed"])
    report["timing_s"]["entry_P10_eval"] = round(time.perf_counter() - t0, 1)
    save()

    # 4. per-scene fixer on fox ------------------------------------------------------------------------------------
    remaining = args.budget_s - (time.perf_counter() - t0) - 20.0
    fox_done = (work / "pairs" / "fox" / "pairs.json") in pair_files
    if args.per_scene_seconds > 0 and fox_done and (smoke or remaining > 15):  # the dry run ignores the budget
        fox_root = work / "pairs" / "fox"
        fox = json.loads((fox_root / "pairs.json").read_text())
        held = [dict(v, id=k) for k, v in fox["test"].items() if v["recipe"] == "holdout"]
        shutil.copytree(tcfg.out / "model", work / "generic_start")
        pcfg = TrainConfig(
            out=work / "fixer_fox", data=(fox_root / "pairs.json",), model_name=str(work / "generic_start"),
            trainable="all", lr=args.lr / 3, max_steps=2 if smoke else 100000,
            max_seconds=None if smoke else min(args.per_scene_seconds, remaining), batch_size=tcfg.batch_size,
            crop=tcfg.crop, loss=loss, eval_every=0, eval_pairs=4 if smoke else 20, checkpoint_every=0,
            num_workers=tcfg.num_workers, save_dtype=tcfg.save_dtype,
        )
        t = time.perf_counter()
        psummary = train(pcfg)
        per_scene = DifixFixer(model_name=str(pcfg.out / "model"), device=device, dtype="float32", batch_size=1)
        fres, _ = evaluate_fixers(held, fox_root, {"generic": generic, "per_scene": per_scene}, metrics)
        report["phases"]["per_scene_fox"] = {"train": psummary, "heldout_eval": fres,
                                             "seconds": round(time.perf_counter() - t, 1)}
        tar_dir(pcfg.out / "model", args.out / "fixer_small_fox.tar", "fixer_small_fox")
    else:
        why = "fox pairs were skipped" if not fox_done else f"not enough time left ({remaining:.0f} s)"
        report["phases"]["per_scene_fox"] = {"skipped": why}
    save()
    print(json.dumps({k: report["phases"]["entry_P10"][k] for k in ("raw", "fixed", "delta")}, indent=2))
    print(f"total {report['timing_s']['total']} s; wrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
