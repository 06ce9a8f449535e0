"""Add LPIPS-vgg and DISTS to a benchmark JSON from the renders it saved (``bench_nifi_splatfacto.py --save-renders``).

The GPU machine cannot always hold the VGG16 weights these two metrics need (the device tool carries at most 64 MiB,
and the wheels a cold machine installs take half of that). The benchmark then scores PSNR / SSIM / LPIPS-alex and
writes every render as an 8-bit PNG; this script scores those PNGs against the photos saved beside them, wherever the
VGG16 weights exist (a warm GPU machine they were carried to, or any CPU), and writes a copy of the JSON with
``lpips_vgg`` and ``dists`` filled in for every row whose renders it found. The PSNR / SSIM / LPIPS-alex already in
the JSON are kept (they were scored on the float renders).

    python scripts/rescore_renders.py --json bench_nifi_splatfacto.json --renders renders/ --out rescored.json

Layout of --renders: ``photos/000.png ...`` and one folder per scored model, ``uncompressed/`` or
``<section>__<label>/`` (for example ``nifi__rate_1.0/``, the row labelled rate_1.0 in the JSON's ``nifi`` list).
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

PERCEPTUAL = ("lpips_vgg", "dists")


@dataclass
class RescoreConfig:
    """Options of the rescoring."""

    json: Path
    """benchmark JSON to complete (read only)"""
    renders: Path
    """folder the benchmark's --save-renders wrote"""
    out: Path
    """completed JSON to write (must differ from --json)"""
    device: str = "cpu"
    """torch device for the two networks"""


def load_pngs(folder: Path) -> list:
    from difix_ns.io import load_image_tensor

    return [load_image_tensor(f, what="render", min_size=1) for f in sorted(folder.glob("*.png"))]


def scoring_device(device: str) -> str:
    """Where the rescoring ran: the GPU's name, or "cpu"."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return device


def row_for(result: dict, name: str):
    """The JSON row a render folder belongs to, or None."""
    if name == "uncompressed":
        return {"metrics": result.get("uncompressed")} if isinstance(result.get("uncompressed"), dict) else None
    section, _, label = name.partition("__")
    for row in result.get(section) or []:
        if isinstance(row, dict) and row.get("label") == label and isinstance(row.get("metrics"), dict):
            return row
    return None


def main(argv=None) -> int:
    args = tyro.cli(RescoreConfig, args=argv, description=__doc__)
    if args.out.resolve() == args.json.resolve():
        raise SystemExit(f"error: --out {args.out} is --json; write the completed copy elsewhere")
    if not args.json.is_file():
        raise SystemExit(f"error: --json {args.json} does not exist")
    if not (args.renders / "photos").is_dir():
        raise SystemExit(f"error: --renders {args.renders} has no photos/ folder (was the benchmark run with "
                         "--save-renders?)")
    result = json.loads(args.json.read_text())
    photos = load_pngs(args.renders / "photos")
    from difix_ns.metrics import ImageMetrics

    metrics = ImageMetrics(args.device, perceptual=PERCEPTUAL)
    done = []
    for folder in sorted(p for p in args.renders.iterdir() if p.is_dir() and p.name != "photos"):
        row = row_for(result, folder.name)
        renders = load_pngs(folder)
        if row is None or len(renders) != len(photos):
            print(f"[rescore] {folder.name}: skipped ({'no matching row' if row is None else 'view count differs'})")
            continue
        values = {k: [] for k in PERCEPTUAL}
        for pred, target in zip(renders, photos):
            per = metrics.per_image(pred[None], target[None])
            for k in PERCEPTUAL:
                values[k].append(float(per[k][0]))
        for k in PERCEPTUAL:
            row["metrics"][k] = float(np.mean(values[k]))
        done.append(folder.name)
        print(f"[rescore] {folder.name}: " + ", ".join(f"{k} {row['metrics'][k]:.4f}" for k in PERCEPTUAL), flush=True)
    result.setdefault("rescored", {}).update({
        "metrics": list(PERCEPTUAL), "from": "8-bit PNG renders saved by the benchmark (scripts/rescore_renders.py)",
        "rows": done, "device": scoring_device(args.device)})
    errors = result.get("errors")
    if isinstance(errors, dict) and done:
        errors.pop("perceptual_metrics", None)  # the missing metrics are now present
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(args.out)
    print(f"[rescore] {len(done)} rows -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
