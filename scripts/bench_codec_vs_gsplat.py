"""Rate-distortion comparison of the NiFi "Nix" codec with gsplat 1.4.0's PngCompression on one trained scene.

GPU machine (the lead runs it):
    source .device/setup.sh && python scripts/bench_codec_vs_gsplat.py --out $OUT/bench_codec_vs_gsplat.json

It trains a quick splatfacto on .device/data/fox (quarter resolution, --train-steps, default 3000) unless
--load-config <run>/config.yml (a trained splatfacto run) or --ply <INRIA 3DGS PLY in the dataparser frame> is given.

Every variant is rendered by the same rasterizer (gsplat's CUDA kernels via difix_ns.splat.rasterization) at the
eval cameras of the nerfstudio-data split and scored with difix_ns.metrics.ImageMetrics against the photographs
(PSNR, SSIM, LPIPS-alex, LPIPS-vgg, DISTS). Variants:
  - uncompressed model;
  - Nix at rates 0.1 / 0.5 / 1.0 and at a target size equal to the full PngCompression size (importance from
    the training cameras, computed once: `importance_s`, not included in `encode_s`);
  - PngCompression(use_sort=False) on all Gaussians (SH rest k-means via torchpq if importable; the error is
    recorded otherwise) and on importance-pruned subsets sized to land near the Nix rates (SH degree 0 there,
    as Nix does at those rates, which also avoids k-means with more clusters than points).

Writes the JSON to --out (a .json path, or a directory that receives bench_codec_vs_gsplat.json) and a
rate-distortion plot (PNG) next to it.
"""


import functools
import glob
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
import tyro

import nifi_ns  # noqa: F401  (installs the torch>=2.6 checkpoint allow-list before nerfstudio loads a run)
from nifi_ns.codec import CameraSet, compress_with_report, decompress, importance_order
from nifi_ns.io import GaussianSplat, inria_ply_num_bytes, num_sh_rest, read_ply

MB = float(1 << 20)


@dataclass
class BenchCodecConfig:
    """Options of the codec-vs-PngCompression benchmark."""

    out: Path
    """JSON output path (or directory)"""
    load_config: Optional[Path] = None
    """config.yml of a trained splatfacto run"""
    ply: Optional[Path] = None
    """INRIA 3DGS PLY (dataparser frame) instead of a run"""
    data: Path = Path(".device/data/fox")
    """nerfstudio-data scene folder"""
    downscale_factor: int = 4
    """nerfstudio-data downscale (images_N)"""
    train_steps: int = 3000
    """splatfacto steps when no run is given"""
    rates: List[float] = field(default_factory=lambda: [0.1, 0.5, 1.0])
    """codec rate presets to encode"""
    max_eval_images: int = 8
    """eval cameras scored (evenly spaced when there are more)"""
    overwrite: bool = False
    """replace an existing result JSON (default: refuse)"""


def parse_args(argv: Optional[List[str]] = None) -> BenchCodecConfig:
    return tyro.cli(BenchCodecConfig, args=argv, description=__doc__, config=(tyro.conf.FlagCreatePairsOff,))


def train_splatfacto(data: Path, downscale: int, steps: int, workdir: Path) -> Path:
    cmd = [
        "ns-train",
        "splatfacto",
        "--data",
        str(data),
        "--output-dir",
        str(workdir),
        "--timestamp",
        "bench",
        "--max-num-iterations",
        str(steps),
        "--viewer.quit-on-train-completion",
        "True",
        "--vis",
        "tensorboard",
        "nerfstudio-data",
        "--downscale-factor",
        str(downscale),
    ]
    print("[bench] " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    configs = glob.glob(str(workdir / "**" / "config.yml"), recursive=True)
    if not configs:
        raise FileNotFoundError(f"ns-train wrote no config.yml under {workdir}")
    return Path(configs[0])


def load_scene(args: BenchCodecConfig, workdir: Path):
    """(GaussianSplat, train Cameras, eval Cameras, eval images [B,3,H,W] list, source description)."""
    if args.ply is not None:
        from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
        from nerfstudio.data.datasets.base_dataset import InputDataset

        parser = NerfstudioDataParserConfig(data=args.data, downscale_factor=args.downscale_factor).setup()
        train, test = parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("test")
        dataset = InputDataset(test)
        images = [dataset.get_image_float32(i).permute(2, 0, 1)[:3] for i in range(len(dataset))]
        return read_ply(args.ply), train.cameras, test.cameras, images, str(args.ply)
    config = args.load_config or train_splatfacto(args.data, args.downscale_factor, args.train_steps, workdir)
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(config, test_mode="test")
    model, dm = pipeline.model, pipeline.datamanager
    if not hasattr(model, "gauss_params"):
        raise ValueError(f"{config}: {type(model).__name__} is not a splatfacto-family model")
    splat = GaussianSplat.from_gauss_params(model.gauss_params)
    eval_cams, images = eval_views(dm)
    return splat, dm.train_dataset.cameras, eval_cams, images, str(config)


def eval_views(dm) -> tuple:
    """(eval Cameras, photos [3,H,W] float in [0,1]) exactly as ``ns-eval`` scores a run: nerfstudio's image cache
    *undistorts* captures with lens distortion (fox: k1 = 0.058) and rewrites the eval cameras' intrinsics and size in
    place, so both are read after loading it. The raw files (``get_image_float32``) are not pixel-aligned with a
    render of the trained model; scoring against them cost ~3.6 dB and ~0.04 LPIPS on fox x2 (2026-12-05 H100 runs)."""
    cached = dm.cached_eval
    images = []
    for entry in cached:
        image = entry["image"]
        image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        images.append(image[..., :3].permute(2, 0, 1).contiguous().cpu())
    return dm.eval_dataset.cameras, images


def render(splat: GaussianSplat, cameras, device) -> list[torch.Tensor]:
    from difix_ns.splat.splat_render import render_splat

    cams = CameraSet.from_nerfstudio(cameras)
    out = []
    for i in range(len(cams.viewmats)):
        viewmat = torch.tensor(cams.viewmats[i : i + 1], dtype=torch.float32, device=device)
        K = torch.tensor(cams.Ks[i : i + 1], dtype=torch.float32, device=device)
        w, h = int(cameras.width[i]), int(cameras.height[i])
        with torch.no_grad():
            out.append(render_splat(splat, viewmat, K, w, h, device)[0])
    return out


def save_pngs(images: list, folder: Path) -> None:
    """[3,H,W] images in [0,1] -> folder/000.png, 001.png, ... (8-bit; what scripts/rescore_renders.py reads)."""
    from difix_ns.io import save_png

    for i, image in enumerate(images):
        save_png(image, folder / f"{i:03d}.png")


class Scorer:
    """Mean metrics over the eval views; falls back to PSNR/SSIM (and records why) if a perceptual net is missing."""

    def __init__(self, cameras, images, device, errors: dict, save_dir: Optional[Path] = None):
        from difix_ns.metrics import ImageMetrics

        self.cameras, self.images, self.device, self.errors = cameras, images, device, errors
        self.metrics = ImageMetrics(device)
        self.full, self.alex_only = True, False
        self.save_dir = save_dir  # renders as 8-bit PNGs, <save_dir>/<name>/<i>.png, photos in <save_dir>/photos/
        if save_dir is not None:
            save_pngs(images, save_dir / "photos")

    def _one(self, pred, target) -> dict:
        if self.full:
            try:
                return self.metrics(pred, target)
            except Exception as err:  # offline weights for LPIPS-vgg / DISTS not available on this machine
                self.errors["perceptual_metrics"] = f"{type(err).__name__}: {err}"
                self.full = False
        if self.metrics is not None:
            try:  # AlexNet alone is small enough to carry to an offline GPU machine
                from difix_ns.metrics import ImageMetrics

                if not self.alex_only:
                    self.metrics, self.alex_only = ImageMetrics(self.device, perceptual=("lpips",)), True
                return self.metrics(pred, target)
            except Exception as err:
                self.errors["lpips_alex"] = f"{type(err).__name__}: {err}"
                self.metrics = None
        from difix_ns.metrics import psnr, ssim

        return {"psnr": float(psnr(pred, target).mean()), "ssim": float(ssim(pred, target).mean())}

    def __call__(self, splat: GaussianSplat, name: Optional[str] = None) -> dict:
        preds = render(splat, self.cameras, self.device)
        if self.save_dir is not None and name:
            save_pngs(preds, self.save_dir / name)
        rows = [self._one(p[None], t[None].to(self.device)) for p, t in zip(preds, self.images)]
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[-1]}


def png_variant(splat: GaussianSplat, keep: np.ndarray | None, device, workdir: Path, with_sh_rest: bool) -> tuple:
    """PngCompression(use_sort=False) on (a subset of) the splat: (decoded GaussianSplat, bytes, enc s, dec s)."""
    from gsplat.compression import PngCompression

    s = splat if keep is None else splat.subset(keep)
    g = s.to_gauss_params(device)
    splats = {
        "means": g["means"],
        "scales": g["scales"],
        "quats": g["quats"],
        "opacities": g["opacities"][:, 0],
        "sh0": g["features_dc"][:, None],
    }
    if with_sh_rest and s.sh_degree > 0:
        splats["shN"] = g["features_rest"]
    out_dir = Path(tempfile.mkdtemp(dir=workdir, prefix="png_"))
    codec = PngCompression(use_sort=False, verbose=False)
    clusters = min(65536, s.num_gaussians)  # gsplat's default k-means size needs >= 65,536 Gaussians
    if "shN" in splats and clusters < 65536:
        default_fn = codec._get_compress_fn
        codec._get_compress_fn = lambda name: (
            functools.partial(default_fn(name), n_clusters=clusters) if name == "shN" else default_fn(name)
        )
    torch.cuda.synchronize() if device.type == "cuda" else None
    t0 = time.perf_counter()
    codec.compress(str(out_dir), dict(splats))
    t1 = time.perf_counter()
    dec = codec.decompress(str(out_dir))
    torch.cuda.synchronize() if device.type == "cuda" else None
    t2 = time.perf_counter()
    size = sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file())
    n = dec["means"].shape[0]
    degree = s.sh_degree if "shN" in dec else 0
    rest = dec["shN"] if "shN" in dec else torch.zeros(n, 0, 3)
    decoded = GaussianSplat(
        dec["means"],
        dec["scales"],
        dec["quats"],
        dec["opacities"].reshape(n, 1),
        dec["sh0"].reshape(n, 3),
        rest.reshape(n, num_sh_rest(degree), 3),
        degree,
    )
    shutil.rmtree(out_dir, ignore_errors=True)
    return decoded, size, t1 - t0, t2 - t1, clusters if "shN" in splats else 0


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for key, label, style in (("nix", "Nix (this codec)", "o-"), ("gsplat_png", "gsplat PngCompression", "s--")):
        rows = sorted((r for r in result[key] if "psnr" in r), key=lambda r: r["size_mb"])
        for ax, metric in zip(axes, ("psnr", "ssim", "lpips")):
            if not rows or metric not in rows[0]:
                continue
            ax.plot([r["size_mb"] for r in rows], [r[metric] for r in rows], style, label=label)
    for ax, metric in zip(axes, ("PSNR (dB)", "SSIM", "LPIPS (alex)")):
        ref = result["uncompressed"].get({"PSNR (dB)": "psnr", "SSIM": "ssim", "LPIPS (alex)": "lpips"}[metric])
        if ref is not None:
            ax.axhline(ref, color="gray", ls=":", label=f"uncompressed ({result['ply_mb']:.1f} MB PLY)")
        ax.set_xscale("log")
        ax.set_xlabel("size (MB, 2^20 bytes)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{result['scene']} — {result['num_gaussians']} Gaussians — {result['device']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    args = parse_args()
    from nifi_ns.cli.options import check_min, check_output, check_rates

    check_rates(args.rates)  # every option before any training or loading
    for option, value, low in (("--downscale-factor", args.downscale_factor, 1), ("--train-steps", args.train_steps, 1),
                               ("--max-eval-images", args.max_eval_images, 1)):
        check_min(option, value, low)
    out_json = args.out if args.out.suffix == ".json" else args.out / "bench_codec_vs_gsplat.json"
    check_output(out_json, args.overwrite)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    workdir = Path(tempfile.mkdtemp(prefix="nifi_bench_"))
    splat, train_cams, eval_cams, images, source = load_scene(args, workdir)
    if len(images) > args.max_eval_images:
        pick = np.linspace(0, len(images) - 1, args.max_eval_images).round().astype(int)
        eval_cams, images = eval_cams[torch.from_numpy(pick)], [images[i] for i in pick]
    errors: dict = {}
    score = Scorer(eval_cams, images, device, errors)
    result = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "scene": source,
        "num_gaussians": splat.num_gaussians,
        "sh_degree": splat.sh_degree,
        "ply_mb": inria_ply_num_bytes(splat.num_gaussians, splat.sh_degree) / MB,
        "eval_images": len(images),
        "lpips_backbone": "alex (lpips), vgg (lpips_vgg)",
        "uncompressed": score(splat),
        "nix": [],
        "gsplat_png": [],
        "errors": errors,
    }
    print(f"[bench] uncompressed: {result['uncompressed']}", flush=True)

    t0 = time.perf_counter()
    order = importance_order(splat, CameraSet.from_nerfstudio(train_cams))  # once; every Nix encode reuses it
    result["importance_s"] = time.perf_counter() - t0

    def add_nix(rate=None, target_mb=None):
        t0 = time.perf_counter()
        blob, report = compress_with_report(splat, rate=rate, target_mb=target_mb, order=order)
        t1 = time.perf_counter()
        decoded = decompress(blob)
        t2 = time.perf_counter()
        row = {
            "rate": rate,
            "target_mb": target_mb,
            "size_mb": len(blob) / MB,
            "num_gaussians": report.num_gaussians,
            "sh_degree": report.sh_degree,
            "compression_ratio": report.compression_ratio,
            "encode_s": t1 - t0,
            "decode_s": t2 - t1,
            **score(decoded),
        }
        result["nix"].append(row)
        print(f"[bench] nix {row}", flush=True)

    for rate in args.rates:
        add_nix(rate=rate)

    png_full_mb = None
    try:
        decoded, size, enc, dec, clusters = png_variant(splat, None, device, workdir, with_sh_rest=True)
        png_full_mb = size / MB
        row = {
            "variant": f"all Gaussians, SH rest k-means ({clusters} clusters)",
            "size_mb": png_full_mb,
            "num_gaussians": decoded.num_gaussians,
            "sh_degree": decoded.sh_degree,
            "compression_ratio": result["ply_mb"] / png_full_mb,
            "encode_s": enc,
            "decode_s": dec,
            **score(decoded),
        }
        result["gsplat_png"].append(row)
        print(f"[bench] png {row}", flush=True)
    except Exception as err:  # torchpq/cupy missing, or k-means failure: record and continue
        result["errors"]["gsplat_png_full"] = f"{type(err).__name__}: {err}"
        print(f"[bench] PngCompression with SH k-means failed: {err}", flush=True)
    if png_full_mb is not None:
        add_nix(target_mb=png_full_mb)

    for row in list(result["nix"]):
        if row["rate"] is None:
            continue
        # PngCompression at degree 0 costs ~ its per-Gaussian bytes; aim its size near this Nix point
        try:
            probe_n = min(splat.num_gaussians, 40000)
            if "png_bytes_per_gaussian" not in result:
                _, size, _, _, _ = png_variant(splat, np.sort(order[:probe_n]), device, workdir, with_sh_rest=False)
                result["png_bytes_per_gaussian"] = size / probe_n
            n = int(min(splat.num_gaussians, max(256, row["size_mb"] * MB / result["png_bytes_per_gaussian"])))
            decoded, size, enc, dec, _ = png_variant(splat, np.sort(order[:n]), device, workdir, with_sh_rest=False)
            png_row = {
                "variant": f"top-{n} by Nix importance, SH degree 0",
                "matched_nix_rate": row["rate"],
                "size_mb": size / MB,
                "num_gaussians": decoded.num_gaussians,
                "sh_degree": 0,
                "compression_ratio": result["ply_mb"] * MB / size,
                "encode_s": enc,
                "decode_s": dec,
                **score(decoded),
            }
            result["gsplat_png"].append(png_row)
            print(f"[bench] png {png_row}", flush=True)
        except Exception as err:
            result["errors"][f"gsplat_png_rate_{row['rate']}"] = f"{type(err).__name__}: {err}"

    out_json.write_text(json.dumps(result, indent=2))
    plot(result, out_json.with_suffix(".png"))
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
