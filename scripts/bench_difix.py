"""Benchmark the Difix forward pass (real SD-Turbo-sized architecture, random weights) and print JSON.

GPU (the numbers for the README):
    python scripts/bench_difix.py --out $OUT/bench_difix.json
CPU smoke run (tiny architecture, small images; proves the script works, the timings mean nothing):
    python scripts/bench_difix.py --quick --out /tmp/bench_difix_quick.json

Measured: ms per restored frame for fp32 and bf16 weights, batch 1 and 8, with 0 and 1 reference view, at
576x1024 (Difix's training resolution), plus peak GPU memory per setting. Random weights: timing only, no quality.
Each setting is warmed up, then timed over several iterations with CUDA synchronisation.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # `python scripts/bench_difix.py` from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON result here as well as to stdout")
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: tiny architecture, 64x96, 1 iteration")
    parser.add_argument("--height", type=int, default=576)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--refs", type=int, nargs="+", default=[0, 1], help="reference views per frame")
    parser.add_argument(
        "--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16", "float16"]
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory format for UNet and VAE")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet and VAE forward functions")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls in float32 runs")
    parser.add_argument(
        "--no-fuse-lora",
        dest="fuse_lora",
        action="store_false",
        help="keep the VAE LoRA unmerged (DifixFixer merges it on CUDA)",
    )
    parser.add_argument("--no-ablation", dest="ablation", action="store_false", help="skip the batch-1 bf16 variants")
    args = parser.parse_args(argv)
    if args.quick:
        args.height, args.width, args.batches, args.warmup, args.iters = 64, 96, [1, 2], 1, 1
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from difix_ns.testing import build_difix_pipeline

    use_cuda = torch.cuda.is_available() and not args.quick
    device = torch.device("cuda" if use_cuda else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = bool(args.tf32)
    size = "tiny" if args.quick else "real"
    # Without peft the VAE is built without the adapter: the same compute as the merged LoRA (the default here).
    has_peft = importlib.util.find_spec("peft") is not None
    t0 = time.perf_counter()
    pipe = build_difix_pipeline(size, reference_mixing=True, seed=0, device=str(device), vae_lora=has_peft)
    build_s = time.perf_counter() - t0
    torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest conv kernels
    if args.fuse_lora:
        pipe.vae.merge_lora()
    if args.channels_last:
        _channels_last(pipe, True)
    if args.compile:
        pipe.unet.forward = torch.compile(pipe.unet.forward)
        pipe.vae.encode_with_skips = torch.compile(pipe.vae.encode_with_skips)
        pipe.vae.decode_with_skips = torch.compile(pipe.vae.decode_with_skips)

    result = {
        "what": "Difix single-step forward (VAE encode + UNet at t=199 + x0 step + skip decode), random weights",
        "architecture": size,
        "unet_params": sum(p.numel() for p in pipe.unet.parameters()),
        "vae_params": sum(p.numel() for p in pipe.vae.parameters()),
        "device": torch.cuda.get_device_name(device) if use_cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "resolution_hw": [args.height, args.width],
        "warmup": args.warmup,
        "iters": args.iters,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "tf32": args.tf32,
        "vae_lora_merged": args.fuse_lora,
        "peft_available": has_peft,
        "build_seconds": round(build_s, 2),
        "runs": [],
    }
    generator = torch.Generator(device="cpu").manual_seed(0)
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        if not use_cuda and dtype != torch.float32:
            continue  # CPU runs float32 only, as the fixer does
        pipe.to(dtype=dtype)
        for batch in args.batches:
            for num_refs in args.refs:
                x = torch.rand(batch, 3, args.height, args.width, generator=generator) * 2 - 1
                refs = torch.rand(batch, num_refs, 3, args.height, args.width, generator=generator) * 2 - 1
                run = {"dtype": dtype_name, "batch": batch, "refs": num_refs}
                try:
                    run.update(_time(pipe, x.to(device), refs.to(device) if num_refs else None, args, use_cuda))
                except torch.cuda.OutOfMemoryError as err:
                    run["error"] = f"out of memory: {str(err).splitlines()[0]}"
                    torch.cuda.empty_cache()
                result["runs"].append(run)
                print(json.dumps(run), file=sys.stderr, flush=True)
    if use_cuda:
        result["checks"] = _cuda_checks(pipe, args, device, generator)
    if args.ablation and has_peft:
        result["ablation"] = _ablation(pipe, args, device, use_cuda, generator)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return result


def _cuda_checks(pipe, args, device, generator) -> dict:
    """Numerical sanity of the CUDA path (random weights, so these say nothing about restoration quality)."""
    from difix_ns.testing import build_difix_pipeline

    x = torch.rand(1, 3, args.height, args.width, generator=generator) * 2 - 1
    r = torch.rand(1, 1, 3, args.height, args.width, generator=generator) * 2 - 1
    checks = {}
    # The same tiny model on CPU and CUDA (float32) must agree: joint-view SDPA, skips and LoRA on the GPU.
    tiny = build_difix_pipeline("tiny", reference_mixing=True, seed=0)
    small_x, small_r = x[..., :64, :96], r[..., :64, :96]
    cpu_out = tiny.restore(small_x, small_r)
    cuda_out = tiny.to(device).restore(small_x.to(device), small_r.to(device)).cpu()
    checks["tiny_cpu_vs_cuda_fp32_max_abs"] = float((cpu_out - cuda_out).abs().max())
    # Real-size model: bf16 weights vs float32 on one frame with one reference.
    outs = {}
    for name in ("float32", "bfloat16"):
        pipe.to(dtype=getattr(torch, name))
        outs[name] = pipe.restore(x.to(device), r.to(device)).float().cpu()
    checks["real_bf16_vs_fp32_mean_abs"] = float((outs["float32"] - outs["bfloat16"]).abs().mean())
    checks["real_reference_effect_mean_abs"] = float(
        (outs["bfloat16"] - pipe.restore(x.to(device), None).float().cpu()).abs().mean()
    )
    return checks


def _channels_last(pipe, enable: bool) -> None:
    fmt = torch.channels_last if enable else torch.contiguous_format
    pipe.unet.to(memory_format=fmt)
    pipe.vae.to(memory_format=fmt)


def _ablation(pipe, args, device, use_cuda, generator) -> list[dict]:
    """Batch 1, no reference, lowest-precision dtype: LoRA merged vs not, channels_last vs not."""
    dtype_name = "bfloat16" if use_cuda else "float32"
    pipe.to(dtype=getattr(torch, dtype_name))
    x = (torch.rand(1, 3, args.height, args.width, generator=generator) * 2 - 1).to(device)
    runs = []
    for merged in (False, True):
        for channels_last in (False, True):
            (pipe.vae.merge_lora if merged else pipe.vae.unmerge_lora)()
            _channels_last(pipe, channels_last)
            variant = dict(args.__dict__, channels_last=channels_last)
            run = {"dtype": dtype_name, "batch": 1, "refs": 0}
            run.update(vae_lora_merged=merged, channels_last=channels_last)
            run.update(_time(pipe, x, None, argparse.Namespace(**variant), use_cuda))
            runs.append(run)
            print(json.dumps(run), file=sys.stderr, flush=True)
    return runs


def _time(pipe, x, refs, args, use_cuda) -> dict:
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if use_cuda:
        torch.cuda.synchronize()
    for _ in range(args.warmup):
        pipe.restore(x, refs)
    if use_cuda:
        # Reset after warm-up: cudnn.benchmark's algorithm search allocates large one-off workspaces (over 100 GiB
        # in fp32 on an H200) that a steady-state run never needs again.
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        out = pipe.restore(x, refs)
        if use_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times.sort()
    batch = x.shape[0]
    stats = {
        "ms_per_frame": round(1000 * sum(times) / len(times) / batch, 2),
        "ms_per_frame_median": round(1000 * times[len(times) // 2] / batch, 2),
        "ms_per_batch_min": round(1000 * times[0], 2),
        "output_finite": bool(torch.isfinite(out.float()).all()),
    }
    if use_cuda:
        stats["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return stats


if __name__ == "__main__":
    main()
