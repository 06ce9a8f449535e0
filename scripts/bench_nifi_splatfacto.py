#!/usr/bin/env python
"""GPU benchmark of `nifi-splatfacto` on one scene: train, compress at the rate presets, ns-eval; JSON out.

    source .device/setup.sh && python scripts/bench_nifi_splatfacto.py --data .device/data/fox \
        --out $OUT/bench_nifi_splatfacto.json [--max-num-iterations 3000] [--finetune-steps 200]

Reports per rate: container size (MB = 2^20 bytes), Gaussian count, ratio to the trained model's INRIA PLY,
compression time, and PSNR / SSIM / LPIPS (alex, vgg) / DISTS of the compressed renders next to the
uncompressed ones, plus the machine and wall times. Restored metrics are not part of this benchmark (no
trained restorer weights exist offline). The fox scene is small, so the presets' Mip-NeRF360 target sizes
prune it less than they would prune a full scene; `--target-mb` adds scene-scaled operating points.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

IMAGE_METRICS = ("psnr", "ssim", "lpips", "lpips_vgg", "dists")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="nerfstudio scene (transforms.json + images_4/)")
    p.add_argument("--out", type=Path, required=True, help="JSON result file")
    p.add_argument("--downscale-factor", type=int, default=4)
    p.add_argument("--max-num-iterations", type=int, default=3000)
    p.add_argument("--finetune-steps", type=int, default=200)
    p.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.5, 1.0])
    p.add_argument("--target-mb", type=float, nargs="*", default=None, help="one size per rate (default: presets)")
    p.add_argument("--num-random", type=int, default=None, help="random-init Gaussians (splatfacto default 50000)")
    p.add_argument("--work-dir", type=Path, default=None, help="run folder (default: next to --out)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out JSON (default: refuse)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from nifi_ns.cli.options import check_min, check_output, check_rates, check_target_mb

    check_rates(args.rates)  # every option before the (long) training starts
    check_target_mb(args.target_mb, len(args.rates))
    for option, value, low in (("--downscale-factor", args.downscale_factor, 1),
                               ("--max-num-iterations", args.max_num_iterations, 1),
                               ("--finetune-steps", args.finetune_steps, 0), ("--num-random", args.num_random, 1)):
        check_min(option, value, low)
    check_output(args.out, args.overwrite)
    if not (args.data / "transforms.json").is_file():
        raise SystemExit(f"error: --data {args.data}: no transforms.json")
    import torch
    from nerfstudio.scripts.eval import ComputePSNR
    from nerfstudio.scripts.train import main as ns_train

    from nifi_ns.nerfstudio.method_configs import nifi_splatfacto_config

    work = args.work_dir or args.out.parent / "bench_nifi_splatfacto_run"
    config = nifi_splatfacto_config()
    config.pipeline.datamanager.data = args.data
    config.pipeline.datamanager.dataparser.downscale_factor = args.downscale_factor
    config.output_dir = work
    config.experiment_name = "bench"
    config.timestamp = "run"
    config.max_num_iterations = args.max_num_iterations
    config.steps_per_save = args.max_num_iterations
    config.steps_per_eval_all_images = 10**9
    config.vis = "tensorboard"
    config.viewer.quit_on_train_completion = True
    config.machine.device_type = "cuda" if torch.cuda.is_available() else "cpu"
    config.pipeline.rates = tuple(args.rates)
    config.pipeline.target_mb = tuple(args.target_mb or ())
    config.pipeline.finetune_steps = args.finetune_steps
    if args.num_random is not None:
        config.pipeline.model.num_random = args.num_random

    t0 = time.perf_counter()
    ns_train(config)  # training + the AFTER_TRAIN compression callback
    train_and_compress_s = time.perf_counter() - t0
    run_dir = config.get_base_dir()
    eval_json = work / "eval.json"
    t1 = time.perf_counter()
    ComputePSNR(load_config=run_dir / "config.yml", output_path=eval_json).main()
    eval_s = time.perf_counter() - t1

    results = json.loads(eval_json.read_text())["results"]
    reports = json.loads((run_dir / "nifi" / "summary.json").read_text())
    per_rate = {}
    for label, rep in reports.items():
        per_rate[label] = {
            "size_mb": rep["size_mb"],
            "num_gaussians": rep["num_gaussians"],
            "pruned_to": rep["pruned_gaussians"],
            "num_input_gaussians": rep["num_input_gaussians"],
            "sh_degree": rep["sh_degree"],
            "compression_ratio": rep["compression_ratio"],
            "compress_seconds": rep["total_seconds"],
            "metrics": {m: results[f"compressed/{label}/{m}"] for m in IMAGE_METRICS},
        }
    summary = {
        "machine": {
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "scene": str(args.data),
        "max_num_iterations": args.max_num_iterations,
        "finetune_steps": args.finetune_steps,
        "train_and_compress_seconds": train_and_compress_s,
        "eval_seconds": eval_s,
        "uncompressed": {m: results[f"uncompressed/{m}"] for m in IMAGE_METRICS},
        "nerfstudio_metrics": {k: results[k] for k in ("psnr", "ssim", "lpips") if k in results},
        "rates": per_rate,
        "note": "LPIPS 'lpips' = AlexNet, 'lpips_vgg' = VGG; sizes in MB = 2^20 bytes; rates use NiFi's lambda "
        "convention (larger = smaller file) mapped to this codec's presets, not HAC++ itself.",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2), "utf8")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
