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

Scales (``--scale``; the sizes are in ``SCALES`` below, options given on the command line override them):
  gpu    stored resolution (strecha 512x341, fox 270x480), 1500-step splatfacto runs, bf16; needs CUDA.
  cpu    the same steps at CPU scale: images shrunk 4x, 600-step runs, one torch thread, about an hour.
  --smoke-cpu  8 frames per scene, 6-step runs, the tiny model for 3 steps: plumbing only.

Writes into --out: ``gpu_train_fixer_demo.json`` (``cpu_train_fixer_demo.json`` at CPU scale; updated after every
phase), ``fixer_small.tar`` (the trained fixer in the HF layout, bf16 weights on the GPU; ``tar xf`` then
``--pipeline.fixer.model-name fixer_small``), ``fixer_small_fox.tar`` (per-scene), ``eval_train.csv`` and
``entry_P10_examples.png`` (raw | fixed | photo). Pairs made in --work are reused by a later call.

    source .device/setup.sh && python scripts/gpu_train_fixer_demo.py --out $OUT
    OMP_NUM_THREADS=1 python scripts/gpu_train_fixer_demo.py --scale cpu --out /tmp/cpu_demo --work /tmp/cpu_work
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
from typing import Literal, Optional

import numpy as np
import torch
import tyro

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOTE_CPU = ("CPU-SCALE run: the fixer is trained from RANDOM initialisation on ONE CPU thread for tens of minutes, on "
            "images shrunk 4x (strecha 128x85, fox 67x120) with pairs from short splatfacto runs (no pretrained Difix "
            "weights are reachable here). It is the tiny `small` model (~5M parameters): the numbers show what a "
            "from-scratch fixer learns at this scale, not what Difix3D achieves.")
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


def shrink_scene(src: Path, dst: Path, image_dir: str, factor: int, keep_every: int,
                 max_frames: Optional[int] = 8) -> Path:
    """A smaller copy (every keep_every-th frame, at most max_frames, images shrunk by factor) for the CPU runs.
    An existing complete copy is reused."""
    from PIL import Image

    if (dst / "transforms.json").is_file():
        return dst
    meta = json.loads((src / "transforms.json").read_text())
    meta["frames"] = meta["frames"][::keep_every][:max_frames]
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
    (dst / "transforms.json").write_text(json.dumps(meta))  # written last: marks the copy complete
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


def trained_seconds(run_dir: Path) -> float:
    """Training time already spent in ``run_dir`` (its newest checkpoint), 0 for a fresh run."""
    from difix_ns.training.trainer import latest_checkpoint

    ckpt = latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None:
        return 0.0
    return float(json.loads((ckpt / "trainer_state.json").read_text()).get("elapsed_s", 0.0))


def tar_dir(src: Path, dst: Path, arcname: str) -> int:
    with tarfile.open(dst, "w") as tar:
        tar.add(src, arcname=arcname)
    return dst.stat().st_size


@dataclass(frozen=True)
class Scale:
    """The sizes of one scale of the demonstration; options left unset on the command line come from here."""

    shrink: int
    """every scene's images are shrunk by this factor first (1: used as stored)"""
    max_frames: Optional[int]
    """frames kept per scene (None: all)"""
    budget_s: float
    splat_steps: int
    num_random: int
    """random initial Gaussians of the pair-making splatfacto runs (strecha and fox have no sparse points)"""
    random_scale: float
    """side of the cube they start in (stock 10)"""
    sh_degree: int
    recipes: dict
    """pair recipes per training scene"""
    cross_runs: int
    architecture: str
    train_seconds: float
    per_scene_seconds: float
    batch_size: int
    crop: int
    lr: float
    lr_warmup_steps: int
    eval_every: int
    eval_pairs: int
    checkpoint_every: int
    num_workers: int
    save_dtype: str
    gram: float
    """weight of the Gram loss when VGG16 features are available (after 1000 steps)"""


FULL_RECIPES = {"castle-P30": ("sparse", "underfit", "cross"), "Herz-Jesus-P25": ("sparse", "underfit", "cross"),
                "fox": ("sparse", "underfit", "cross", "holdout")}
SCALES = {
    # one H200: stored resolution (strecha 512x341, fox images_4 270x480), the `small` fixer, bf16
    "gpu": Scale(shrink=1, max_frames=None, budget_s=420.0, splat_steps=1500, num_random=50000, random_scale=10.0,
                 sh_degree=3, recipes=FULL_RECIPES, cross_runs=2, architecture="small", train_seconds=170.0,
                 per_scene_seconds=30.0, batch_size=8, crop=256, lr=3e-4,
                 lr_warmup_steps=100, eval_every=500, eval_pairs=40, checkpoint_every=2000, num_workers=6,
                 save_dtype="bfloat16", gram=0.5),
    # one CPU thread, about an hour: every frame, images shrunk 4x (strecha 128x85, fox 67x120), 600-step
    # splatfacto runs from 10k random Gaussians in a 2.5-unit cube (the stock 10-unit cube leaves 600-step renders
    # a grey blur), one cross run per strecha scene, the same `small` fixer (crop floored to fox's 64 px), no Gram
    "cpu": Scale(shrink=4, max_frames=None, budget_s=3600.0, splat_steps=600, num_random=10000, random_scale=2.5,
                 sh_degree=1, recipes={"castle-P30": ("sparse", "underfit", "cross"),
                                       "Herz-Jesus-P25": ("sparse", "underfit", "cross"),
                                       "fox": ("sparse", "underfit", "holdout")}, cross_runs=1,
                 architecture="small", train_seconds=2400.0, per_scene_seconds=300.0, batch_size=4, crop=80,
                 lr=3e-4, lr_warmup_steps=50, eval_every=100, eval_pairs=24, checkpoint_every=500, num_workers=0,
                 save_dtype="float32", gram=0.0),
    # plumbing only: 8 frames per scene, 6-step runs, the `tiny` model for 3 steps
    "smoke": Scale(shrink=4, max_frames=8, budget_s=1e9, splat_steps=6, num_random=200, random_scale=10.0,
                   sh_degree=0, recipes={"castle-P30": ("underfit",), "Herz-Jesus-P25": ("cross",),
                                         "fox": ("sparse", "holdout")}, cross_runs=1, architecture="tiny",
                   train_seconds=1e9, per_scene_seconds=30.0, batch_size=2, crop=64, lr=3e-4,
                   lr_warmup_steps=0, eval_every=2, eval_pairs=4, checkpoint_every=0, num_workers=0,
                   save_dtype="float32", gram=0.0),
}


@dataclass
class FixerDemoConfig:
    """Options of the from-scratch fixer demonstration. Unset sizes come from --scale (see SCALES in the script)."""

    out: Path
    """output folder (JSON, fixer tars, CSV, example PNG)"""
    data_root: Optional[Path] = None
    """folder with fox/ and strecha/ (default: .device/data, else ../shared/data)"""
    scale: Literal["gpu", "cpu"] = "gpu"
    """gpu: stored resolution, needs CUDA (default budget 420 s); cpu: images shrunk 4x, one thread, about an hour
    (default budget 3600 s); the JSON is named {scale}_train_fixer_demo.json"""
    smoke_cpu: bool = False
    """tiny CPU dry run: 8 shrunk frames per scene, tiny model, few steps (plumbing only)"""
    budget_s: Optional[float] = None
    """wall-clock budget of the whole script; unset: gpu 420, cpu 3600"""
    splat_steps: Optional[int] = None
    """splatfacto iterations per pair-making run; unset: gpu 1500, cpu 600"""
    train_seconds: Optional[float] = None
    """seconds of generic fixer training in this call (a rerun on the same --work resumes); unset: gpu 170, cpu 2400"""
    per_scene_seconds: Optional[float] = None
    """this call's fox per-scene fine-tuning (seconds), 0 skips it; unset: gpu 30, cpu 300"""
    batch_size: Optional[int] = None
    """training batch size; unset: gpu 8, cpu 4"""
    crop: Optional[int] = None
    """training crop in pixels, floored to the smallest image; unset: gpu 256, cpu 80"""
    lr: Optional[float] = None
    """learning rate, the per-scene fine-tune uses a third of it; unset: 3e-4"""
    pairs_fraction: float = 0.6
    """start no further training scene once this fraction of the budget is spent"""
    skip_fox: bool = False
    """leave fox out: no fox pairs, so no per-scene fixer either"""
    work: Optional[Path] = None
    """work folder (default: a temporary one); pairs already made there are reused"""
    vgg_features: Path = ROOT / ".device" / "vgg16_imagenet_features.pth"
    """VGG16 features file to stage into the metric cache (LPIPS-vgg + Gram losses)"""


def resolved_scale(args: FixerDemoConfig) -> Scale:
    """The scale's sizes with the command-line overrides applied."""
    import dataclasses

    base = SCALES["smoke" if args.smoke_cpu else args.scale]
    overrides = {k: getattr(args, k) for k in ("budget_s", "splat_steps", "train_seconds", "per_scene_seconds",
                                                "batch_size", "crop", "lr") if getattr(args, k) is not None}
    return dataclasses.replace(base, **overrides)


def main(argv=None) -> int:
    args = tyro.cli(FixerDemoConfig, args=argv, description=__doc__, config=(tyro.conf.FlagCreatePairsOff,))
    t0 = time.perf_counter()
    smoke = args.smoke_cpu
    scale_name = "smoke" if smoke else args.scale
    sc = resolved_scale(args)
    if scale_name == "gpu" and not torch.cuda.is_available():
        sys.exit("error: --scale gpu needs a CUDA GPU (--scale cpu: the CPU-scale run; --smoke-cpu: a dry run)")
    data_root = args.data_root
    if data_root is None:
        data_root = (ROOT / ".device" / "data" if (ROOT / ".device" / "data").is_dir()
                     else ROOT / ".." / "shared" / "data")
    scenes = {  # insertion order = pair-making order
        "castle-P30": (data_root / "strecha" / "castle-P30", "images", None),
        "Herz-Jesus-P25": (data_root / "strecha" / "Herz-Jesus-P25", "images", None),
        "fox": (data_root / "fox", "images_4", 4),
    }
    if args.skip_fox:
        del scenes["fox"]
    eval_scene = ("entry-P10", data_root / "strecha" / "entry-P10", "images", None)
    for name, (path, img_dir, _) in list(scenes.items()) + [(eval_scene[0], eval_scene[1:])]:
        path, img_dir = (path, img_dir) if name != "entry-P10" else (eval_scene[1], eval_scene[2])
        if not (path / "transforms.json").is_file() or not (path / img_dir).is_dir():
            sys.exit(f"error: scene {name}: {path}/transforms.json or {path}/{img_dir}/ missing")
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="fixer_demo_"))
    work.mkdir(parents=True, exist_ok=True)

    report = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available()
        else f"CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)",
        "scale": scale_name, "smoke_cpu": smoke, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "note": NOTE if scale_name == "gpu" else NOTE_CPU,
        "settings": vars(sc), "alexnet": stage_alexnet(work), "phases": {}, "timing_s": {},
    }
    if smoke:
        report["note"] = "CPU DRY RUN with a tiny random model and a few steps: plumbing only, numbers mean nothing."
    json_path = args.out / f"{'gpu' if scale_name == 'gpu' else 'cpu'}_train_fixer_demo.json"

    def save() -> None:
        report["timing_s"]["total"] = round(time.perf_counter() - t0, 1)
        tmp = json_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2))
        os.replace(tmp, json_path)

    from difix_ns.training.pairs import MakePairsConfig, make_pairs
    from difix_ns.training.splat_runs import SplatSettings

    if sc.shrink > 1:
        small = work / f"scenes_x{sc.shrink}_{sc.max_frames or 'all'}"
        for name, (path, img_dir, ds) in list(scenes.items()):
            keep = 3 if smoke and name == "fox" else (2 if smoke else 1)
            scenes[name] = (shrink_scene(path, small / name, img_dir, sc.shrink, keep, sc.max_frames), img_dir, ds)
        eval_scene = ("entry-P10", shrink_scene(eval_scene[1], small / "entry-P10", "images", sc.shrink, 1,
                                                sc.max_frames), "images", None)

    def splat(ds):
        return SplatSettings(num_random=sc.num_random, random_scale=sc.random_scale, sh_degree=sc.sh_degree,
                             downscale_factor=ds)

    steps = sc.splat_steps
    pairs_root = work / ("pairs" if scale_name == "gpu" else f"pairs_{scale_name}_{steps}")
    # 1. pairs: the evaluation scene first (essential), then the training scenes while the budget allows ------------
    t = time.perf_counter()
    eval_cfg = MakePairsConfig(scene=eval_scene[1], out=pairs_root / "entry-P10", steps=steps, sparse_every=2,
                               recipes=("sparse",), split="test", splat=splat(None))
    report["phases"]["eval_pairs"] = make_pairs(eval_cfg) | {"seconds": round(time.perf_counter() - t, 1)}
    save()
    pair_files = []
    report["phases"]["pairs"] = {}
    for name, (path, _, ds) in scenes.items():
        spent = time.perf_counter() - t0
        if not smoke and pair_files and spent > args.pairs_fraction * sc.budget_s:
            report["phases"]["pairs"][name] = {"skipped": f"budget: {spent:.0f} s spent before this scene"}
            continue
        t = time.perf_counter()
        cfg = MakePairsConfig(
            scene=path, out=pairs_root / name, steps=steps, sparse_every=3,
            underfit_fractions=(0.5,) if smoke else (0.25, 0.5, 0.75),
            cross_blocks=4, cross_runs=sc.cross_runs, splat=splat(ds),
            holdout="interval" if name == "fox" else "none", holdout_interval=8 if not smoke else 4,
            recipes=sc.recipes[name],
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
    report["loss_backbone"] = (("vgg16 (LPIPS-vgg + Gram)" if sc.gram > 0 else "vgg16 (LPIPS-vgg, no Gram)") if use_vgg
                               else "alexnet (LPIPS-alex, no Gram)")
    loss = LossConfig(lpips_net="vgg" if use_vgg else "alex", gram=sc.gram if use_vgg else 0.0, gram_warmup=1000,
                      gram_crop=224)
    remaining = sc.budget_s - (time.perf_counter() - t0)
    # evaluation on CPU takes minutes (LPIPS, one view at a time), on the GPU seconds
    reserve_eval = 25.0 if scale_name == "gpu" else 240.0
    reserve = reserve_eval + (sc.per_scene_seconds + reserve_eval if sc.per_scene_seconds > 0 else 0.0)
    train_seconds = max(20.0, min(sc.train_seconds, remaining - reserve))
    fixer_dir = work / ("fixer" if scale_name == "gpu" else f"fixer_{scale_name}")
    # The trainer's time limit counts resumed time too: a second call on the same --work trains train_seconds more.
    trained_before = trained_seconds(fixer_dir)
    tcfg = TrainConfig(
        out=fixer_dir, data=tuple(pair_files), architecture=sc.architecture, lr=sc.lr,
        lr_warmup_steps=sc.lr_warmup_steps, max_steps=3 if smoke else 10**6,
        max_seconds=None if smoke else trained_before + train_seconds, batch_size=sc.batch_size, crop=sc.crop,
        loss=loss,
        eval_every=sc.eval_every, eval_pairs=sc.eval_pairs, checkpoint_every=sc.checkpoint_every,
        num_workers=sc.num_workers, save_dtype=sc.save_dtype, seed=0,
    )
    report["phases"]["train"] = {"config": {k: str(v) for k, v in vars(tcfg).items() if k != "pairs"},
                                 "loss": vars(loss), "planned_seconds": train_seconds,
                                 "resumed_after_seconds": trained_before}
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
    # Can the fixer reproduce a clean photo? (A from-scratch fixer must first learn the identity through the VAE.)
    with torch.no_grad():
        same = torch.cat([generic.fix(gt[i : i + 1], gt[i : i + 1, None] if generic.uses_references else None)
                          for i in range(len(gt))])
    result["identity_photo_in"] = metrics(same, gt)
    report["phases"]["entry_P10"] = result
    save_grid(args.out / "entry_P10_examples.png", raw, gt, outs["fixed"])
    report["timing_s"]["entry_P10_eval"] = round(time.perf_counter() - t0, 1)
    save()

    # 4. per-scene fixer on fox ------------------------------------------------------------------------------------
    remaining = sc.budget_s - (time.perf_counter() - t0) - 20.0
    fox_done = (pairs_root / "fox" / "pairs.json") in pair_files
    if sc.per_scene_seconds > 0 and fox_done and (smoke or remaining > 15):  # the dry run ignores the budget
        fox_root = pairs_root / "fox"
        fox = json.loads((fox_root / "pairs.json").read_text())
        held = [dict(v, id=k) for k, v in fox["test"].items() if v["recipe"] == "holdout"]
        start = work / f"generic_start_{scale_name}"
        if start.exists():
            shutil.rmtree(start)
        shutil.copytree(tcfg.out / "model", start)
        fox_dir = work / ("fixer_fox" if scale_name == "gpu" else f"fixer_fox_{scale_name}")
        pcfg = TrainConfig(
            out=fox_dir,
            data=(fox_root / "pairs.json",), model_name=str(start),
            trainable="all", lr=sc.lr / 3, max_steps=2 if smoke else 10**6,
            max_seconds=None if smoke else trained_seconds(fox_dir) + min(sc.per_scene_seconds, remaining),
            batch_size=tcfg.batch_size,
            crop=tcfg.crop, loss=loss, eval_every=0, eval_pairs=sc.eval_pairs, checkpoint_every=0,
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
        why = ("fox pairs were skipped" if not fox_done else "--per-scene-seconds 0" if sc.per_scene_seconds <= 0
               else f"not enough time left ({remaining:.0f} s)")
        report["phases"]["per_scene_fox"] = {"skipped": why}
    save()
    print(json.dumps({k: report["phases"]["entry_P10"][k] for k in ("raw", "fixed", "delta")}, indent=2))
    print(f"total {report['timing_s']['total']} s; wrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
