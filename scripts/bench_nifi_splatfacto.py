#!/usr/bin/env python
"""Benchmark of the `nifi-splatfacto` product path against gsplat's PngCompression; JSON + rate-distortion PNG.

GPU (the lead runs it, fox at half resolution):
    source .device/setup.sh && python scripts/bench_nifi_splatfacto.py --data .device/data/fox \
        --downscale-factor 2 --max-num-iterations 7000 --out $OUT [--budget-steps 3000]

CPU plumbing check (tiny: 6 quarter-res views, a few steps, random-init Gaussians; numbers mean nothing):
    python scripts/bench_nifi_splatfacto.py --smoke-cpu --data ../shared/data/fox --out /tmp/bench_smoke

Budget-trained rows alone (`--budgets-from` an earlier run's bench_nifi_splatfacto.json; same scene and
--downscale-factor): no nifi-splatfacto model is trained or compressed; each of that JSON's `png_same_gaussians`
budgets (`kept`, smallest first) trains one capped splatfacto, as variant 3 below, scored on the same eval views.
The output JSON holds `png_budget_trained` and, under `budgets_from`, the source file's name and its `uncompressed`,
`nifi` and `png_same_gaussians` sizes and metrics (for tables next to the new rows):
    python scripts/bench_nifi_splatfacto.py --data .device/data/fox --downscale-factor 2 \
        --budgets-from bench_nifi_splatfacto.json --budget-steps 4000 --out $OUT/budget

Variants, all scored on the same eval views by the same metrics:
  1. `nifi` — what users get: `ns-train nifi-splatfacto` containers (prune -> compression-aware fine-tune ->
     quantize), scored by `ns-eval`'s compressed stage (`ns_eval`) and, like every other variant, by decoding the
     container and rendering it with the project's rasterizer (`metrics`);
  2. `png_same_gaussians` — gsplat 1.4.0 `PngCompression(use_sort=False)` on the *same* fine-tuned Gaussians (saved
     by the pipeline before quantization) pruned by importance until its files match the container's size, and
     on all of them (`png_all_finetuned`): isolates coding efficiency;
  3. `png_budget_trained` (`--budget-steps` > 0) — stock splatfacto trained from scratch while capped at the
     Gaussian count whose PngCompression matches the container's size (lowest-opacity Gaussians are removed
     whenever densification exceeds the cap): gsplat's intended rate knob. It trains at SH degree
     `--budget-sh-degree` (default 0), because PngCompression here stores only the DC colours, as the codec does at
     rates 0.5 and 1.0; each row also holds the capped model's own scores before coding (`metrics_before_png`).

Metrics: PSNR, SSIM, LPIPS-alex and, where the weights exist, LPIPS-vgg and DISTS (missing ones are named under
`errors`). Sizes in MB = 2^20 bytes; encode/decode times in seconds; the GPU is named.
"""
import copy
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import tyro

IMAGE_METRICS = ("psnr", "ssim", "lpips", "lpips_vgg", "dists")
MB = float(1 << 20)
PHOTOS = "nerfstudio's cached eval images (undistorted, cameras updated), as ns-eval scores them"


@dataclass
class BenchNifiConfig:
    """Options of the nifi-splatfacto product benchmark."""

    data: Path
    """nerfstudio scene (transforms.json + images_N/)"""
    out: Path
    """output folder (bench_nifi_splatfacto.json + .png)"""
    downscale_factor: int = 2
    """nerfstudio-data downscale (images_N)"""
    max_num_iterations: int = 7000
    """splatfacto training steps before the fine-tune"""
    finetune_steps: int = 1000
    """compression-aware fine-tune steps"""
    distill_weight: Optional[float] = None
    """distillation weight of the fine-tune (default: the method's, --pipeline.finetune-distill-weight)"""
    quant_start: float = 0.5
    """fraction of the fine-tune; <0 disables QAT"""
    rates: List[float] = field(default_factory=lambda: [0.1, 0.5, 1.0])
    """codec rate presets"""
    target_mb: Optional[List[float]] = None
    """one size per rate (default: presets)"""
    budget_steps: int = 0
    """steps of each budget-capped splatfacto (0: skip)"""
    budget_sh_degree: int = 0
    """SH degree of each budget-capped splatfacto (nerfstudio's default is 3). PngCompression is applied to the
    DC colours only, so a degree-3 model loses its view-dependent colour at coding (fox at 14.4k Gaussians on an
    H100: 20.9 dB at degree 3, 23.8 dB at degree 0); 0 trains the colours it keeps"""
    deadline_s: Optional[float] = None
    """skip the budget-capped trainings still to come once the run has taken this long"""
    num_random: Optional[int] = None
    """random-init Gaussians (with --random-init)"""
    random_init: bool = False
    """random Gaussians instead of the SfM points"""
    smoke_cpu: bool = False
    """tiny CPU run that exercises every variant"""
    work_dir: Optional[Path] = None
    """run folder (default: <out>/runs)"""
    overwrite: bool = False
    """replace an existing --out JSON (default: refuse)"""
    save_renders: Optional[Path] = None
    """also write every scored render (8-bit PNG, <dir>/<variant>__<label>/) and the photos (<dir>/photos/), for
    scoring LPIPS-vgg / DISTS later where their weights exist (scripts/rescore_renders.py)"""
    load_config: Optional[Path] = None
    """config.yml of a finished nifi-splatfacto run (trained with --pipeline.save-finetuned True): skip training and
    compression, benchmark its containers"""
    budgets_from: Optional[Path] = None
    """bench_nifi_splatfacto.json of an earlier run on the same scene: only the budget-trained rows, one per budget
    of its png_same_gaussians rows (needs --budget-steps > 0); nothing else is trained"""


def parse_args(argv=None) -> BenchNifiConfig:
    return tyro.cli(BenchNifiConfig, args=argv, description=__doc__, config=(tyro.conf.FlagCreatePairsOff,))


def _smoke_scene(data: Path, root: Path, count: int = 6) -> Path:
    meta = json.loads((data / "transforms.json").read_text())
    meta["frames"] = meta["frames"][::8][:count]
    scene = root / "smoke_scene"
    scene.mkdir(parents=True, exist_ok=True)
    (scene / "transforms.json").write_text(json.dumps(meta))
    link = scene / "images_4"
    if not link.exists():
        link.symlink_to((data / "images_4").resolve())
    return scene


def _helpers():
    """`render`, `Scorer` and `png_variant` of scripts/bench_codec_vs_gsplat.py (one implementation of each)."""
    path = Path(__file__).with_name("bench_codec_vs_gsplat.py")
    spec = importlib.util.spec_from_file_location("bench_codec_vs_gsplat", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _configure(config, args, device: str, work: Path, name: str, steps: int):
    """A copy of nerfstudio's registered `config` set up for this benchmark (the registered one is left alone: other
    code in the process, e.g. a later `ns-train splatfacto`, reads its defaults)."""
    config = copy.deepcopy(config)
    config.pipeline.datamanager.data = args.data
    config.pipeline.datamanager.dataparser.downscale_factor = args.downscale_factor
    if args.smoke_cpu:
        config.pipeline.datamanager.dataparser.eval_mode = "interval"
        config.pipeline.datamanager.dataparser.eval_interval = 3
    config.output_dir = work
    config.experiment_name = name
    config.timestamp = "run"
    config.max_num_iterations = steps
    config.steps_per_save = steps
    config.steps_per_eval_all_images = 10**9
    config.steps_per_eval_image = 10**9
    config.steps_per_eval_batch = 10**9
    config.vis = "tensorboard"
    config.viewer.quit_on_train_completion = True
    config.machine.device_type = device
    if args.random_init:
        config.pipeline.model.random_init = True
    if args.num_random is not None:
        config.pipeline.model.num_random = args.num_random
    return config


def load_budgets(args) -> tuple:
    """(the --budgets-from JSON, its png_same_gaussians rows, smallest budget first); SystemExit on bad input."""
    path = args.budgets_from
    try:
        source = json.loads(path.read_text("utf8"))
    except FileNotFoundError:
        raise SystemExit(f"error: --budgets-from {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SystemExit(f"error: --budgets-from {path} is not a JSON file ({err})") from None
    rows = source.get("png_same_gaussians") if isinstance(source, dict) else None
    if not isinstance(rows, list) or not rows:
        raise SystemExit(f"error: --budgets-from {path} has no png_same_gaussians rows; give the "
                         "bench_nifi_splatfacto.json of a run that reached PngCompression")
    for row in rows:
        kept = row.get("kept") if isinstance(row, dict) else None
        if not isinstance(kept, int) or isinstance(kept, bool) or kept < 1 or not isinstance(row.get("label"), str):
            raise SystemExit(f"error: --budgets-from {path}: png_same_gaussians row {row!r} has no label and "
                             "Gaussian count `kept`")
    if not args.smoke_cpu:  # the smoke run picks its own scene subset and resolution
        scene, factor = source.get("scene"), source.get("downscale_factor")
        if scene is not None and Path(scene).name != args.data.name:
            raise SystemExit(f"error: --budgets-from {path} was measured on {scene}, not --data {args.data}")
        if factor is not None and factor != args.downscale_factor:
            raise SystemExit(f"error: --budgets-from {path} was measured at --downscale-factor {factor}, not "
                             f"{args.downscale_factor}")
    return source, sorted(rows, key=lambda r: r["kept"])


def _machine() -> dict:
    import torch

    return {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__}


def train_capped_splatfacto(args, device: str, work: Path, budget: int, name: str):
    """Stock splatfacto trained for --budget-steps with at most `budget` Gaussians; returns its GaussianSplat and the
    run's datamanager (same dataparser config and split as the benchmarked run)."""
    import torch
    from gsplat.strategy.ops import remove
    from nerfstudio.configs.method_configs import method_configs
    from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation

    from nifi_ns.io import GaussianSplat

    config = _configure(method_configs["splatfacto"], args, device, work, name, args.budget_steps)
    config.pipeline.model.sh_degree = args.budget_sh_degree
    config.set_timestamp()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    model = trainer.pipeline.model

    def cap(step: int) -> None:
        n = model.num_points
        optimizers = getattr(model, "optimizers", None)
        if n <= budget or optimizers is None:
            return
        with torch.no_grad():
            rank = torch.argsort(model.gauss_params["opacities"][:, 0], descending=True)
            mask = torch.ones(n, dtype=torch.bool, device=rank.device)
            mask[rank[:budget]] = False
        remove(params=model.gauss_params, optimizers=optimizers, state=model.strategy_state, mask=mask)

    trainer.callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], cap))
    trainer.train()
    cap(trainer.step)
    return GaussianSplat.from_gauss_params(model.gauss_params), trainer.pipeline.datamanager


def budget_trained(h, args, device: str, work: Path, tmp: Path, label: str, budget: int) -> tuple:
    """Variant 3 at one budget: (row without metrics, the capped model, its PngCompression-decoded copy, the capped
    run's datamanager)."""
    import torch

    t0 = time.perf_counter()
    capped, dm = train_capped_splatfacto(args, device, work, budget, f"budget_{label}")
    train_s = time.perf_counter() - t0
    dec, size, enc, dec_s, _ = h.png_variant(capped, None, torch.device(device), tmp, with_sh_rest=False)
    row = {"label": label, "budget": budget, "num_gaussians": capped.num_gaussians, "train_steps": args.budget_steps,
           "sh_degree": capped.sh_degree, "train_s": train_s, "size_mb": size / MB, "encode_s": enc, "decode_s": dec_s}
    return row, capped, dec, dm


def png_at_size(h, splat, cameras, target_bytes: int, device, workdir: Path):
    """PngCompression (SH degree 0) of the `n` most important Gaussians, `n` searched so the files land at or
    just under `target_bytes`. Returns (decoded, size, encode s, decode s, n)."""
    from nifi_ns.codec import CameraSet, importance_order

    order = importance_order(splat, CameraSet.from_nerfstudio(cameras))
    probe = min(splat.num_gaussians, 20000)
    _, size, _, _, _ = h.png_variant(splat, np.sort(order[:probe]), device, workdir, with_sh_rest=False)
    per = size / probe
    n = int(min(splat.num_gaussians, max(64, target_bytes / per)))
    best = None
    for _ in range(4):
        dec, size, enc, dec_s, _ = h.png_variant(splat, np.sort(order[:n]), device, workdir, with_sh_rest=False)
        if size <= target_bytes or n <= 64:
            best = (dec, size, enc, dec_s, n)
            if size >= 0.97 * target_bytes or n >= splat.num_gaussians:
                break
        n = int(min(splat.num_gaussians, max(64, n * target_bytes / size * (0.995 if size > target_bytes else 1.0))))
    if best is None:
        best = (dec, size, enc, dec_s, n)
    return best


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = (
        ("nifi", "nifi-splatfacto (this codec)", "o-"),
        ("png_same_gaussians", "PngCompression, same fine-tuned Gaussians", "s--"),
        ("png_budget_trained", "PngCompression, splatfacto trained to the budget", "^:"),
    )
    metrics = [m for m in ("psnr", "ssim", "lpips") if m in result["uncompressed"]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4.2))
    axes = np.atleast_1d(axes)
    for key, label, style in series:
        rows = sorted((r for r in result.get(key, []) if "metrics" in r), key=lambda r: r["size_mb"])
        for ax, metric in zip(axes, metrics):
            pts = [(r["size_mb"], r["metrics"][metric]) for r in rows if metric in r["metrics"]]
            if pts:
                ax.plot(*zip(*pts), style, label=label)
    for ax, metric in zip(axes, metrics):
        ax.axhline(result["uncompressed"][metric], color="gray", ls=":", label="uncompressed")
        ax.set_xscale("log")
        ax.set_xlabel("size (MB, 2^20 bytes)")
        ax.set_ylabel({"psnr": "PSNR (dB)", "ssim": "SSIM", "lpips": "LPIPS (alex)"}[metric])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{result['scene']} - {result['machine']['gpu'] or 'CPU'}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    from nifi_ns.cli.options import check_min, check_output, check_rates, check_target_mb

    check_rates(args.rates)  # every option before the (long) training starts
    check_target_mb(args.target_mb, len(args.rates))
    for option, value, low in (("--downscale-factor", args.downscale_factor, 1),
                               ("--max-num-iterations", args.max_num_iterations, 1),
                               ("--finetune-steps", args.finetune_steps, 0), ("--num-random", args.num_random, 1)):
        check_min(option, value, low)
    if args.out.exists() and not args.out.is_dir():
        raise SystemExit(f"error: --out {args.out} is a file; give a folder")
    check_output(args.out / "bench_nifi_splatfacto.json", args.overwrite)
    if args.save_renders is not None and args.save_renders.exists() and any(args.save_renders.iterdir()) \
            and not args.overwrite:
        raise SystemExit(f"error: --save-renders {args.save_renders} is not empty; pass --overwrite to replace it")
    if not (args.data / "transforms.json").is_file():
        raise SystemExit(f"error: --data {args.data}: no transforms.json")
    if args.target_mb and len(args.target_mb) != len(args.rates):
        raise SystemExit(f"error: --target-mb has {len(args.target_mb)} values for {len(args.rates)} --rates")
    if not 0 <= args.budget_sh_degree <= 3:
        raise SystemExit(f"error: --budget-sh-degree {args.budget_sh_degree}: splatfacto supports SH degrees 0 to 3")
    budgets = None
    if args.budgets_from is not None:
        if args.load_config is not None:
            raise SystemExit("error: --budgets-from trains no nifi-splatfacto model; leave out --load-config")
        if args.budget_steps < 1 and not args.smoke_cpu:
            raise SystemExit("error: --budgets-from trains the budget-capped splatfacto runs: give --budget-steps > 0")
        if args.budgets_from.resolve() == (args.out / "bench_nifi_splatfacto.json").resolve():
            raise SystemExit(f"error: --out {args.out} would replace --budgets-from {args.budgets_from}")
        budgets = load_budgets(args)
    os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")
    import torch

    import nifi_ns  # noqa: F401  (torch checkpoint allow-list before nerfstudio loads a run)
    from nerfstudio.scripts.eval import ComputePSNR
    from nerfstudio.scripts.train import main as ns_train
    from nerfstudio.utils.eval_utils import eval_setup

    from nifi_ns.codec import decompress, read_header
    from nifi_ns.io import read_ply
    from nifi_ns.nerfstudio.method_configs import nifi_splatfacto_config

    if not args.smoke_cpu and not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU; the full benchmark trains splatfacto for hours on a CPU. "
                 "Use --smoke-cpu for a tiny CPU run")
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work_dir or args.out / "runs"
    if args.smoke_cpu:
        args.data = _smoke_scene(args.data, work)
        args.downscale_factor, args.max_num_iterations, args.finetune_steps = 4, 6, 4
        args.rates, args.target_mb = [1.0], [0.004]
        args.budget_steps, args.random_init = 6, True
        args.num_random = args.num_random or 300
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if budgets is not None:
        return run_budgets(args, *budgets, device, work)
    if args.target_mb:
        for rate, mb in zip(args.rates, args.target_mb):
            print(f"[bench] rate {rate}: target {mb} MB", flush=True)

    config = _configure(nifi_splatfacto_config(), args, device, work, "nifi", args.max_num_iterations)
    config.pipeline.rates = tuple(args.rates)
    config.pipeline.target_mb = tuple(args.target_mb or ())
    config.pipeline.finetune_steps = args.finetune_steps
    if args.distill_weight is not None:
        config.pipeline.finetune_distill_weight = args.distill_weight
    config.pipeline.finetune_quant_start = None if args.quant_start < 0 else args.quant_start
    config.pipeline.save_finetuned = True
    config.pipeline.importance_views = 4 if args.smoke_cpu else config.pipeline.importance_views
    t0 = start = time.perf_counter()
    if args.load_config is None:
        ns_train(config)  # training + the AFTER_TRAIN compression callback
        run_dir = config.get_base_dir()
    else:
        if not args.load_config.is_file():
            raise SystemExit(f"error: --load-config {args.load_config} does not exist")
        run_dir = args.load_config.parent
    train_and_compress_s = time.perf_counter() - t0
    eval_json = work / "eval.json"
    t1 = time.perf_counter()
    ComputePSNR(load_config=run_dir / "config.yml", output_path=eval_json).main()
    eval_s = time.perf_counter() - t1
    ns_results = json.loads(eval_json.read_text())["results"]
    reports = json.loads((run_dir / "nifi" / "summary.json").read_text())

    # common scorer: the eval split's photos, rendered by the project's rasterizer
    h = _helpers()
    _, pipeline, _, _ = eval_setup(run_dir / "config.yml", test_mode="test")
    dm = pipeline.datamanager
    eval_cams, images = h.eval_views(dm)  # undistorted photos and cameras: what ns-eval scores
    _ = dm.cached_train  # likewise for the training cameras (importance of the PngCompression subsets)
    train_cams = dm.train_dataset.cameras
    errors: dict = {}
    score = h.Scorer(eval_cams, images, torch.device(device), errors, save_dir=args.save_renders)
    from nifi_ns.io import GaussianSplat

    uncompressed = GaussianSplat.from_gauss_params(pipeline.model.gauss_params)
    result = {
        "machine": _machine(),
        "scene": str(args.data),
        "smoke_cpu": bool(args.smoke_cpu),
        "downscale_factor": args.downscale_factor,
        "max_num_iterations": args.max_num_iterations,
        "budget_sh_degree": args.budget_sh_degree,
        "finetune": {"steps": args.finetune_steps, "distill_weight": config.pipeline.finetune_distill_weight,
                     "lpips_weight": config.pipeline.finetune_lpips_weight,
                     "lpips_net": config.pipeline.finetune_lpips_net,
                     "quant_start": args.quant_start},
        "eval_images": len(images),
        "photos": PHOTOS,
        "num_gaussians": uncompressed.num_gaussians,
        "train_and_compress_seconds": train_and_compress_s,
        "ns_eval_seconds": eval_s,
        "ns_eval_uncompressed": {m: ns_results[f"uncompressed/{m}"] for m in IMAGE_METRICS
                                 if f"uncompressed/{m}" in ns_results},
        "uncompressed": score(uncompressed, "uncompressed"),
        "nifi": [],
        "png_same_gaussians": [],
        "png_all_finetuned": [],
        "png_budget_trained": [],
        "errors": errors,
    }
    print(f"[bench] uncompressed {result['uncompressed']}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench_png_", dir=work))
    out_json = args.out / "bench_nifi_splatfacto.json"

    def save() -> None:  # after every variant, so a run cut short still leaves its numbers
        result["total_seconds"] = time.perf_counter() - start
        out_json.write_text(json.dumps(result, indent=2), "utf8")

    for label, rep in sorted(reports.items(), key=lambda kv: -kv[1]["rate"]):  # smallest files first
        blob = (run_dir / "nifi" / f"{label}.nifi").read_bytes()
        t2 = time.perf_counter()
        decoded = decompress(blob)
        decode_s = time.perf_counter() - t2
        row = {
            "label": label, "rate": rep["rate"], "size_mb": len(blob) / MB, "num_gaussians": rep["num_gaussians"],
            "pruned_to": rep["pruned_gaussians"], "sh_degree": rep["sh_degree"],
            "container_version": int.from_bytes(blob[8:10], "little"),
            "coding": sorted(k for k in read_header(blob) if k in ("cov_vq", "color_vq", "scale", "color")),
            "encode_s": rep["encode_seconds"], "compress_total_s": rep["total_seconds"], "decode_s": decode_s,
            "ns_eval": {m: ns_results[f"compressed/{label}/{m}"] for m in IMAGE_METRICS
                        if f"compressed/{label}/{m}" in ns_results},
            "metrics": score(decoded, f"nifi__{label}"),
        }
        result["nifi"].append(row)
        save()  # PngCompression's k-means can take a minute: a run cut short keeps this row
        print(f"[bench] nifi {row}", flush=True)
        tuned = read_ply(run_dir / "nifi" / f"{label}.finetuned.ply")
        try:
            dec, size, enc, dec_s, n = png_at_size(h, tuned, train_cams, len(blob), torch.device(device), tmp)
            png = {"label": label, "size_mb": size / MB, "kept": n, "num_gaussians": dec.num_gaussians,
                   "encode_s": enc, "decode_s": dec_s,
                   "metrics": score(dec, f"png_same_gaussians__{label}")}
            result["png_same_gaussians"].append(png)
            save()  # the all-Gaussians variant below runs SH k-means over every Gaussian: keep this row if cut there
            print(f"[bench] png same Gaussians {png}", flush=True)
            dec, size, enc, dec_s, _ = h.png_variant(tuned, None, torch.device(device), tmp, with_sh_rest=True)
            result["png_all_finetuned"].append({"label": label, "size_mb": size / MB, "num_gaussians":
                                                dec.num_gaussians, "sh_degree": dec.sh_degree, "encode_s": enc,
                                                "decode_s": dec_s,
                                                "metrics": score(dec, f"png_all_finetuned__{label}")})
        except Exception as err:  # torchpq / cupy / PNG stack missing on this machine: recorded, others continue
            errors[f"png_{label}"] = f"{type(err).__name__}: {err}"
            print(f"[bench] PngCompression failed at {label}: {err}", flush=True)
            continue
        save()
        if args.budget_steps > 0 and args.deadline_s is not None and time.perf_counter() - start > args.deadline_s:
            errors[f"budget_{label}"] = f"skipped: past --deadline-s {args.deadline_s}"
        elif args.budget_steps > 0:
            try:
                budget_row, capped, dec, _ = budget_trained(h, args, device, work, tmp, label, n)
                budget_row["metrics_before_png"] = score(capped)
                budget_row["metrics"] = score(dec, f"png_budget_trained__{label}")
                result["png_budget_trained"].append(budget_row)
                print(f"[bench] png budget-trained {budget_row}", flush=True)
            except Exception as err:
                errors[f"budget_{label}"] = f"{type(err).__name__}: {err}"
                print(f"[bench] budget-trained splatfacto failed at {label}: {err}", flush=True)
        save()
    shutil.rmtree(tmp, ignore_errors=True)
    save()
    plot(result, out_json.with_suffix(".png"))
    print(json.dumps(result, indent=2))
    return 0


def run_budgets(args, source: dict, rows: list, device: str, work: Path) -> int:
    """--budgets-from: the budget-trained rows alone, saved after every row (a run cut short keeps its rows)."""
    import torch

    start = time.perf_counter()
    h = _helpers()
    errors: dict = {}

    def copy(row: dict, keys: tuple) -> dict:
        return {k: row[k] for k in keys if k in row}

    result = {
        "machine": _machine(),
        "scene": str(args.data),
        "smoke_cpu": bool(args.smoke_cpu),
        "downscale_factor": args.downscale_factor,
        "budget_steps": args.budget_steps,
        "budget_sh_degree": args.budget_sh_degree,
        "eval_images": None,  # set from the first capped run's datamanager
        "photos": PHOTOS,
        "budgets_from": {
            "file": str(args.budgets_from),
            "scene": source.get("scene"),
            "downscale_factor": source.get("downscale_factor"),
            "uncompressed": source.get("uncompressed"),
            "nifi": [copy(r, ("label", "size_mb", "metrics")) for r in source.get("nifi") or [] if isinstance(r, dict)],
            "png_same_gaussians": [copy(r, ("label", "size_mb", "kept", "metrics")) for r in rows],
        },
        "png_budget_trained": [],
        "errors": errors,
    }
    work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench_png_", dir=work))
    out_json = args.out / "bench_nifi_splatfacto.json"

    def save() -> None:
        result["total_seconds"] = time.perf_counter() - start
        out_json.write_text(json.dumps(result, indent=2), "utf8")

    save()
    score = None  # built from the first capped run's datamanager: the eval views every row is scored on
    for source_row in rows:
        label, budget = source_row["label"], source_row["kept"]
        if args.deadline_s is not None and time.perf_counter() - start > args.deadline_s:
            errors[f"budget_{label}"] = f"skipped: past --deadline-s {args.deadline_s}"
            save()
            continue
        try:
            row, capped, dec, dm = budget_trained(h, args, device, work, tmp, label, budget)
            if score is None:
                eval_cams, images = h.eval_views(dm)
                result["eval_images"] = len(images)
                score = h.Scorer(eval_cams, images, torch.device(device), errors, save_dir=args.save_renders)
            row["metrics_before_png"] = score(capped)
            row["metrics"] = score(dec, f"png_budget_trained__{label}")
            result["png_budget_trained"].append(row)
            print(f"[bench] png budget-trained {row}", flush=True)
        except Exception as err:  # recorded; the next budget still runs
            errors[f"budget_{label}"] = f"{type(err).__name__}: {err}"
            print(f"[bench] budget-trained splatfacto failed at {label}: {err}", flush=True)
        save()
    shutil.rmtree(tmp, ignore_errors=True)
    if isinstance(source.get("uncompressed"), dict):  # the plot's reference line is the source run's model
        plot({**result["budgets_from"], "scene": result["scene"], "machine": result["machine"],
              "png_budget_trained": result["png_budget_trained"]}, out_json.with_suffix(".png"))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
