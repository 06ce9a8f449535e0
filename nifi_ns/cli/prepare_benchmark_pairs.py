"""Benchmark pairs (NiFi Sec. 4.2) for every scene of a dataset, at each rate, test split.

Proxy mode: this project's own codec (nifi-splatfacto: train 3DGS, prune -> fine-tune -> quantize), not JPEG:

    python scripts/prepare_benchmark_pairs.py --dataset mipnerf360 --dataset_root data/benchmarks/mipnerf360 \
        --out pairs/benchmarks --rates 0.1 0.5 1.0 --compression_method proxy [--max-num-iterations 30000]

Precomputed mode: renders of an external codec (e.g. HAC++ at λ = 0.1 / 0.5 / 1.0) laid out as
`<compressed_root>/<scene>/rate_<λ>/[test/]<name>.png`, each matched by name to the photo
`<dataset_root>/<scene>/images*/<name>.*`:

    python scripts/prepare_benchmark_pairs.py --dataset tanks_temples --dataset_root data/benchmarks/tanks_temples \
        --out pairs/benchmarks --rates 0.1 0.5 1.0 --compression_method precomputed --compressed_root /path/to/hacpp

Output: `<out>/<dataset>/<scene>/rate_<λ>/test/{clean,degraded}/*.png` + per-scene manifest.json, and
`<out>/<dataset>/benchmark_manifest.json`; proxy runs and containers go to `<artifacts_root>/<dataset>/<scene>/`.
Every scene is validated before anything is written.

Runs as ``python scripts/prepare_benchmark_pairs.py`` (a thin wrapper) or
``python -m nifi_ns.cli.prepare_benchmark_pairs``.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional, Tuple

import tyro

from difix_ns.cli.tyro_style import parse


@dataclass(kw_only=True)
class PrepareBenchmarkPairsConfig:
    """Options of ``scripts/prepare_benchmark_pairs.py`` (the NiFi script's flags; the splatfacto options keep
    nerfstudio's dashed spelling, the underscored one is accepted too)."""

    dataset: str
    """Dataset name (mipnerf360, tanks_temples, deepblending, ...)."""
    dataset_root: Path
    """Folder holding one sub-folder per scene."""
    out: Path
    """Pairs root, e.g. pairs/benchmarks."""
    rates: Tuple[float, ...] = (0.1, 0.5, 1.0)
    """Codec rates (λ) of the pairs."""
    compression_method: Literal["proxy", "precomputed"] = "proxy"
    """proxy: this project's codec; precomputed: renders of an external codec under --compressed_root."""
    compressed_root: Optional[Path] = None
    """Precomputed renders, one folder per scene."""
    scenes: Optional[Tuple[str, ...]] = None
    """Subset of scenes (default: all)."""
    split: str = "test"
    """Split label of the pairs."""
    images_dir: Optional[str] = None
    """Photo folder name inside a scene (precomputed mode)."""
    codec_name: str = "hac++"
    """Name recorded for precomputed renders."""
    artifacts_root: Path = Path("artifacts/benchmarks")
    """Proxy: where the trained runs and containers go (kept outside the pairs root)."""
    max_num_iterations: Annotated[int, tyro.conf.arg(aliases=("--max-num-iterations",))] = 30000
    """Proxy: splatfacto steps."""
    downscale_factor: Annotated[Optional[int], tyro.conf.arg(aliases=("--downscale-factor",))] = None
    """Proxy: read images_N/."""
    finetune_steps: Annotated[int, tyro.conf.arg(aliases=("--finetune-steps",))] = 200
    """Proxy: compression-aware fine-tune steps."""
    overwrite: bool = False
    """Replace existing pairs / proxy artifacts of these scenes (default: refuse)."""


def parse_args(argv=None) -> PrepareBenchmarkPairsConfig:
    return parse(PrepareBenchmarkPairsConfig, argv, description=__doc__, nonempty=("rates",))


def check_options(args: PrepareBenchmarkPairsConfig, scenes: list[Path]) -> None:
    """Every option checked before any scene is trained or copied."""
    from nifi_ns.cli.options import check_min, check_rates

    if args.compression_method == "proxy":
        check_rates(args.rates)
        for option, value, low in (("--max-num-iterations", args.max_num_iterations, 1),
                                   ("--finetune-steps", args.finetune_steps, 0),
                                   ("--downscale-factor", args.downscale_factor, 1)):
            check_min(option, value, low)
    elif any(not (r > 0) for r in args.rates):
        raise SystemExit(f"error: --rates must be > 0, got {args.rates}")
    if not args.overwrite:
        outputs = [args.out / args.dataset / scene.name for scene in scenes]
        if args.compression_method == "proxy":
            outputs += [args.artifacts_root / args.dataset / scene.name for scene in scenes]
        for path in outputs:
            if path.exists():
                raise SystemExit(f"error: output {path} already exists; pass --overwrite to replace it")


def list_scenes(args: PrepareBenchmarkPairsConfig) -> list[Path]:
    if not args.dataset_root.is_dir():
        raise SystemExit(f"error: --dataset_root {args.dataset_root} does not exist")
    scenes = sorted(p for p in args.dataset_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if args.scenes:
        missing = [s for s in args.scenes if not (args.dataset_root / s).is_dir()]
        if missing:
            raise SystemExit(f"error: --scenes {missing} not found in {args.dataset_root}")
        scenes = [args.dataset_root / s for s in args.scenes]
    if not scenes:
        raise SystemExit(f"error: --dataset_root {args.dataset_root} holds no scene folders")
    return scenes


def run_precomputed(args, scenes) -> dict:
    from nifi_ns.synthesis.precomputed import LayoutError, pairs_from_precomputed, plan_pairs

    if args.compressed_root is None:
        raise SystemExit("error: --compression_method precomputed needs --compressed_root")
    try:  # validate every scene first: bad input leaves no partial output
        for scene in scenes:
            plan_pairs(scene, args.compressed_root / scene.name, args.rates, args.split, args.images_dir)
    except LayoutError as err:
        raise SystemExit(f"error: {err}") from err
    return {
        scene.name: pairs_from_precomputed(scene, args.compressed_root / scene.name,
                                           args.out / args.dataset / scene.name, args.rates, args.split,
                                           args.images_dir, codec_name=args.codec_name)
        for scene in scenes
    }


def run_proxy(args, scenes) -> dict:
    from nifi_ns.cli import build_3dgs_and_compress as build
    from nifi_ns.synthesis.from_run import synthesize_pairs

    for scene in scenes:
        build.check_scene(scene, args.downscale_factor)
    results = {}
    for scene in scenes:
        artifacts = args.artifacts_root / args.dataset / scene.name
        build_argv = ["--scene", str(scene), "--out", str(artifacts), "--rates", *map(str, args.rates),
                      "--max-num-iterations", str(args.max_num_iterations), "--finetune-steps",
                      str(args.finetune_steps), "--skip-render"] + (["--overwrite"] if args.overwrite else [])
        if args.downscale_factor:
            build_argv += ["--downscale-factor", str(args.downscale_factor)]
        build.main(build_argv)
        info = json.loads((artifacts / build.ARTIFACTS_FILE).read_text())
        split = "test" if args.split == "test" else "train"
        try:
            results[scene.name] = synthesize_pairs(Path(info["config"]), args.out / args.dataset / scene.name,
                                                   args.rates, [split])
        except ValueError as err:
            raise SystemExit(f"error: scene {scene.name}: {err}") from err
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    scenes = list_scenes(args)
    check_options(args, scenes)
    if args.compression_method == "precomputed":
        results = run_precomputed(args, scenes)
    else:
        if args.split not in ("train", "test"):
            raise SystemExit(f"error: proxy mode renders nerfstudio splits train|test, not {args.split!r}")
        results = run_proxy(args, scenes)
    summary = {"dataset": args.dataset, "compression_method": args.compression_method, "rates": args.rates,
               "split": args.split, "scenes": results}
    path = args.out / args.dataset / "benchmark_manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2), "utf8")
    print(json.dumps({"manifest": str(path), "scenes": sorted(results)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
