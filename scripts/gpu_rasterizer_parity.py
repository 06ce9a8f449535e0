"""GPU parity check: gsplat 1.4.0's CUDA `rasterization` vs `difix_ns.splat.torch_rasterization`.

Run on the GPU machine (see docs/rasterizer.md):

    source .device/setup.sh && python scripts/gpu_rasterizer_parity.py --out $OUT/gpu_rasterizer_parity.json

Scenes: (a) the real guitar splat (PlayCanvas compressed PLY, SH degree 0) from orbit cameras; (b) a stock
splatfacto model trained here for `--fox-steps` steps on the quarter-res fox scene (or `--fox-config` of an existing
run), rendered from eval cameras exactly as splatfacto calls the rasterizer (SH degree 3, RGB+ED, absgrad). For each
scene both rasterizers render the same Gaussians (the torch one on the same CUDA tensors) and backpropagate the
same random linear loss. Reported: max/mean abs diff of RGB, alpha, expected depth (where both alphas > 0.5), radii
agreement, means2d grad / absgrad and parameter-grad errors, timings (median of repeats) and peak memory.
Prints the JSON and writes it to --out.
"""
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import tyro

from difix_ns.splat import install_cpu_support, torch_rasterization
from difix_ns.splat.cameras import orbit_cameras


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time in ms (CUDA synchronised) after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def _peak_mib(fn: Callable[[], object]):
    if not torch.cuda.is_available():
        return fn(), None
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    return out, torch.cuda.max_memory_allocated() / 2**20


def _diff(a: torch.Tensor, b: torch.Tensor) -> Dict[str, float]:
    d = (a.float() - b.float()).abs()
    if d.numel() == 0:
        return {"max": 0.0, "mean": 0.0, "frac_gt_1e-3": 0.0}
    return {"max": d.max().item(), "mean": d.mean().item(), "frac_gt_1e-3": (d > 1e-3).float().mean().item()}


def _grad_err(a: torch.Tensor, b: torch.Tensor) -> Dict[str, float]:
    out = _diff(a, b)
    out["rel_l2"] = ((a - b).norm() / b.norm().clamp_min(1e-20)).item()
    return out


def compare(name: str, gauss: Dict[str, torch.Tensor], viewmats, Ks, width: int, height: int, sh_degree,
            rasterize_mode: str, repeats: int, chunk_elements: int, gsplat_rasterization: Callable) -> Dict:
    """Renders `gauss` with both rasterizers (RGB+ED, absgrad) and compares outputs, gradients, timings."""
    C, device = viewmats.shape[0], viewmats.device
    gen = torch.Generator(device=device).manual_seed(0)
    w_rgb = torch.rand(C, height, width, 3, device=device, generator=gen)
    w_alpha = torch.rand(C, height, width, 1, device=device, generator=gen)
    common = dict(viewmats=viewmats, Ks=Ks, width=width, height=height, packed=False, near_plane=0.01,
                  far_plane=1e10, render_mode="RGB+ED", sh_degree=sh_degree, absgrad=True,
                  rasterize_mode=rasterize_mode)

    def run(fn, extra):
        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in gauss.items()}
        render, alpha, info = fn(leaves["means"], leaves["quats"], torch.exp(leaves["scales"]),
                                 torch.sigmoid(leaves["opacities"]), leaves["colors"], **common, **extra)
        info["means2d"].retain_grad()
        ((render[..., :3] * w_rgb).sum() + (alpha * w_alpha).sum()).backward()
        return render.detach(), alpha.detach(), info, {k: v.grad for k, v in leaves.items()}

    (r_ref, a_ref, i_ref, g_ref), mem_ref = _peak_mib(lambda: run(gsplat_rasterization, {}))
    (r_pt, a_pt, i_pt, g_pt), mem_pt = _peak_mib(lambda: run(torch_rasterization, {"chunk_elements": chunk_elements}))

    both = (a_ref[..., 0] > 0.5) & (a_pt[..., 0] > 0.5)
    vis = (i_ref["radii"] > 0) & (i_pt["radii"] > 0)
    result = {
        "scene": name,
        "num_gaussians": int(gauss["means"].shape[0]),
        "cameras": C,
        "width": width,
        "height": height,
        "sh_degree": sh_degree,
        "rasterize_mode": rasterize_mode,
        "rgb": _diff(r_pt[..., :3], r_ref[..., :3]),
        "alpha": _diff(a_pt, a_ref),
        "depth_where_alpha_gt_0.5": _diff(r_pt[..., 3][both], r_ref[..., 3][both]),
        "mean_alpha": a_ref.mean().item(),
        "radii_equal_frac": (i_pt["radii"] == i_ref["radii"]).float().mean().item(),
        "visible_per_camera": (i_ref["radii"] > 0).sum(1).tolist(),
        "means2d_grad": _grad_err(i_pt["means2d"].grad[vis], i_ref["means2d"].grad[vis]),
        "means2d_absgrad": _grad_err(i_pt["means2d"].absgrad[vis], i_ref["means2d"].absgrad[vis]),
        "param_grad_rel_l2": {k: _grad_err(g_pt[k], g_ref[k])["rel_l2"] for k in gauss},
        "peak_mem_mib": {"gsplat": mem_ref, "torch": mem_pt},
    }

    def fwd(fn, extra):
        def call():
            with torch.no_grad():
                fn(gauss["means"], gauss["quats"], torch.exp(gauss["scales"]), torch.sigmoid(gauss["opacities"]),
                   gauss["colors"], **common, **extra)

        return call

    def fwd_bwd(fn, extra):
        return lambda: run(fn, extra)

    result["ms_forward"] = {"gsplat": _timed(fwd(gsplat_rasterization, {}), repeats),
                            "torch": _timed(fwd(torch_rasterization, {"chunk_elements": chunk_elements}),
                                                 repeats)}
    result["ms_forward_backward"] = {
        "gsplat": _timed(fwd_bwd(gsplat_rasterization, {}), repeats),
        "torch": _timed(fwd_bwd(torch_rasterization, {"chunk_elements": chunk_elements}), repeats)}
    cpu = {k: v.detach().cpu() for k, v in gauss.items()}
    t0 = time.perf_counter()
    with torch.no_grad():
        torch_rasterization(cpu["means"], cpu["quats"], torch.exp(cpu["scales"]), torch.sigmoid(cpu["opacities"]),
                            cpu["colors"], **{**common, "viewmats": viewmats[:1].cpu(), "Ks": Ks[:1].cpu()})
    result["ms_forward_torch_cpu_one_view"] = 1000 * (time.perf_counter() - t0)
    return result


def guitar_scene(path: Path, n_views: int, width: int, height: int, device: str):
    from nifi_ns.io.ply import read_ply

    splat = read_ply(path)
    g = {k: torch.from_numpy(getattr(splat, k)).float() for k in ("means", "scales", "quats")}
    g["opacities"] = torch.from_numpy(splat.opacities).float().reshape(-1)
    g["colors"] = torch.cat([torch.from_numpy(splat.features_dc)[:, None], torch.from_numpy(splat.features_rest)], 1)
    center = g["means"].median(0).values
    extent = float((g["means"].quantile(0.95, 0) - g["means"].quantile(0.05, 0)).max())
    viewmats, Ks = orbit_cameras(center, 1.6 * extent, n_views, width, height, up=torch.tensor([0.0, -1.0, 0.0]))
    return {k: v.to(device) for k, v in g.items()}, viewmats.to(device), Ks.to(device), splat.sh_degree


def train_fox(data: Path, steps: int, workdir: Path, device: str = "cuda") -> Path:
    """Trains stock splatfacto with nerfstudio's own CLI and returns the run's config.yml."""
    cmd = [sys.executable, "-m", "nerfstudio.scripts.train", "splatfacto", "--data", str(data),
           "--output-dir", str(workdir), "--max-num-iterations", str(steps), "--steps-per-save", str(steps),
           "--machine.device-type", device,
           "--vis", "tensorboard", "--pipeline.model.warmup-length", "100", "--pipeline.model.refine-every", "50",
           "nerfstudio-data", "--downscale-factor", "4"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ns-train failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    configs = sorted(workdir.glob("**/config.yml"))
    if not configs:
        raise RuntimeError(f"ns-train wrote no config.yml under {workdir}")
    return configs[-1]


def fox_scene(config_path: Path, n_views: int, device: str):
    from nerfstudio.models.splatfacto import get_viewmat
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, step = eval_setup(config_path, test_mode="test")
    model = pipeline.model
    g = {
        "means": model.means, "scales": model.scales, "quats": model.quats,
        "opacities": model.opacities.squeeze(-1),
        "colors": torch.cat([model.features_dc[:, None], model.features_rest], 1),
    }
    cams = pipeline.datamanager.eval_dataset.cameras
    idx = torch.linspace(0, len(cams) - 1, n_views).long()  # index on the cameras' own device, then move
    sizes = {(int(cams.width[i]), int(cams.height[i])) for i in idx.tolist()}
    if len(sizes) != 1:
        raise ValueError(f"eval cameras of {config_path} have mixed resolutions {sizes}")
    viewmats = get_viewmat(cams.camera_to_worlds[idx].to(device))
    Ks = cams.get_intrinsics_matrices()[idx].to(device)
    width, height = sizes.pop()
    sh = model.config.sh_degree
    g = {k: v.detach().float().contiguous() for k, v in g.items()}
    return g, viewmats.float(), Ks.float(), width, height, sh, model.config.rasterize_mode, step


@dataclass
class RasterizerParityConfig:
    """Options of the gsplat vs torch rasterizer parity check."""

    out: Path
    """JSON output path"""
    guitar: Path = Path(".device/data/splat_guitar/guitar.compressed.ply")
    """PlayCanvas compressed PLY of the guitar splat"""
    fox_data: Path = Path(".device/data/fox")
    """fox scene (transforms.json + images_4) to train splatfacto on"""
    fox_config: Optional[Path] = None
    """config.yml of an existing splatfacto run (skips training)"""
    fox_steps: int = 300
    """splatfacto training steps for the fox model"""
    workdir: Path = Path("/tmp/gpu_rasterizer_parity")
    """scratch folder of the fox training run"""
    views: int = 4
    """cameras per scene"""
    repeats: int = 3
    """timing repeats (median)"""
    chunk_elements: int = 1 << 23
    """pixel x Gaussian pairs per torch-rasterizer batch on the GPU"""
    smoke_cpu: bool = False
    """plumbing check without a GPU: tiny renders, torch rasterizer on both sides"""


def main(argv: Optional[List[str]] = None) -> None:
    args = tyro.cli(RasterizerParityConfig, args=argv, description=__doc__, config=(tyro.conf.FlagCreatePairsOff,))
    if not torch.cuda.is_available() and not args.smoke_cpu:
        raise SystemExit("gpu_rasterizer_parity.py needs a CUDA GPU (it compares against gsplat's CUDA kernels)")

    import nerfstudio.models.splatfacto as splatfacto

    if args.smoke_cpu:
        device, width, height, reference = "cpu", 48, 64, torch_rasterization
        args.chunk_elements = min(args.chunk_elements, 1 << 19)
    else:
        from gsplat.rendering import rasterization as reference

        device, width, height = "cuda", 480, 640

    report: Dict = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu (smoke)",
                    "torch": torch.__version__,
                    "install_cpu_support_active": install_cpu_support(),
                    "splatfacto_rasterization": f"{splatfacto.rasterization.__module__}.rasterization",
                    "scenes": []}
    if not args.guitar.exists():
        raise SystemExit(f"guitar splat not found: {args.guitar} (pass --guitar PATH)")
    g, vm, K, sh = guitar_scene(args.guitar, args.views, width, height, device)
    report["scenes"].append(
        compare("guitar", g, vm, K, width, height, sh, "classic", args.repeats, args.chunk_elements, reference))
    print(json.dumps(report["scenes"][-1], indent=1), flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))  # keep the guitar numbers even if the fox part fails
    try:
        config = args.fox_config
        if config is None:
            if not (args.fox_data / "transforms.json").exists():
                raise RuntimeError(f"fox scene not found: {args.fox_data}/transforms.json "
                                   "(pass --fox-data or --fox-config)")
            t0 = time.perf_counter()
            config = train_fox(args.fox_data, args.fox_steps, args.workdir, device)
            report["fox_train_s"] = time.perf_counter() - t0
        g, vm, K, w, h, sh, mode, step = fox_scene(config, args.views, device)
        scene = compare(f"fox splatfacto step {step}", g, vm, K, w, h, sh, mode, args.repeats, args.chunk_elements,
                        reference)
        scene["config"] = str(config)
        report["scenes"].append(scene)
    except RuntimeError as err:
        report["fox_error"] = str(err)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    if "fox_error" in report:
        raise SystemExit(f"fox scene failed: {report['fox_error'][:2000]}")


if __name__ == "__main__":
    main()
