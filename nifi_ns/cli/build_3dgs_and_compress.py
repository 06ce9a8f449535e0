"""Train a 3DGS (nerfstudio `nifi-splatfacto`) on a scene, compress it at each rate and render train/test splits.

    python scripts/build_3dgs_and_compress.py --scene data/mipnerf360/garden --rates 0.1 0.5 1.0 \
        --out artifacts/garden/ [--max-num-iterations 30000] [--downscale-factor 4]

`--scene` is a nerfstudio-format scene (transforms.json) or a COLMAP scene as the benchmarks ship them (Mip-NeRF 360,
Tanks & Temples, Deep Blending: `images/` + `sparse/0/`, or `colmap/sparse/0/`); `images_N/` is read for
`--downscale-factor N`. A COLMAP scene without the option gets nerfstudio's automatic factor (longest side <= 1600
px), chosen here so that a missing `images_N/` is an error instead of an interactive prompt. Writes:

    <out>/runs/<scene>/nifi-splatfacto/<timestamp>/        the nerfstudio run (config.yml, checkpoint, nifi/)
    <out>/rate_<λ>.nifi, <out>/rate_<λ>.json              the containers and their compression reports
    <out>/renders/rate_<λ>/<split>/{clean,degraded}/      photo / compressed render pairs per split
    <out>/artifacts.json                                 what was built (read by render_pairs.py)

Runs as ``python scripts/build_3dgs_and_compress.py`` (a thin wrapper) or
``python -m nifi_ns.cli.build_3dgs_and_compress``.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional, Tuple

import tyro

from difix_ns.cli.tyro_style import parse

ARTIFACTS_FILE = "artifacts.json"


def _dashed(name: str):
    """This tool's nerfstudio-style dashed spelling (``--max-num-iterations``) of an option, as an alias."""
    return tyro.conf.arg(aliases=(name,))


@dataclass(kw_only=True)
class BuildConfig:
    """Options of ``scripts/build_3dgs_and_compress.py`` (the NiFi script's flags; the splatfacto options keep
    nerfstudio's dashed spelling, the underscored one is accepted too)."""

    scene: Path
    """Scene folder: nerfstudio (transforms.json) or COLMAP (images/ + sparse/0/)."""
    rates: Tuple[float, ...] = (0.1, 0.5, 1.0)
    """Codec rate presets (λ)."""
    out: Path
    """Artifact folder, e.g. artifacts/<scene>/."""
    max_num_iterations: Annotated[int, _dashed("--max-num-iterations")] = 30000
    """Splatfacto training steps."""
    downscale_factor: Annotated[Optional[int], _dashed("--downscale-factor")] = None
    """Read images_N/ (nerfstudio dataparser)."""
    finetune_steps: Annotated[int, _dashed("--finetune-steps")] = 200
    """Compression-aware fine-tune steps per rate."""
    target_mb: Annotated[Optional[Tuple[float, ...]], _dashed("--target-mb")] = None
    """Container size per rate (MB)."""
    splits: Tuple[Literal["train", "test"], ...] = ("train", "test")
    """Splits to render."""
    skip_render: Annotated[bool, _dashed("--skip-render")] = False
    """Train + compress only."""
    prompt: Optional[str] = None
    """Scene caption written to renders/prompt.txt."""
    num_random: Annotated[Optional[int], _dashed("--num-random")] = None
    """Random-init Gaussian count (no SfM points)."""
    overwrite: bool = False
    """Replace the outputs of an earlier build in --out (default: refuse)."""


def parse_args(argv=None) -> BuildConfig:
    return parse(BuildConfig, argv, description=__doc__, nonempty=("rates", "splits"))


def check_options(args: BuildConfig) -> None:
    """Every option checked before any work starts (training takes hours; a bad option must not cost them)."""
    from nifi_ns.cli.options import check_min, check_rates, check_target_mb
    from nifi_ns.synthesis.layout import rate_label

    check_rates(args.rates)
    check_target_mb(args.target_mb, len(args.rates))
    for option, value, low in (("--max-num-iterations", args.max_num_iterations, 1),
                               ("--finetune-steps", args.finetune_steps, 0),
                               ("--downscale-factor", args.downscale_factor, 1), ("--num-random", args.num_random, 1)):
        check_min(option, value, low)
    if args.out.exists() and not args.out.is_dir():
        raise SystemExit(f"error: --out {args.out} exists and is not a directory")
    if not args.overwrite:
        outputs = [args.out / ARTIFACTS_FILE, args.out / "renders"]
        outputs += [args.out / f"{rate_label(r)}{suffix}" for r in args.rates for suffix in (".nifi", ".json")]
        for path in outputs:
            if path.exists():
                raise SystemExit(f"error: output {path} already exists; pass --overwrite to replace it")


COLMAP_DIRS = ("sparse/0", "colmap/sparse/0")  # Mip-NeRF 360 / 3DGS-processed T&T, DB; `ns-process-data` output
MAX_AUTO_RESOLUTION = 1600  # nerfstudio's automatic downscale rule for COLMAP scenes


def colmap_dir(scene: Path) -> Path | None:
    for rel in COLMAP_DIRS:
        if any((scene / rel / f"cameras{ext}").is_file() for ext in (".bin", ".txt")):
            return Path(rel)
    return None


def auto_downscale(scene: Path) -> int:
    """nerfstudio's factor for a COLMAP scene: the smallest power of two that brings the longest side to <= 1600."""
    from PIL import Image

    from nifi_ns.synthesis.layout import list_images

    images = list_images(scene / "images") if (scene / "images").is_dir() else []
    if not images:
        raise SystemExit(f"error: --scene {scene}: no images/ folder to pick a downscale factor from; "
                         "pass --downscale-factor N (reads images_N/)")
    with Image.open(images[0]) as im:
        side = max(im.size)
    factor = 1
    while side / factor > MAX_AUTO_RESOLUTION:
        factor *= 2
    return factor


def downscaled_folders(scene: Path, images: str = "images") -> list[int]:
    """The N of every ``<images>_N/`` folder in the scene, ascending."""
    found = [d.name[len(images) + 1:] for d in scene.glob(f"{images}_*") if d.is_dir()]
    return sorted(int(n) for n in found if n.isdigit())


def nerfstudio_downscale(scene: Path, downscale: int | None) -> int | None:
    """Check that a nerfstudio scene's first frame exists at the chosen factor, before any work.

    Without ``--downscale-factor`` and without the full-resolution images (e.g. fox ships only ``images_2/`` and
    ``images_4/``), the smallest available ``images_N/`` is used, and a line says so.
    """
    try:
        frames = json.loads((scene / "transforms.json").read_text()).get("frames", [])
        first = scene / frames[0]["file_path"]
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise SystemExit(f"error: --scene {scene}: transforms.json has no readable frames ({err})") from None
    folder = first.parent.name
    if downscale in (None, 1) and first.is_file():
        return downscale
    if downscale not in (None, 1):
        scaled = first.parent.parent / f"{folder}_{downscale}" / first.name
        if not scaled.is_file():
            have = ", ".join(f"{folder}_{n}/" for n in downscaled_folders(first.parent.parent, folder)) or "none"
            raise SystemExit(f"error: --downscale-factor {downscale}: {scaled} does not exist "
                             f"(downscaled folders here: {have})")
        return downscale
    options = [n for n in downscaled_folders(first.parent.parent, folder)
               if (first.parent.parent / f"{folder}_{n}" / first.name).is_file()]
    if not options:
        raise SystemExit(f"error: --scene {scene}: {first} does not exist and there is no {folder}_N/ folder with "
                         f"the frames; pass the scene folder that holds the images")
    if downscale == 1:
        raise SystemExit(f"error: --downscale-factor 1: {first} does not exist; pass --downscale-factor "
                         f"{options[0]} (found {', '.join(f'{folder}_{n}/' for n in options)})")
    print(f"note: {first.parent} is absent; using {folder}_{options[0]}/ (--downscale-factor {options[0]})",
          file=sys.stderr)
    return options[0]


CPU_SECONDS_PER_STEP = 4.0
"""splatfacto on the plugin's CPU rasterizer: 8 CPU-seconds a step measured (user time of 20 steps; fox at 1/4
resolution, 43 training views, 50k random Gaussians, SH degree 3), i.e. about 4 s of wall time on 2 cores."""
GPU_SECONDS_PER_STEP = 0.01
"""splatfacto with gsplat on one H200, fox at 1/2 resolution (README: 3000 steps in 20.5 s), rounded up."""


def expected_minutes(steps: int, finetune_steps: int, rates: int, cuda: bool) -> float:
    per_step = GPU_SECONDS_PER_STEP if cuda else CPU_SECONDS_PER_STEP
    return (steps + finetune_steps * rates) * per_step / 60.0


def check_scene(scene: Path, downscale: int | None) -> int | None:
    """Validate the scene folder; returns the downscale factor to use (None: the dataparser's default)."""
    if not (scene / "transforms.json").is_file() and colmap_dir(scene) is None:
        raise SystemExit(f"error: --scene {scene}: no transforms.json (nerfstudio format) and no COLMAP "
                         f"{' or '.join(d + '/cameras.bin' for d in COLMAP_DIRS)}")
    if (scene / "transforms.json").is_file():
        return nerfstudio_downscale(scene, downscale)
    if downscale is None:
        downscale = auto_downscale(scene)
    if downscale and downscale > 1 and not (scene / f"images_{downscale}").is_dir():
        raise SystemExit(f"error: --downscale-factor {downscale}: {scene / f'images_{downscale}'} does not exist")
    return downscale


def build_config(args: BuildConfig):
    import torch

    from nifi_ns.nerfstudio.method_configs import nifi_splatfacto_config

    config = nifi_splatfacto_config()
    config.pipeline.datamanager.data = args.scene
    if not (args.scene / "transforms.json").is_file():
        from nerfstudio.data.dataparsers.colmap_dataparser import ColmapDataParserConfig

        # every 8th image is held out, the benchmarks' convention (and nerfstudio's colmap default)
        config.pipeline.datamanager.dataparser = ColmapDataParserConfig(
            colmap_path=colmap_dir(args.scene), load_3D_points=True, eval_mode="interval", eval_interval=8)
    dataparser = config.pipeline.datamanager.dataparser
    if args.downscale_factor:
        dataparser.downscale_factor = args.downscale_factor
    config.output_dir = args.out / "runs"
    config.experiment_name = args.scene.resolve().name
    config.max_num_iterations = args.max_num_iterations
    config.steps_per_save = max(args.max_num_iterations, 1)
    config.vis = "tensorboard"
    config.viewer.quit_on_train_completion = True
    config.machine.device_type = "cuda" if torch.cuda.is_available() else "cpu"
    config.pipeline.rates = tuple(args.rates)
    config.pipeline.target_mb = tuple(args.target_mb or ())
    config.pipeline.finetune_steps = args.finetune_steps
    if args.num_random is not None:
        config.pipeline.model.random_init = True
        config.pipeline.model.num_random = args.num_random
    return config


def main(argv=None) -> int:
    args = parse_args(argv)
    check_options(args)
    args.downscale_factor = check_scene(args.scene, args.downscale_factor)
    import torch

    minutes = expected_minutes(args.max_num_iterations, args.finetune_steps, len(args.rates), torch.cuda.is_available())
    device = "GPU" if torch.cuda.is_available() else "CPU"
    print(f"expected time on this {device}: about {minutes:.0f} min for {args.max_num_iterations} training steps + "
          f"{args.finetune_steps} fine-tune steps x {len(args.rates)} rate(s), plus rendering"
          + ("" if torch.cuda.is_available() else "; for a quick CPU run pass --max-num-iterations 300"),
          file=sys.stderr)
    created = not args.out.exists()
    try:
        return build(args)
    except BaseException as err:
        if created and not getattr(args, "keep_partial", False):  # no partial artifacts folder from this run
            shutil.rmtree(args.out, ignore_errors=True)
        if isinstance(err, (SystemExit, KeyboardInterrupt)) or os.environ.get("DIFIX_NS_DEBUG"):
            raise
        removed = f"; removed the partial {args.out}" if created else ""
        print(f"error: {type(err).__name__}: {err}{removed} (set DIFIX_NS_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1


def build(args: BuildConfig) -> int:
    from nerfstudio.scripts.train import main as ns_train

    config = build_config(args)
    ns_train(config)  # sets the timestamp, saves config.yml, trains, compresses (AFTER_TRAIN callback)
    run_dir = config.get_base_dir()
    config_path = run_dir / "config.yml"
    nifi_dir = run_dir / config.pipeline.output_subdir
    from nifi_ns.synthesis.layout import rate_label

    reports = {}
    for rate in args.rates:
        label = rate_label(rate)
        for suffix in (".nifi", ".json"):
            src = nifi_dir / f"{label}{suffix}"
            if not src.is_file():
                raise SystemExit(f"error: training finished but {src} is missing")
            shutil.copy2(src, args.out / src.name)
        reports[label] = json.loads((nifi_dir / f"{label}.json").read_text())
    manifest = None
    if not args.skip_render:
        from nifi_ns.synthesis.from_run import synthesize_pairs

        try:
            manifest = synthesize_pairs(config_path, args.out / "renders", args.rates, args.splits, prompt=args.prompt)
        except ValueError as err:
            args.keep_partial = True  # the trained run is worth keeping: only a split could not be rendered
            raise SystemExit(f"error: {err}. The trained run and its containers are kept: render the other split "
                             f"with `render_pairs.py --scene {config_path} --split ...`") from err
    info = {
        "scene": str(args.scene.resolve()),
        "scene_format": "nerfstudio" if (args.scene / "transforms.json").is_file() else "colmap",
        "downscale_factor": args.downscale_factor,
        "config": str(config_path.resolve()),
        "rates": list(args.rates),
        "splits": [] if args.skip_render else list(args.splits),
        "reports": reports,
        "renders": None if manifest is None else str((args.out / "renders").resolve()),
    }
    (args.out / ARTIFACTS_FILE).write_text(json.dumps(info, indent=2), "utf8")
    print(json.dumps({k: info[k] for k in ("config", "rates", "splits")}, indent=2))
    for label, rep in reports.items():
        print(f"{label}: {rep['size_mb']:.4f} MB, {rep['num_gaussians']} Gaussians, {rep['compression_ratio']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
