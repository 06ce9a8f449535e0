"""``difix-demo``: render the bundled guitar splat, fix the renders with Difix, write before/after images.

The bundled capture is a real trained 3DGS (MIT, PlayCanvas). To get renders with reconstruction-style artifacts
(holes, see-through surfaces, missing thin structures), each orbit view is rendered from a random subset of the
Gaussians (``--keep_fraction``); the full splat gives the clean target, and, for reference-mixing models, a clean
render from a neighbouring viewpoint plays the role of the training photo. PSNR/SSIM against the clean render are
reported before and after fixing.

    difix-demo                                  # nvidia/difix_ref from the Hugging Face hub
    difix-demo --model_name /path/to/difix_ref  # a local copy (offline machines)
    difix-demo --model_name random-tiny         # random weights: checks the plumbing only, not quality
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, List, Optional, Sequence, Tuple

import numpy as np
import torch
import tyro
from rich.table import Table

from difix_ns.diffusion.model_names import RANDOM_TINY, PLUMBING_NOTE, plumbing_banner
from difix_ns.cli.common import ModelOptions, cli_main, console, load_fixer, progress
from difix_ns.cli.tyro_style import parse
from difix_ns.io import InputError, OutputTransaction, save_image, tensor_to_pil
from difix_ns.metrics import psnr, ssim
from difix_ns.splat.cameras import look_at_viewmat, pinhole_intrinsics
from difix_ns.splat.splat_render import render_splat



PROG = "difix-demo"
DESCRIPTION = (__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[-1]).replace("``", "")


@dataclass(kw_only=True)
class DemoConfig(ModelOptions):
    """Options of ``difix-demo`` (underscored like Difix's scripts, plus dashed aliases)."""

    output_dir: Annotated[str, tyro.conf.arg(aliases=("--output-dir",))] = "demo_out"
    """Where to write."""
    splat: Optional[str] = None
    """A 3DGS PLY (Inria or PlayCanvas compressed) (None: the bundled guitar)."""
    views: int = 3
    """Orbit views to render."""
    width: int = 0
    """Render width; 0 = 384 on CUDA, 160 on CPU."""
    height: int = 0
    """Render height; 0 = 576 on CUDA, 256 on CPU."""
    keep_fraction: Annotated[float, tyro.conf.arg(aliases=("--keep-fraction",))] = 0.25
    """Fraction of Gaussians kept in the degraded renders."""
    seed: int = 0
    """Seed of the Gaussian subset."""
    overwrite: bool = False
    """Replace an earlier demo in --output_dir (default: refuse)."""
    batch_size: Annotated[int, tyro.conf.arg(aliases=("--batch-size",))] = 8
    """Images per forward pass."""


def load_splat(path: Path):
    from difix_ns.splat_io import read_ply

    if not path.is_file():
        raise InputError(f"--splat not found: {path}")
    try:
        return read_ply(path)
    except Exception as err:  # plyfile / format errors: all mean "not a readable splat"
        raise InputError(f"--splat could not be read as a 3DGS PLY: {path} ({err})") from None


def orbit_cameras(means: torch.Tensor, angles_deg: Sequence[float], width: int, height: int,
                  fov_y_deg: float = 50.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cameras on a horizontal circle around the splat's robust centre -> (viewmats [C,4,4], Ks [C,3,3]).

    The bundled capture is stored with -y up (PlayCanvas convention), so the orbit axis is y.
    """
    lo, hi = torch.quantile(means[::7], 0.02, dim=0), torch.quantile(means[::7], 0.98, dim=0)
    centre, extent = (lo + hi) / 2, float((hi - lo).max())
    distance = 0.6 * extent / math.tan(math.radians(fov_y_deg) / 2)
    up = torch.tensor([0.0, -1.0, 0.0])
    views = []
    for a in angles_deg:
        r = math.radians(a)
        eye = centre + distance * torch.tensor([math.sin(r), 0.0, math.cos(r)])
        views.append(look_at_viewmat(eye, centre, up))
    focal = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
    return torch.stack(views), pinhole_intrinsics(focal, focal, width, height, len(views))


def render(splat, keep: Optional[torch.Tensor], viewmats: torch.Tensor, Ks: torch.Tensor, width: int,
           height: int, device: torch.device) -> torch.Tensor:
    """Render ``[C,3,H,W]`` in [0,1] on a white background (SH of the splat's degree), on the CPU."""
    white = torch.ones(viewmats.shape[0], 3, device=device)
    return render_splat(splat, viewmats, Ks, width, height, device, keep=keep,
                        backgrounds=white).float().cpu().contiguous()


def strip(rows: List[torch.Tensor], gap: int = 4) -> torch.Tensor:
    """Grid ``[3, rows*H, views*W]`` with white gaps: one row per stage, one column per view."""
    lines = []
    for row in rows:
        tiles = []
        for img in row:
            tiles += [img, torch.ones(3, img.shape[1], gap)]
        lines += [torch.cat(tiles[:-1], dim=2), torch.ones(3, gap, tiles[0].shape[2] * len(row) + gap * (len(row) - 1))]
    return torch.cat(lines[:-1], dim=1)


def _plumbing_banner() -> None:
    plumbing_banner("--model_name random-tiny", console=console)


@cli_main
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse(DemoConfig, argv, prog=PROG, description=DESCRIPTION)
    out = Path(args.output_dir)
    if not args.overwrite and out.is_dir() and any((out / n).exists() for n in ("strip.png", "view00_before.png")):
        raise InputError(f"output {out / 'strip.png'} already exists; pass --overwrite to replace the demo in {out}")
    if args.views < 1:
        raise InputError(f"--views must be >= 1, got {args.views}")
    if min(args.width, args.height) < 0 or 0 < min(args.width, args.height) < 64:
        raise InputError(f"--width/--height must be >= 64 px, got {args.width}x{args.height}")
    if not 0 < args.keep_fraction <= 1:
        raise InputError(f"--keep_fraction must be in (0, 1], got {args.keep_fraction}")
    from difix_ns.assets import GUITAR_SPLAT

    splat = load_splat(Path(args.splat) if args.splat else GUITAR_SPLAT)
    plumbing_only = args.model_name == RANDOM_TINY
    fixer = load_fixer(args)
    plumbing_only = plumbing_only or fixer.plumbing_only
    uses_refs = fixer.uses_references
    # The pure-PyTorch rasterizer is CPU-bound, so CPU runs default to a small size; CUDA uses gsplat.
    on_cuda = fixer.device.type == "cuda"
    args.width = args.width or (384 if on_cuda else 160)
    args.height = args.height or (576 if on_cuda else 256)

    # Views spread over a 120 degree arc in front of the guitar; each reference sits half a step further.
    step = 120.0 / max(args.views, 1)
    angles = [30.0 + step * (i + 0.5) for i in range(args.views)]
    gen = torch.Generator().manual_seed(args.seed)
    n = splat.means.shape[0]
    keep = torch.randperm(n, generator=gen)[: max(1, int(round(n * args.keep_fraction)))].sort().values
    with progress() as bar:
        task = bar.add_task("rendering", total=3 if uses_refs else 2)
        vm, Ks = orbit_cameras(torch.from_numpy(np.asarray(splat.means, np.float32)), angles, args.width,
                               args.height)
        degraded = render(splat, keep, vm, Ks, args.width, args.height, fixer.device)
        bar.advance(task)
        clean = render(splat, None, vm, Ks, args.width, args.height, fixer.device)
        bar.advance(task)
        refs = None
        if uses_refs:
            rvm, rKs = orbit_cameras(torch.from_numpy(np.asarray(splat.means, np.float32)),
                                     [a + step / 2 for a in angles], args.width, args.height)
            refs = render(splat, None, rvm, rKs, args.width, args.height, fixer.device)[:, None]  # [C,1,3,H,W]
            bar.advance(task)
    with console.status("fixing with Difix"):
        fixed = fixer.fix(degraded, refs)

    scores = {
        "before": {"psnr": psnr(degraded, clean).tolist(), "ssim": ssim(degraded, clean).tolist()},
        "after": {"psnr": psnr(fixed, clean).tolist(), "ssim": ssim(fixed, clean).tolist()},
    }
    summary = {
        "model_name": args.model_name,
        "plumbing_only": plumbing_only,
        "note": (PLUMBING_NOTE if plumbing_only
                 else "target = render of the full splat; 'before' = render of a random Gaussian subset"),
        "views_deg": angles, "keep_fraction": args.keep_fraction, "size": [args.width, args.height],
        "reference_views": uses_refs, **scores,
    }
    rows = [list(degraded), list(fixed), list(clean)] + ([list(refs[:, 0])] if refs is not None else [])
    with OutputTransaction(args.output_dir) as tx:
        for i in range(args.views):
            save_image(degraded[i], tx.path(f"view{i:02d}_before.png"))
            save_image(fixed[i], tx.path(f"view{i:02d}_after.png"))
            save_image(clean[i], tx.path(f"view{i:02d}_target.png"))
            if refs is not None:
                save_image(refs[i, 0], tx.path(f"view{i:02d}_reference.png"))
        tensor_to_pil(strip(rows)).save(tx.path("strip.png"))
        tx.path("summary.json").write_text(json.dumps(summary, indent=2))

    table = Table(title=f"Difix demo ({summary['model_name']})")
    for col in ("view", "PSNR before", "PSNR after", "SSIM before", "SSIM after"):
        table.add_column(col, justify="right")
    for i in range(args.views):
        table.add_row(str(i), f"{scores['before']['psnr'][i]:.2f}", f"{scores['after']['psnr'][i]:.2f}",
                      f"{scores['before']['ssim'][i]:.4f}", f"{scores['after']['ssim'][i]:.4f}")
    console.print(table)
    rows_desc = "before / after / target" + (" / reference" if refs is not None else "")
    console.print(f"[green]wrote[/] {args.output_dir}/strip.png (rows: {rows_desc}) and per-view PNGs", soft_wrap=True)
    if plumbing_only:
        _plumbing_banner()


def entrypoint() -> None:
    main()
