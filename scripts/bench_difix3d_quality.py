#!/usr/bin/env python
r"""Does the Difix3D loop improve reconstructions? A quality benchmark with control and oracle fixers.

For each scene a sparse split is made (every ``--train-every``-th view trains, all others are test views) and, in
one process, these runs are trained for the same number of steps:

* ``baseline``: plain ``splatfacto`` (``--method difix3d``: ``nerfacto``) on the training views;
* ``dense_teacher``: the same method on ALL views (its test numbers are on views it trained on: a ceiling);
* ``identity``: ``difix3d-splatfacto`` (``difix3d``) with the identity fixer (control: must not hurt);
* ``teacher``: with the teacher fixer rendering the dense run (oracle: what a perfect fixer could carry over);
* ``degraded_teacher``: with the teacher's images blurred / colour-shifted / noised / JPEG-compressed;
* ``fixer_model`` (with ``--fixer-model DIR``): with a Difix-layout fixer model folder.

Fix rounds target the test poses (``--targets test``) or a path interpolated between training poses
(``--targets path``). Test PSNR / SSIM / LPIPS (alex) / DISTS (where weights load) are measured at every fix step
(before the round, i.e. after the training since the previous round) and at the end; wall time and peak memory per
run; and how well each final model reproduces its own supervision (``train_fit_psnr`` on its training images,
``pool_fit_psnr`` on the last round's pool images at the pool cameras). Writes, into ``--out``:
``bench_difix3d_quality.json`` (rewritten after every run, so a timeout keeps what finished),
``bench_difix3d_quality.png`` (test PSNR / LPIPS vs step) and ``<scene>_side_by_side.png`` (one test view: ground
truth and every run).

    # GPU (see docs/difix3d_quality.md for the full command):
    python scripts/bench_difix3d_quality.py --data .device/data/fox --downscale-factor 2 --train-every 5 \
        --out $OUT/difix3d_quality
    # CPU smoke test (tiny: 1/16-resolution fox, few steps, the project's CPU rasterizer):
    python scripts/bench_difix3d_quality.py --smoke-cpu --data ../shared/data/fox --out /tmp/dq
"""

import atexit
import gc
import json
import platform
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, List, Literal, Optional

import numpy as np
import torch
import tyro

VARIANTS = ("baseline", "dense_teacher", "identity", "teacher", "degraded_teacher", "fixer_model")
BASE_METHOD = {"splatfacto": "splatfacto", "difix3d-splatfacto": "splatfacto", "difix3d": "nerfacto"}
DIFIX_METHOD = {"splatfacto": "difix3d-splatfacto", "difix3d-splatfacto": "difix3d-splatfacto", "difix3d": "difix3d"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------------------------------ scenes


def make_split_scene(data: Path, downscale: int, train_every: int, work: Path, shrink: int = 1,
                     max_frames: int = 0) -> dict:
    """Two nerfstudio scene folders sharing one frame list (so both runs share one world frame): ``sparse`` (every
    ``train_every``-th frame trains) and ``dense`` (all frames train); both test on the non-training frames.

    ``shrink`` > 1 writes images downscaled by that factor (CPU smoke runs) instead of linking the image folder.
    """
    meta_path = data / "transforms.json"
    if not meta_path.is_file():
        sys.exit(f"error: {meta_path} not found (--data must be a nerfstudio scene folder)")
    folder = "images" if downscale == 1 else f"images_{downscale}"
    image_dir = data / folder
    if not image_dir.is_dir():
        sys.exit(f"error: {image_dir} not found; pick a --downscale-factor whose image folder exists")
    meta = json.loads(meta_path.read_text())
    frames = meta["frames"][: max_frames or None]
    if len(frames) < 3:
        sys.exit(f"error: {meta_path} has {len(frames)} frames; need at least 3")
    if train_every < 2:
        sys.exit(f"error: --train-every must be >= 2, got {train_every}")
    meta["frames"] = frames
    if shrink > 1:
        for entry in [meta, *frames]:
            for key in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
                if key in entry:
                    entry[key] = entry[key] / shrink
    train = [f["file_path"] for i, f in enumerate(frames) if i % train_every == 0]
    test = [f["file_path"] for i, f in enumerate(frames) if i % train_every != 0]
    name = data.resolve().name
    out = {"name": name, "train_views": len(train), "test_views": len(test)}
    for kind, train_list in (("sparse", train), ("dense", [f["file_path"] for f in frames])):
        scene = work / name / kind
        scene.mkdir(parents=True, exist_ok=True)
        m = dict(meta, train_filenames=train_list, val_filenames=test, test_filenames=test)
        (scene / "transforms.json").write_text(json.dumps(m))
        link = scene / folder
        if link.exists():
            pass
        elif shrink > 1:
            from PIL import Image

            link.mkdir()
            for f in frames:
                src = image_dir / Path(f["file_path"]).name
                img = Image.open(src)
                img.resize((max(1, img.width // shrink), max(1, img.height // shrink)), Image.LANCZOS).save(
                    link / src.name
                )
        else:
            link.symlink_to(image_dir.resolve(), target_is_directory=True)
        out[kind] = scene
    return out


# ------------------------------------------------------------------------------------------------ metrics


class Evaluator:
    """Test-view metrics of a pipeline: PSNR, SSIM and whichever of LPIPS-alex / DISTS have weights."""

    def __init__(self, device: torch.device, want_dists: bool = True):
        from difix_ns.metrics import ImageMetrics

        self.unavailable: dict[str, str] = {}
        perceptual = []
        for name in ("lpips", "dists") if want_dists else ("lpips",):
            try:
                probe = ImageMetrics(device, perceptual=(name,))
                probe(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
                perceptual.append(name)
            except Exception as err:  # missing weights offline: leave the metric out, say why
                self.unavailable[name] = f"{type(err).__name__}: {err}"[:300]
        self.metrics = ImageMetrics(device, perceptual=tuple(perceptual))
        self.lpips_impl = "difix_ns" if "lpips" in perceptual else None
        self._tm_lpips = None
        if "lpips" not in perceptual:
            try:  # the LPIPS nerfstudio reports (torchvision AlexNet; served offline on the GPU box by its shim)
                from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

                self._tm_lpips = LearnedPerceptualImagePatchSimilarity(normalize=True).to(device)
                self.lpips_impl = "torchmetrics"
                self.unavailable.pop("lpips", None)
            except Exception as err:
                self.unavailable["lpips_torchmetrics"] = f"{type(err).__name__}: {err}"[:300]
        self.device = device

    @staticmethod
    def test_views(pipeline) -> tuple[Any, list[torch.Tensor]]:
        """Test cameras and ground-truth images [H, W, 3] float (undistorted where the datamanager caches)."""
        dm = pipeline.datamanager
        if hasattr(dm, "cached_eval"):
            images = [d["image"] for d in dm.cached_eval]  # caching undistorts and fixes the eval intrinsics
        else:
            images = [dm.eval_dataset.get_image_float32(i) for i in range(len(dm.eval_dataset))]
        images = [(im.float() / 255.0 if im.dtype == torch.uint8 else im.float())[..., :3].cpu() for im in images]
        return dm.eval_dataset.cameras, images

    @torch.no_grad()
    def render(self, pipeline, cameras) -> list[torch.Tensor]:
        model = pipeline.model
        was_training = model.training
        model.eval()
        out = []
        try:
            for i in range(len(cameras)):
                # The class method: the run's Difix render hook (rgb_fixed) stays out of the measurement.
                res = type(model).get_outputs_for_camera(model, cameras[i : i + 1].to(pipeline.device))
                out.append(res["rgb"][..., :3].float().clamp(0, 1).cpu())
        finally:
            model.train(was_training)
        return out

    def __call__(self, pipeline) -> tuple[dict, list[torch.Tensor], list[torch.Tensor]]:
        cameras, gts = self.test_views(pipeline)
        preds = self.render(pipeline, cameras)
        sums: dict[str, float] = {}
        for pred, gt in zip(preds, gts):
            p, g = pred.permute(2, 0, 1)[None], gt.permute(2, 0, 1)[None]
            values = self.metrics(p, g)
            if self._tm_lpips is not None:
                with torch.no_grad():
                    values["lpips"] = float(self._tm_lpips(p.to(self.device), g.to(self.device)))
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
        return {k: v / len(preds) for k, v in sums.items()}, preds, gts


def fit_psnr(pipeline, evaluator: Evaluator) -> dict:
    """How well the trained model reproduces its own supervision: mean PSNR of its renders against its training
    images and, for Difix3D runs, against the pool images at the pool cameras (inside the pool masks). A pool fit far
    below the training fit means the loop is limited by how far training follows the pool, not by the fixer."""
    from difix_ns.metrics import psnr

    dm = pipeline.datamanager

    def mean_psnr(preds, targets, masks=None) -> float:
        chw = lambda hwc: hwc.permute(2, 0, 1)[None].float().cpu()  # noqa: E731
        values = [float(psnr(chw(p), chw(t), mask=None if masks is None else chw(masks[k])))
                  for k, (p, t) in enumerate(zip(preds, targets))]
        return sum(values) / max(len(values), 1)

    if hasattr(dm, "cached_train"):
        train_images = [d["image"] for d in dm.cached_train]  # undistorted, like the cameras after caching
    else:
        train_images = [dm.train_dataset.get_image_float32(i) for i in range(len(dm.train_dataset))]
    train_images = [(im.float() / 255.0 if im.dtype == torch.uint8 else im.float())[..., :3].cpu()
                    for im in train_images]
    out = {"train_fit_psnr": mean_psnr(evaluator.render(pipeline, dm.train_dataset.cameras), train_images)}
    pool = getattr(dm, "novel_pool", None)
    if pool is not None and len(pool) > 0:
        pool_images = [im.float().cpu() / 255.0 for im in pool.images]
        out["pool_fit_psnr"] = mean_psnr(evaluator.render(pipeline, pool.cameras), pool_images, pool.masks)
    return out


# ------------------------------------------------------------------------------------------------ runs


def peak_memory_gib(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"peak_gpu_mem_gib": torch.cuda.max_memory_allocated() / 2**30}
    return {"peak_rss_gib_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def method_args(method: str, args, steps: int, is_splat: bool) -> list[str]:
    extra = []
    if is_splat:
        # The stock schedule trains at 1/4 then 1/2 resolution for 3000 steps each; scale it to the run length.
        extra += ["--pipeline.model.resolution-schedule", str(max(1, steps // 4))]
        if args.smoke_cpu:
            extra += ["--pipeline.model.num-random", "500", "--pipeline.model.sh-degree", "0",
                      "--pipeline.model.num-downscales", "0"]
    else:
        if args.smoke_cpu:
            extra += ["--mixed-precision", "False", "--pipeline.datamanager.train-num-rays-per-batch", "256",
                      "--pipeline.model.eval-num-rays-per-chunk", "4096", "--pipeline.model.hidden-dim", "16",
                      "--pipeline.model.hidden-dim-color", "16", "--pipeline.model.num-levels", "4",
                      "--pipeline.model.max-res", "64", "--pipeline.model.log2-hashmap-size", "12",
                      "--pipeline.model.num-nerf-samples-per-ray", "16"]
    return extra


def train_run(name: str, method: str, scene: Path, args, out_root: Path, steps: int, eval_steps: list[int],
              evaluator: Evaluator, device: torch.device, extra: list[str]) -> tuple[dict, Path, list, list]:
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion
    from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation

    is_splat = "splatfacto" in method
    cli = [
        method, "--data", str(scene), "--output-dir", str(out_root), "--experiment-name", scene.parent.name,
        "--timestamp", name, "--max-num-iterations", str(steps), "--steps-per-eval-batch", "0",
        "--steps-per-eval-image", "0", "--steps-per-eval-all-images", "0", "--steps-per-save", str(steps),
        "--vis", "tensorboard", "--machine.device-type", device.type, "--machine.seed", str(args.seed),
        *method_args(method, args, steps, is_splat), *extra,
        "nerfstudio-data", "--downscale-factor", str(args.scene_downscale),
    ]
    config = tyro.cli(AnnotatedBaseConfigUnion, args=cli)
    config.vis = "none"  # no event writers / viewer: keep logging I/O out of the timing
    config.pipeline.datamanager.data = config.data
    config.set_timestamp()
    config.save_config()  # config.yml: the teacher fixer loads the dense run through it
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    from nerfstudio.scripts.train import _set_random_seed

    _set_random_seed(args.seed)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    curve: list[dict] = []
    eval_seconds = [0.0]

    def evaluate(step: int) -> None:
        t = time.perf_counter()
        metrics, _, _ = evaluator(trainer.pipeline)  # noqa: F821  (runs inside trainer.train(), before the del)
        eval_seconds[0] += time.perf_counter() - t
        curve.append({"step": int(step), **metrics})
        log(f"  {name} step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

    # Before the fix round of that step (the pipeline's callback comes later in the list).
    trainer.callbacks.insert(
        0, TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], evaluate, iters=tuple(eval_steps))
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    trainer.train()
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    final, preds, gts = evaluator(trainer.pipeline)
    curve.append({"step": steps, **final})
    log(f"  {name} final: " + ", ".join(f"{k} {v:.4f}" for k, v in final.items()))
    pipeline = trainer.pipeline
    result: dict[str, Any] = {
        "method": method,
        "final": final,
        "per_round": curve,
        "train_wall_s": wall - eval_seconds[0],
        "eval_s": eval_seconds[0],
        **peak_memory_gib(device),
    }
    if is_splat:
        result["num_gaussians"] = int(pipeline.model.num_points)
    result.update(fit_psnr(pipeline, evaluator))
    if hasattr(pipeline, "fix_round_seconds"):
        dm = pipeline.datamanager
        result.update(
            fixer=pipeline.config.fixer.kind,
            fix_rounds=pipeline.completed_rounds,
            fix_round_s=pipeline.fix_round_seconds,
            pool_views=len(dm.novel_pool),
            pool_draws=dm.pool_draws,
            dataset_draws=dm.dataset_draws,
        )
    config_yml = Path(trainer.base_dir) / "config.yml"
    del trainer, pipeline
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result, config_yml, preds, gts


def interpolated_path(scene: Path, args, path_file: Path, per_gap: int = 1) -> Path:
    """A camera-path JSON between consecutive training poses (midpoints), in the run's world frame."""
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
    from scipy.spatial.transform import Rotation, Slerp

    parser = NerfstudioDataParserConfig(data=scene, downscale_factor=args.scene_downscale).setup()
    outputs = parser.get_dataparser_outputs("train")
    c2w = outputs.cameras.camera_to_worlds.double().numpy()
    frames = []
    for a, b in zip(c2w[:-1], c2w[1:]):
        slerp = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([a[:, :3], b[:, :3]])))
        for k in range(1, per_gap + 1):
            t = k / (per_gap + 1)
            pose = np.eye(4)
            pose[:3, :3] = slerp([t]).as_matrix()[0]
            pose[:3, 3] = (1 - t) * a[:, 3] + t * b[:, 3]
            frames.append({"camera_to_world": pose.flatten().tolist(), "fov": 50.0, "aspect": 1.0})
    cams = outputs.cameras
    path = {"render_height": int(cams.height[0]), "render_width": int(cams.width[0]), "camera_type": "perspective",
            "camera_path": frames}
    path_file.write_text(json.dumps(path))
    return path_file


# ------------------------------------------------------------------------------------------------ outputs


def write_plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenes = list(report["scenes"])
    if not scenes:
        return
    fig, axes = plt.subplots(2, len(scenes), figsize=(5 * len(scenes), 7), squeeze=False)
    for col, scene in enumerate(scenes):
        runs = report["scenes"][scene]["runs"]
        for row, metric in enumerate(("psnr", "lpips")):
            ax = axes[row, col]
            for name, run in runs.items():
                pts = [(c["step"], c[metric]) for c in run.get("per_round", []) if metric in c]
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=name, linestyle="--" if name == "dense_teacher" else "-")
            for s in report["scenes"][scene].get("fix_steps", []):
                ax.axvline(s, color="grey", alpha=0.3, linewidth=0.8)
            ax.set_title(f"{scene}: test {metric.upper()}")
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        axes[0, col].legend(fontsize=8)
    # two lines: one scene's figure is 5 inches wide, too narrow for the title and the GPU's name on one line
    fig.suptitle(f"Difix3D loop, control / oracle fixers\n{report['method']}, {report['device']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_side_by_side(images: dict[str, torch.Tensor], path: Path) -> None:
    """One row of labelled tiles (ground truth first), all [H, W, 3] float of one test view."""
    from PIL import Image, ImageDraw

    tiles = list(images.items())
    h, w = tiles[0][1].shape[:2]
    canvas = Image.new("RGB", (w * len(tiles), h + 18), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, img) in enumerate(tiles):
        array = (img.clamp(0, 1) * 255).round().byte().numpy()
        canvas.paste(Image.fromarray(array), (i * w, 18))
        draw.text((i * w + 3, 3), label, fill="black")
    canvas.save(path)


def save_report(report: dict, out: Path) -> None:
    tmp = out / "bench_difix3d_quality.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(out / "bench_difix3d_quality.json")


# ------------------------------------------------------------------------------------------------ main


def per_scene(values: list, n: int, flag: str) -> list:
    if len(values) == 1:
        return values * n
    if len(values) != n:
        sys.exit(f"error: {flag} takes one value or one per --data scene ({n}), got {len(values)}")
    return values


@dataclass
class QualityBenchConfig:
    """Options of the Difix3D loop quality benchmark."""

    data: List[Path]
    """nerfstudio scene folder(s)"""
    out: Path
    """output folder (JSON, PNG plot, side-by-side)"""
    downscale_factor: List[int] = field(default_factory=lambda: [1])
    """per scene: reads images_N (1: images/)"""
    train_every: List[int] = field(default_factory=lambda: [3])
    """per scene: every N-th view trains"""
    steps: List[int] = field(default_factory=lambda: [3000])
    """per scene: training steps of every run"""
    fix_fractions: List[float] = field(default_factory=lambda: [0.3, 0.45, 0.6, 0.75])
    """fix rounds at these fractions of --steps (evaluated before each round and at the end)"""
    method: Literal["difix3d-splatfacto", "difix3d"] = "difix3d-splatfacto"
    """difix3d-splatfacto (baseline splatfacto) or difix3d (baseline nerfacto)"""
    targets: Literal["test", "path"] = "test"
    """novel views head for the test poses or for a path interpolated between training poses"""
    variants: List[Literal[VARIANTS]] = field(default_factory=lambda: list(VARIANTS[:5]))
    """runs to train (fixer_model is added by --fixer-model)"""
    fixer_model: Optional[Path] = None
    """Difix-layout fixer folder: adds fixer_model"""
    extra: List[str] = field(default_factory=list)
    """extra ns-train options for the Difix3D runs"""
    ablate: Annotated[List[str], tyro.conf.UseAppendAction, tyro.conf.arg(metavar="'NAME=VARIANT OPTIONS...'")] = (
        field(default_factory=list))
    """an extra Difix3D run: VARIANT's fixer plus these ns-train options, e.g. 'teacher_w1=teacher
    --pipeline.pool-loss-weight 1.0'"""
    no_dists: bool = False
    """skip DISTS"""
    seed: int = 42
    """random seed of every run"""
    smoke_cpu: bool = False
    """tiny CPU run: 1/16-resolution frames, 12 frames, few steps, small models, no DISTS"""


def main(argv: Optional[list[str]] = None) -> None:
    args = tyro.cli(QualityBenchConfig, args=argv, description=__doc__, config=(tyro.conf.FlagCreatePairsOff,))
    for option, values in (("--data", args.data), ("--variants", args.variants),
                           ("--fix-fractions", args.fix_fractions)):
        if not values:
            sys.exit(f"error: {option} needs at least one value")

    variants = list(dict.fromkeys(args.variants + (["fixer_model"] if args.fixer_model else [])))
    ablations: dict[str, tuple[str, list[str]]] = {}
    for spec in args.ablate:
        name, sep, rest = spec.partition("=")
        parts = rest.split()
        known = ("identity", "teacher", "degraded_teacher", "fixer_model")
        if not sep or not name or not parts or parts[0] not in known:
            sys.exit(f"error: --ablate {spec!r}: expected 'NAME=VARIANT OPTIONS...' with a Difix3D VARIANT")
        if name in VARIANTS or name in ablations:
            sys.exit(f"error: --ablate {spec!r}: run name {name!r} is taken")
        ablations[name] = (parts[0], parts[1:])
        if parts[0] in ("teacher", "degraded_teacher") and "dense_teacher" not in variants:
            sys.exit("error: teacher ablations need the dense_teacher run")
    if "fixer_model" in variants and args.fixer_model is None:
        sys.exit("error: the fixer_model variant needs --fixer-model DIR")
    if args.fixer_model is not None and not args.fixer_model.is_dir():
        sys.exit(f"error: --fixer-model {args.fixer_model} is not a folder")
    if {"teacher", "degraded_teacher"} & set(variants) and "dense_teacher" not in variants:
        sys.exit("error: the teacher variants need the dense_teacher run (add dense_teacher to --variants)")
    for d in args.data:
        if not (d / "transforms.json").is_file():
            sys.exit(f"error: --data {d}: no transforms.json")
    if any(not 0 < f < 1 for f in args.fix_fractions):
        sys.exit("error: --fix-fractions must lie in (0, 1)")
    n = len(args.data)
    downscales = per_scene(args.downscale_factor, n, "--downscale-factor")
    train_every = per_scene(args.train_every, n, "--train-every")
    steps_list = per_scene(args.steps if not args.smoke_cpu or args.steps != [3000] else [40], n, "--steps")

    if args.smoke_cpu:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        sys.exit("error: no CUDA GPU; use --smoke-cpu for a tiny CPU run")
    args.out.mkdir(parents=True, exist_ok=True)
    import difix_ns.nerfstudio.method_configs  # noqa: F401  (CPU rasterizer shim where there is no CUDA)

    work = Path(tempfile.mkdtemp(prefix="difix3d_quality_"))
    atexit.register(shutil.rmtree, work, True)  # scratch runs and frames; results go to --out
    evaluator = Evaluator(device, want_dists=not (args.no_dists or args.smoke_cpu))
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU ({platform.processor() or 'cpu'})",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "method": args.method,
        "targets": args.targets,
        "smoke_cpu": args.smoke_cpu,
        "metrics_unavailable": evaluator.unavailable,
        "lpips_implementation": evaluator.lpips_impl,
        "note": ("identity = control (render unchanged), teacher = oracle (renders of the dense run), "
                 "degraded_teacher = teacher + blur/colour/noise/JPEG; dense_teacher tests on views it trained on "
                 "(ceiling). Metrics are means over the sparse split's test views."),
        "scenes": {},
    }
    base_method, difix_method = BASE_METHOD[args.method], DIFIX_METHOD[args.method]
    started = time.perf_counter()
    scenes = []
    for data, ds, every, steps in zip(args.data, downscales, train_every, steps_list):
        split = make_split_scene(data, ds, every, work, shrink=4 if args.smoke_cpu else 1,
                                 max_frames=12 if args.smoke_cpu else 0)
        name = split["name"]
        fix_steps = sorted({max(1, round(steps * f)) for f in args.fix_fractions})
        report["scenes"][name] = {
            "data": str(data), "downscale_factor": ds, "train_every": every, "train_views": split["train_views"],
            "test_views": split["test_views"], "steps": steps, "fix_steps": fix_steps, "runs": {},
        }
        targets_args: list[str] = []
        if args.targets == "path":
            args.scene_downscale = ds
            path = interpolated_path(split["sparse"], args, work / f"{name}_path.json")
            targets_args = ["--pipeline.novel-view-targets", "camera-path", "--pipeline.camera-path", str(path)]
        scenes.append({"name": name, "split": split, "downscale": ds, "steps": steps, "fix_steps": fix_steps,
                       "targets_args": targets_args, "teacher_yml": None, "previews": {}})
    runs_root = work / "runs"
    # Main runs of every scene first, then the ablations: a timeout cuts the ablations, not a scene.
    for run_names in (variants, list(ablations)):
        for sc in scenes:
            name, split, steps, fix_steps = sc["name"], sc["split"], sc["steps"], sc["fix_steps"]
            scene_report = report["scenes"][name]
            args.scene_downscale = sc["downscale"]
            if run_names is variants:
                log(f"{name}: {split['train_views']} training / {split['test_views']} test views, {steps} steps, "
                    f"fix rounds at {fix_steps}")
            for run_name in run_names:
                variant, ablation_args = ablations.get(run_name, (run_name, []))
                fixer: list[str] = []
                method, scene = difix_method, split["sparse"]
                if variant == "baseline":
                    method = base_method
                elif variant == "dense_teacher":
                    method, scene = base_method, split["dense"]
                elif variant == "identity":
                    fixer = ["--pipeline.fixer.kind", "identity"]
                elif variant in ("teacher", "degraded_teacher"):
                    if sc["teacher_yml"] is None:
                        scene_report["runs"][run_name] = {"error": "the dense_teacher run failed or did not run"}
                        continue
                    fixer = ["--pipeline.fixer.kind", variant.replace("_", "-"),
                             "--pipeline.fixer.teacher-config", str(sc["teacher_yml"])]
                elif variant == "fixer_model":
                    fixer = ["--pipeline.fixer.kind", "difix", "--pipeline.fixer.model-name", str(args.fixer_model)]
                extra = []
                if method == difix_method:
                    extra = [*fixer, "--pipeline.fix-steps", *map(str, fix_steps), *sc["targets_args"], *args.extra,
                             *ablation_args]
                shown = f", {' '.join(ablation_args)}" if ablation_args else ""
                log(f"{name}: training {run_name} ({method}{shown})")
                try:
                    result, config_yml, preds, gts = train_run(
                        run_name, method, scene, args, runs_root, steps, fix_steps, evaluator, device, extra
                    )
                except Exception as err:  # keep the other runs' results; record the failure
                    import traceback

                    traceback.print_exc()
                    scene_report["runs"][run_name] = {"error": f"{type(err).__name__}: {err}"}
                    save_report(report, args.out)
                    continue
                if variant == "dense_teacher":
                    sc["teacher_yml"] = config_yml
                if ablation_args:
                    result["options"] = ablation_args
                scene_report["runs"][run_name] = result
                previews = sc["previews"]
                previews.setdefault("ground truth", gts[len(gts) // 2])
                previews[run_name] = preds[len(preds) // 2]
                base = scene_report["runs"].get("baseline")
                if base and "final" in base and run_name != "baseline":
                    result["psnr_gain_vs_baseline"] = result["final"]["psnr"] - base["final"]["psnr"]
                report["elapsed_s"] = time.perf_counter() - started
                save_report(report, args.out)
                write_plot(report, args.out / "bench_difix3d_quality.png")
                if len(previews) > 1:
                    write_side_by_side(previews, args.out / f"{name}_side_by_side.png")
    report["elapsed_s"] = time.perf_counter() - started
    save_report(report, args.out)
    write_plot(report, args.out / "bench_difix3d_quality.png")
    log(f"done in {report['elapsed_s']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
