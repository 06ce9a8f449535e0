"""Check / register the NiFi benchmark datasets (Mip-NeRF 360, Tanks & Temples, Deep Blending); no network use.

    python scripts/download_benchmark_data.py --dataset all --out data/benchmarks
    python scripts/download_benchmark_data.py --dataset mipnerf360 --out data/benchmarks \
        --mip_scenes garden bicycle kitchen
    python scripts/download_benchmark_data.py --dataset tanks_temples --out data/benchmarks --source /data/tandt

Expected: <out>/<dataset>/<scene>/ with images*/ and poses (COLMAP sparse/0 or poses_bounds.npy). With --source the
scenes of an existing extraction are symlinked in. Exit 0 when every requested scene is valid (a JSON summary is
printed), 1 with the exact wget/unzip steps when data is absent, 2 when a present scene is malformed.

Runs as ``python scripts/download_benchmark_data.py`` (a thin wrapper) or
``python -m nifi_ns.cli.download_benchmark_data``.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Tuple

from difix_ns.cli.tyro_style import parse
from nifi_ns.evaluation.datasets import BENCHMARKS, link_scenes, validate_scenes, write_manifest

DatasetName = Literal[tuple(sorted(BENCHMARKS) + ["all"])]  # type: ignore[valid-type]


@dataclass(kw_only=True)
class DownloadBenchmarkDataConfig:
    """Options of ``scripts/download_benchmark_data.py`` (the NiFi script's flags)."""

    dataset: DatasetName = "all"
    """Benchmark dataset to check / register, or all of them."""
    out: Path
    """Benchmarks root; each dataset lives in <out>/<dataset>/."""
    mip_scenes: Optional[Tuple[str, ...]] = None
    """Mip-NeRF 360 subset (default: all 9 scenes)."""
    source: Optional[Path] = None
    """Existing local extraction of the requested dataset."""


def main(argv=None) -> int:
    args = parse(DownloadBenchmarkDataConfig, argv, description=__doc__)
    names = sorted(BENCHMARKS) if args.dataset == "all" else [args.dataset]
    if args.source is not None and len(names) != 1:
        print("error: --source needs a single --dataset", file=sys.stderr)
        return 2
    report, missing_text, malformed = {}, [], []
    for name in names:
        spec = BENCHMARKS[name]
        scenes = list(spec.scenes)
        if name == "mipnerf360" and args.mip_scenes:
            unknown = sorted(set(args.mip_scenes) - set(spec.scenes))
            if unknown:
                print(f"error: --mip_scenes {unknown} are not Mip-NeRF 360 scenes {list(spec.scenes)}", file=sys.stderr)
                return 2
            scenes = list(args.mip_scenes)
        dest = args.out / name
        if args.source is not None:
            src = validate_scenes(args.source, scenes)
            if src["problems"]:
                print(f"error: --source '{args.source}': {src['problems']}", file=sys.stderr)
                return 2
            link_scenes(args.source, dest, scenes)
        result = validate_scenes(dest, scenes)
        report[name] = result
        absent = {s: r for s, r in result["problems"].items() if "does not exist" in r}
        broken = {s: r for s, r in result["problems"].items() if s not in absent}
        if broken:
            malformed.append(f"{name}: {broken}")
        if absent:
            missing_text.append(f"[{name}] missing scenes {sorted(absent)}\n" + spec.instructions.format(out=args.out))
        if not result["problems"]:
            write_manifest(dest, {"dataset": name, "scenes": scenes})
    if malformed:
        print("error: malformed scene folder(s): " + "; ".join(malformed), file=sys.stderr)
        return 2
    if missing_text:
        print("Benchmark data is not present; nothing is downloaded automatically. Manual steps:\n\n"
              + "\n".join(dict.fromkeys(missing_text)), file=sys.stderr)
        return 1
    print(json.dumps({"status": "present", "datasets": report}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
