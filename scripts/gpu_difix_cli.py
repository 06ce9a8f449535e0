#!/usr/bin/env python
"""GPU check of the Difix command-line tools (CUDA paths: gsplat rasterization in the demo, bf16 fixer).

    python scripts/gpu_difix_cli.py --fox .device/data/fox --out $OUT/gpu_difix_cli.json

Runs, on a tiny RANDOM-weight Difix model (no hub needed; the numbers are timings and plumbing, not quality):
``difix-demo --model_name random-tiny`` at its CUDA default size, ``difix-fix`` on a folder of quarter-res fox
photos with a reference folder (+ ``--video``), and ``difix-enhance-video --use-ref`` on an mp4 made from them.
Prints and writes JSON with wall times, output checks and the device name.
"""
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
import tyro
from PIL import Image


def _run(main, argv):
    start = time.perf_counter()
    try:
        main(argv)
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return code, round(time.perf_counter() - start, 3)


@dataclass
class GpuDifixCliConfig:
    """Options of the GPU check of the Difix command-line tools."""

    fox: Path
    """fox scene folder with images_4/"""
    out: Path
    """JSON output path"""
    frames: int = 12
    """fox photos used as inputs (and as many as references)"""


def main(argv: Optional[List[str]] = None) -> None:
    args = tyro.cli(GpuDifixCliConfig, args=argv, description=__doc__.split("\n\n")[0])

    from difix_ns.cli import demo, enhance_video, fix_images
    from difix_ns.io import video_info, write_video
    from difix_ns.testing import save_tiny_difix

    result = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "note": "tiny random-weight Difix model: plumbing and timings only, not quality"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = save_tiny_difix(tmp / "tiny_ref", reference_mixing=True)
        photos = sorted((args.fox / "images_4").glob("*.jpg"))
        (tmp / "renders").mkdir()
        (tmp / "train").mkdir()
        frames = []
        for i, p in enumerate(photos[: args.frames]):
            img = Image.open(p).convert("RGB")
            img.save(tmp / "renders" / f"{i:04d}.png")
            frames.append(np.array(img))
        for p in photos[-args.frames:]:
            Image.open(p).convert("RGB").save(tmp / "train" / f"{p.stem}.png")
        write_video(tmp / "render.mp4", frames, fps=30)

        code, secs = _run(demo.main, ["--model_name", "random-tiny", "--output_dir", str(tmp / "demo")])
        summary = json.loads((tmp / "demo" / "summary.json").read_text()) if code == 0 else {}
        result["demo"] = {"exit_code": code, "seconds": secs, "size": summary.get("size"),
                          "outputs": sorted(p.name for p in (tmp / "demo").iterdir()) if code == 0 else []}

        code, secs = _run(fix_images.main, ["--input_image", str(tmp / "renders"), "--ref_image", str(tmp / "train"),
                                            "--output_dir", str(tmp / "fixed"), "--model_name", str(model),
                                            "--video"])
        outs = sorted((tmp / "fixed").glob("*.png")) if code == 0 else []
        result["fix"] = {"exit_code": code, "seconds": secs, "images": len(outs),
                         "size_kept": bool(outs) and Image.open(outs[0]).size == Image.open(photos[0]).size,
                         "video": list(video_info(tmp / "fixed" / "output.mp4")) if code == 0 else None}

        code, secs = _run(enhance_video.main, ["--input", str(tmp / "render.mp4"), "--output", str(tmp / "enh.mp4"),
                                               "--use-ref", "--ref-images", str(tmp / "train"), "--model_name",
                                               str(model)])
        result["enhance_video"] = {"exit_code": code, "seconds": secs, "input": list(video_info(tmp / "render.mp4")),
                                   "output": list(video_info(tmp / "enh.mp4")) if code == 0 else None}
    result["ok"] = all(result[k]["exit_code"] == 0 for k in ("demo", "fix", "enhance_video")) and \
        result["enhance_video"]["input"] == result["enhance_video"]["output"]
    text = json.dumps(result, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
