#!/usr/bin/env python
"""CPU ablation of nifi-splatfacto's compression (prune -> fine-tune -> quantize) at NiFi's extreme rates.

The GPU product benchmark (`scripts/bench_nifi_splatfacto.py`) needs a CUDA machine; this script asks the same
question at CPU scale so the fine-tune's defaults can be chosen by measurement: which settings recover the most
quality below 0.5 MB? For every variant and rate it runs the product's own `compress_model` (the function
`ns-train nifi-splatfacto` calls after training), decodes the container, renders the eval views and scores PSNR /
SSIM / LPIPS-alex (+ LPIPS-vgg / DISTS where the weights exist). Two test beds:

- a trained model (`train`): stock splatfacto on a shrunk scene (fox: quarter-resolution images shrunk 2x to
  135x240, the nerfstudio split's 45 train / 5 eval views, SH degree 0, 2500 steps; scored against the photos);
- a finished splat (`ablate --ply`): its own renders are the photos, so only what compression loses is measured.

Targets are the presets' sizes scaled by (Gaussians / 210,000), the count of the GPU run in issue #16, so each rate
keeps about the same fraction of the model as there.

    python scripts/nifi_finetune_cpu.py train --work-dir /tmp/nifi_ft --steps 2500     # ~10 min
    python scripts/nifi_finetune_cpu.py ablate --work-dir /tmp/nifi_ft --out /tmp/fox.json \
        --variants no_finetune default distill_half
    python scripts/nifi_finetune_cpu.py ablate --work-dir /tmp/ply_ft --out /tmp/guitar.json --rates 0.5 1.0 \
        --ply ../shared/data/splat_guitar/guitar.compressed.ply --variants no_finetune default no_qat

Variant names: see VARIANTS below; `NAME=field:value,field:value` defines another (fields of
`nifi_ns.nerfstudio.compression.CompressionSettings`). Results and what they decided: docs/nifi_compression.md
("Choosing the fine-tune by measurement"). CPU-scale numbers rank settings; they do not predict the GPU table.
"""
from __future__ import annotations

import json
import platform
import random
import sys
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Literal, Optional

import torch
import tyro

GPU_RUN_GAUSSIANS = 210_000  # issue #16's fox x2 model; the presets' targets are scaled by N / this

# Settings relative to the product defaults (CompressionSettings()).
VARIANTS: Dict[str, Dict[str, object]] = {
    "no_finetune": {"finetune_steps": 0},
    "default": {},
    "photos_only": {"finetune_distill_weight": 0.0, "finetune_lpips_weight": 0.0},
    "distill_half": {"finetune_distill_weight": 0.5},  # the default until 2026-12 ("default" in older JSONs)
    "distill_only": {"finetune_distill_weight": 1.0},
    "no_qat": {"finetune_quant_start": None},
    "lr_x3": {"finetune_lr_scale": 3.0},
    "lr_x10": {"finetune_lr_scale": 10.0},
    "steps_x3": {"finetune_steps": 3000},
    "ssim_0": {"finetune_ssim_lambda": 0.0},
    "prune2": {"prune_stages": 2, "prune_start": 2.0},
    "prune3": {"prune_stages": 3, "prune_start": 4.0},
    "no_lpips": {"finetune_lpips_weight": 0.0},  # the default until 2026-12-05 ("default" in older JSONs)
    "lpips_alex": {"finetune_lpips_weight": 0.2, "finetune_lpips_net": "alex"},
    "lpips_vgg": {"finetune_lpips_weight": 0.2, "finetune_lpips_net": "vgg"},
}


@dataclass
class Options:
    """CPU ablation of the NiFi compression fine-tune."""

    mode: tyro.conf.Positional[Literal["train", "ablate"]]
    """train: splatfacto on the shrunk scene; ablate: compress the trained model (or --ply) with each variant"""
    ply: Optional[Path] = None
    """ablate a finished splat instead of the trained run: its renders from --ply-views cameras on an arc are the
    training and eval images (the uncompressed model is then exact: the test measures what compression loses)"""
    ply_size: int = 160
    """--ply: image size (square, pixels)"""
    work_dir: Path = Path("/tmp/nifi_finetune_cpu")
    """scene copy, the splatfacto run and its trainer learning rates"""
    data: Path = Path("../shared/data/fox")
    """nerfstudio scene with images_4/"""
    shrink: int = 2
    """images_4 shrunk by this factor (intrinsics scaled to match)"""
    steps: int = 3000
    """splatfacto training steps"""
    stop_split_at: int = 1000
    """densification stops here (keeps the CPU model near 100k Gaussians; splatfacto's default is 15000)"""
    num_random: int = 20000
    """random initial Gaussians (fox has no SfM points)"""
    seed: int = 0
    """seed of the training run and of each compression (its view order)"""
    out: Optional[Path] = None
    """ablate: JSON written after every variant"""
    variants: List[str] = field(default_factory=lambda: ["no_finetune", "default"])
    rates: List[float] = field(default_factory=lambda: [0.1, 0.5, 1.0])
    overwrite: bool = False
    """ablate: replace an existing --out JSON"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def shrunk_scene(data: Path, work: Path, shrink: int) -> Path:
    from PIL import Image

    scene = work / "scene"
    meta = json.loads((data / "transforms.json").read_text())
    for entry in [meta, *meta["frames"]]:
        for key in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
            if key in entry:
                entry[key] = entry[key] / shrink
    (scene / "images_4").mkdir(parents=True, exist_ok=True)
    for frame in meta["frames"]:
        src = data / "images_4" / Path(frame["file_path"]).name
        dst = scene / "images_4" / src.name
        if not dst.exists():
            img = Image.open(src)
            img.resize((img.width // shrink, img.height // shrink), Image.LANCZOS).save(dst)
    meta.pop("ply_file_path", None)
    (scene / "transforms.json").write_text(json.dumps(meta))
    return scene


def train(opts: Options) -> None:
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion
    from nerfstudio.scripts.train import _set_random_seed

    from difix_ns.nerfstudio_patches import install_cpu_support

    install_cpu_support()
    scene = shrunk_scene(opts.data, opts.work_dir, opts.shrink)
    cli = ["splatfacto", "--data", str(scene), "--output-dir", str(opts.work_dir / "runs"),
           "--experiment-name", "scene", "--timestamp", "run", "--max-num-iterations", str(opts.steps),
           "--steps-per-save", str(opts.steps), "--steps-per-eval-batch", "0", "--steps-per-eval-image", "0",
           "--steps-per-eval-all-images", "0", "--vis", "tensorboard", "--machine.device-type", "cpu",
           "--machine.seed", str(opts.seed), "--pipeline.model.sh-degree", "0",
           "--pipeline.model.num-random", str(opts.num_random), "--pipeline.model.num-downscales", "0",
           "--pipeline.model.stop-split-at", str(opts.stop_split_at),
           "--pipeline.model.resolution-schedule", str(max(1, opts.steps // 4)),
           "nerfstudio-data", "--downscale-factor", "4"]
    config = tyro.cli(AnnotatedBaseConfigUnion, args=cli)
    config.vis = "none"
    config.pipeline.datamanager.data = config.data
    config.set_timestamp()
    config.save_config()
    _set_random_seed(opts.seed)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    t0 = time.perf_counter()
    trainer.train()
    lrs = {name: float(opt.param_groups[0]["lr"]) for name, opt in trainer.optimizers.optimizers.items()}
    info = {"config": str(Path(trainer.base_dir) / "config.yml"), "train_wall_s": time.perf_counter() - t0,
            "num_gaussians": int(trainer.pipeline.model.num_points), "steps": opts.steps, "trainer_lrs": lrs}
    (opts.work_dir / "trained.json").write_text(json.dumps(info, indent=2))
    log(f"trained: {info}")


def ply_pipeline(opts: Options, with_images: bool):
    """A splatfacto pipeline whose Gaussians are the --ply splat, over a scene of its own renders: 36 training
    cameras (12 azimuths in +-60 deg x 3 elevations) and 6 eval cameras between them, looking at the splat."""
    import numpy as np
    from PIL import Image

    from difix_ns.splat.cameras import look_at_viewmat
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion
    from nifi_ns.io import read_ply
    from nifi_ns.nerfstudio.gaussian_swap import splat_to_params

    splat = read_ply(opts.ply)
    scene = opts.work_dir / "ply_scene"
    lo, hi = np.percentile(splat.means, [1, 99], axis=0)
    centre, radius, size = (lo + hi) / 2, 5.5, opts.ply_size
    poses = [("train", az, el) for el in (-15.0, 0.0, 15.0) for az in np.linspace(-60, 60, 12)]
    poses += [("eval", az, 7.5) for az in np.linspace(-50, 50, 6)]
    frames, train, test = [], [], []
    for i, (split, az, el) in enumerate(poses):
        a, e = np.deg2rad(az), np.deg2rad(el)
        eye = centre + radius * np.array([np.cos(e) * np.cos(a), np.sin(e), np.cos(e) * np.sin(a)])
        c2w = np.linalg.inv(look_at_viewmat(eye, centre, np.array([0.0, -1.0, 0.0])))
        c2w[:3, 1:3] *= -1  # OpenCV -> OpenGL camera axes (nerfstudio's transforms.json)
        name = f"images/{split}_{i:03d}.png"
        frames.append({"file_path": name, "transform_matrix": c2w.tolist()})
        (train if split == "train" else test).append(name)
    meta = {"camera_model": "OPENCV", "fl_x": 1.1 * size, "fl_y": 1.1 * size, "cx": size / 2, "cy": size / 2,
            "w": size, "h": size, "frames": frames, "train_filenames": train, "val_filenames": test,
            "test_filenames": test}
    (scene / "images").mkdir(parents=True, exist_ok=True)
    (scene / "transforms.json").write_text(json.dumps(meta))
    if not with_images:
        for f in frames:
            Image.new("RGB", (size, size)).save(scene / f["file_path"])
    cli = ["splatfacto", "--data", str(scene), "--machine.device-type", "cpu", "--pipeline.model.sh-degree",
           str(splat.sh_degree), "--pipeline.model.num-random", "100", "nerfstudio-data", "--downscale-factor", "1",
           "--orientation-method", "none", "--center-method", "none", "--auto-scale-poses", "False"]
    config = tyro.cli(AnnotatedBaseConfigUnion, args=cli)
    config.pipeline.datamanager.data = scene
    pipeline = config.pipeline.setup(device="cpu", test_mode="val", world_size=1, local_rank=0)
    params = splat_to_params(splat, splat.sh_degree, "cpu")
    pipeline.model.gauss_params = torch.nn.ParameterDict({k: torch.nn.Parameter(v) for k, v in params.items()})
    pipeline.eval()
    if not with_images:  # the splat's own renders become the photos; then rebuild so the datamanager caches them
        dm = pipeline.datamanager
        with torch.no_grad():
            for dataset in (dm.train_dataset, dm.eval_dataset):
                for i, path in enumerate(dataset.image_filenames):
                    rgb = pipeline.model.get_outputs_for_camera(dataset.cameras[i : i + 1])["rgb"]
                    Image.fromarray((rgb.clamp(0, 1).numpy() * 255).round().astype(np.uint8)).save(path)
        return ply_pipeline(opts, with_images=True)
    return pipeline, splat.num_gaussians


def parse_variant(spec: str):
    from nifi_ns.nerfstudio.compression import CompressionSettings

    name, _, body = spec.partition("=")
    if not body:
        if name not in VARIANTS:
            sys.exit(f"error: unknown variant {name!r}; choose from {sorted(VARIANTS)} or give NAME=field:value,...")
        return name, replace(CompressionSettings(), **VARIANTS[name])
    known = {f.name: f.type for f in fields(CompressionSettings)}
    updates = {}
    for item in body.split(","):
        key, _, value = item.partition(":")
        if key not in known:
            sys.exit(f"error: variant {name!r}: unknown field {key!r}; choose from {sorted(known)}")
        integer = key in ("finetune_steps", "importance_views", "prune_stages")
        text = key in ("finetune_lpips_net",)
        updates[key] = None if value == "None" else (value if text else int(value) if integer else float(value))
    return name, replace(CompressionSettings(), **updates)


def ablate(opts: Options) -> None:
    from nerfstudio.utils.eval_utils import eval_setup

    from difix_ns.nerfstudio_patches import install_cpu_support
    from nifi_ns.codec import decompress, rate_preset
    from nifi_ns.nerfstudio.compression import compress_model
    from nifi_ns.nerfstudio.eval_stages import _render_pair, available_scorer
    from nifi_ns.nerfstudio.finetune import END_OF_SCHEDULE_LRS
    from nifi_ns.nerfstudio.gaussian_swap import decoded_gaussians

    if opts.out is None:
        sys.exit("error: ablate needs --out")
    if opts.out.exists() and not opts.overwrite:
        sys.exit(f"error: {opts.out} exists (--overwrite to replace it)")
    variants = [parse_variant(v) for v in opts.variants]
    trained_json = opts.work_dir / "trained.json"
    if opts.ply is None and not trained_json.is_file():
        sys.exit(f"error: {trained_json} not found: run `train --work-dir {opts.work_dir}` first, or give --ply")
    if opts.ply is not None and not opts.ply.is_file():
        sys.exit(f"error: --ply {opts.ply} does not exist")
    install_cpu_support()
    torch.manual_seed(opts.seed)
    if opts.ply is None:
        info = json.loads(trained_json.read_text())
        _, pipeline, _, _ = eval_setup(Path(info["config"]), test_mode="test")
    else:  # splatfacto's learning rates after the GPU run's 7000 of 30000 steps (means decay 1.6e-4 -> 1.6e-6)
        pipeline, count = ply_pipeline(opts, with_images=False)
        info = {"ply": str(opts.ply), "num_gaussians": count, "image_size": opts.ply_size,
                "trainer_lrs": {**END_OF_SCHEDULE_LRS, "means": 1.6e-4 * 0.01 ** (7000 / 30000)}}
    model, dm = pipeline.model, pipeline.datamanager
    optimizers = SimpleNamespace(optimizers={k: SimpleNamespace(param_groups=[{"lr": v}])
                                             for k, v in info["trainer_lrs"].items()})
    scorer, missing = available_scorer(model.device)
    views = list(dm.fixed_indices_eval_dataloader)

    def score() -> Dict[str, float]:
        sums: Dict[str, float] = {}
        model.eval()
        with torch.no_grad():
            for camera, batch in views:
                pred, gt = _render_pair(model, camera, batch)
                for k, v in scorer(pred, gt).items():
                    sums[k] = sums.get(k, 0.0) + float(v)
        return {k: v / len(views) for k, v in sums.items()}

    n = int(model.num_points)
    result = {"machine": f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads",
              "trained": info, "eval_views": len(views), "missing_metrics": missing,
              "uncompressed": score(), "targets_mb": {}, "variants": {}}
    log(f"uncompressed: {result['uncompressed']}")
    for rate in opts.rates:
        result["targets_mb"][str(rate)] = rate_preset(rate).target_mb * n / GPU_RUN_GAUSSIANS
    for name, settings in variants:
        rows = {}
        for rate in opts.rates:
            random.seed(opts.seed)
            torch.manual_seed(opts.seed)
            # The datamanager draws views from its own generator (seeded once by its config) and carries its place
            # over from the previous compression: restart it from --seed, so every variant and rate sees the same
            # view order and --seed changes it.
            if hasattr(dm, "sample_train_cameras"):
                dm.random_generator = random.Random(opts.seed)
                dm.train_unseen_cameras = dm.sample_train_cameras()
            s = replace(settings, target_mb=result["targets_mb"][str(rate)])
            t0 = time.perf_counter()
            container, report = compress_model(model, dm, rate, s, optimizers=optimizers)
            seconds = time.perf_counter() - t0
            with decoded_gaussians(model, decompress(container)):
                metrics = score()
            rows[str(rate)] = {"size_mb": report["size_mb"], "num_gaussians": report["num_gaussians"],
                               "pruned_gaussians": report["pruned_gaussians"], "seconds": seconds, **metrics}
            log(f"{name} rate {rate}: {rows[str(rate)]}")
        result["variants"][name] = {"settings": {f.name: getattr(settings, f.name) for f in fields(settings)},
                                    "rates": rows}
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(json.dumps(result, indent=2))
    log(f"wrote {opts.out}")


def main(argv=None) -> None:
    opts = tyro.cli(Options, args=argv, description=__doc__)
    train(opts) if opts.mode == "train" else ablate(opts)


if __name__ == "__main__":
    main()
