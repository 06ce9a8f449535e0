"""Build the clean/degraded pair layout of one split from build_3dgs_and_compress.py artifacts.

    python scripts/render_pairs.py --scene artifacts/garden/ --split train --out pairs/garden/
    python scripts/render_pairs.py --scene artifacts/garden/ --split test  --out pairs/garden/

Writes `<out>/rate_<λ>/<split>/{clean,degraded}/*.png` (+ `<out>/manifest.json`, `<out>/prompt.txt` with
`--prompt`). An `--out` ending in the split name (the NiFi README's `pairs/garden/train/`) means its parent folder.
Renders already made by build_3dgs_and_compress.py are copied; otherwise they are rendered from the run
(`--scene` may also be a run's config.yml).

Runs as ``python scripts/render_pairs.py`` (a thin wrapper) or
``python -m nifi_ns.cli.render_pairs``.
"""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Tuple

from difix_ns.cli.tyro_style import parse


@dataclass(kw_only=True)
class RenderPairsConfig:
    """Options of ``scripts/render_pairs.py`` (the NiFi script's flags)."""

    scene: Path
    """artifacts/<scene>/ folder or a run's config.yml."""
    split: Literal["train", "test"]
    """Split to lay out."""
    out: Path
    """pairs/<scene>/ (a trailing /<split>/ is accepted)."""
    rates: Optional[Tuple[float, ...]] = None
    """Subset of the built rates (default: all)."""
    prompt: Optional[str] = None
    """Scene caption written to <out>/prompt.txt."""
    overwrite: bool = False
    """Replace existing pairs of this split (default: refuse)."""


def parse_args(argv=None) -> RenderPairsConfig:
    return parse(RenderPairsConfig, argv, description=__doc__, nonempty=("rates",))


def resolve_inputs(scene: Path):
    """(config.yml, built rates or None, renders folder or None)."""
    if scene.is_file() and scene.suffix in (".yml", ".yaml"):
        return scene, None, None
    info_path = scene / "artifacts.json"
    if not info_path.is_file():
        raise SystemExit(f"error: --scene {scene}: no artifacts.json (run build_3dgs_and_compress.py first) "
                         "and not a config.yml")
    info = json.loads(info_path.read_text())
    renders = Path(info["renders"]) if info.get("renders") else None
    return Path(info["config"]), list(info["rates"]), renders


def main(argv=None) -> int:
    args = parse_args(argv)
    from nifi_ns.synthesis.layout import pair_dirs, rate_label, validate_pairs, write_manifest, write_prompt

    config, built_rates, renders = resolve_inputs(args.scene)
    rates = args.rates or built_rates or [0.1, 0.5, 1.0]
    if built_rates is not None:
        missing = [r for r in rates if r not in built_rates]
        if missing:
            raise SystemExit(f"error: --rates {missing} were not built in {args.scene} (built: {built_rates})")
    out = args.out.parent if args.out.name == args.split else args.out
    if not args.overwrite:
        for rate in rates:
            if (out / rate_label(rate) / args.split).exists():
                raise SystemExit(f"error: output {out / rate_label(rate) / args.split} already exists; "
                                 "pass --overwrite to replace it")

    have_renders = renders is not None and all(pair_dirs(renders, r, args.split)["clean"].is_dir() for r in rates)
    if have_renders:
        for rate in rates:
            src = renders / rate_label(rate) / args.split
            dst = out / rate_label(rate) / args.split
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(src, dst)
        manifest = json.loads((renders / "manifest.json").read_text()) if (renders / "manifest.json").is_file() else {}
        manifest["copied_from"] = str(renders)
        write_manifest(out, manifest)
        if args.prompt:
            write_prompt(out, args.prompt)
    else:
        from nifi_ns.synthesis.from_run import synthesize_pairs

        try:
            synthesize_pairs(config, out, rates, [args.split], prompt=args.prompt)
        except (ValueError, FileNotFoundError) as err:
            raise SystemExit(f"error: {err}") from err
    try:
        counts = validate_pairs(out, rates, [args.split])
    except ValueError as err:
        raise SystemExit(f"error: {out}: {err}") from err
    print(json.dumps({"out": str(out), "pairs": counts}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
