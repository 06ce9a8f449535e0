"""Nearest 2x upsampling + 3x3 convolution at the SD VAE decoder's shapes: the stock pair vs the phase formulation;
JSON output.

Why: the decoder's last two upsamplers each convolve about 0.7 TFLOP a frame at 576x1024 after writing a 4x-sized
upsampled tensor; ``difix_ns.fixers.upsample_conv`` computes the pair as one stride-2 transposed convolution (16/36
of the multiply-adds, no upsampled tensor). Per input shape C x H x W (the upsampler's input; the
defaults are the decoder's three at 576x1024) and batch, compiled with ``torch.compile`` as the fast path is:

* ``stock``: ``F.interpolate(x, 2, nearest)`` then the 3x3 convolution (the fast path with
  ``compiled_upsample="stock"``);
* ``phases``: ``upsample_conv_by_phases`` (the default, "phases");
* ``stock_norm`` / ``phases_norm``: each followed by what reads its output in the decoder, GroupNorm (32 groups,
  per-channel statistics) + SiLU, as the decoder's next resnet reads it.

Per variant: ms per call (CUDA events, median of --iters after warm-up), TFLOP/s of the stock pair's arithmetic
(9 taps per output, so the phases can exceed the GPU's peak), and the max / mean abs difference from a float32
(no TF32) stock pair on the same inputs. An ``eager`` row times the stock pair uncompiled.

GPU:  python scripts/bench_upsample_conv.py --out $OUT/bench_upsample_conv.json \
          --compile-cache-dir /tmp/difix_compile_cache
CPU plumbing check (tiny, no compile):  python scripts/bench_upsample_conv.py --smoke-cpu --out /tmp/up.json
"""
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

import tyro

from kernel_bench import (  # the kernel benchmarks' helpers (scripts/kernel_bench.py)
    KernelBenchOptions,
    kernel_bench_device,
    kernel_bench_header,
    measure_variant,
    parse_shape,
)

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass
class UpsampleConvBenchConfig(KernelBenchOptions):
    """Options of the upsampling-convolution benchmark."""

    shapes: List[str] = field(default_factory=lambda: ["512x72x128", "512x144x256", "256x288x512"])
    """upsampler inputs CxHxW (output channels = C, as in the VAE decoder)"""
    batches: List[int] = field(default_factory=lambda: [8])
    """batch sizes"""
    norm: bool = True
    """also time each formulation followed by GroupNorm + SiLU (--no-norm skips those)"""
    smoke_cpu: bool = False
    """CPU plumbing check: batch 2, one 32x6x10 shape, float32, no compile, 1 timed call"""


def main(argv=None) -> dict:
    args = tyro.cli(UpsampleConvBenchConfig, args=argv, description=__doc__, config=(tyro.conf.FlagCreatePairsOff,))
    shapes = [parse_shape(s) for s in args.shapes]
    if args.smoke_cpu:
        args.batches, shapes, args.dtype, args.warmup, args.iters = [2], [(32, 6, 10)], "float32", 1, 1
    if not args.batches or min(args.batches) < 1:
        raise SystemExit("error: --batches must be positive")
    for c, _, _ in shapes:
        if c % 32:
            raise SystemExit(f"error: --shapes channels must be a multiple of 32 (GroupNorm's groups), got {c}")
    cuda, dtype, device = kernel_bench_device(args.smoke_cpu, args.dtype, args.compile_cache_dir)
    import torch
    import torch.nn.functional as F

    from difix_ns.fixers.group_norm import group_norm_from_channel_stats
    from difix_ns.fixers.upsample_conv import upsample_conv_by_phases

    def stock(x, w, b):
        return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, b, padding=1)

    def with_norm(pair):
        return lambda x, w, b: group_norm_from_channel_stats(pair(x, w, b), 32, eps=1e-6, silu=True)

    formulations = {"stock": stock, "phases": upsample_conv_by_phases}
    if args.norm:
        formulations.update({"stock_norm": with_norm(stock), "phases_norm": with_norm(upsample_conv_by_phases)})
    variants = {"eager": stock}
    for name, fn in formulations.items():  # CPU: plumbing only, uncompiled
        variants[name if cuda else f"{name}_eager"] = torch.compile(fn, dynamic=False) if cuda else fn

    result = kernel_bench_header("2x nearest upsampling + 3x3 convolution (SD VAE decoder shapes): stock pair vs one "
                                 "stride-2 transposed convolution (difix_ns.fixers.upsample_conv)", cuda, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator(device="cpu").manual_seed(0)
    for c, h, w in shapes:
        for batch in args.batches:
            x = torch.randn(batch, c, h, w, generator=gen).to(device, dtype).contiguous(
                memory_format=torch.channels_last)
            weight = (torch.randn(c, c, 3, 3, generator=gen) * (9 * c) ** -0.5).to(device, dtype)
            weight = weight.contiguous(memory_format=torch.channels_last)
            bias = (torch.randn(c, generator=gen) * 0.1).to(device, dtype)
            with torch.no_grad():  # float32 stock pair, no TF32
                allow = torch.backends.cudnn.allow_tf32
                torch.backends.cudnn.allow_tf32 = False
                try:
                    reference = stock(x.float(), weight.float(), bias.float())
                    reference_norm = group_norm_from_channel_stats(reference, 32, eps=1e-6, silu=True)
                finally:
                    torch.backends.cudnn.allow_tf32 = allow
            flop = 2 * batch * c * c * 9 * (2 * h) * (2 * w)
            rows = {}
            for name, fn in variants.items():
                target = reference_norm if "norm" in name else reference
                rows[name] = measure_variant(fn, (x, weight, bias), target, args.warmup, args.iters, cuda)
                if "ms" in rows[name]:
                    rows[name]["stock_tflop_per_s"] = round(flop / (rows[name]["ms"] / 1000) / 1e12, 1)
                print(f"[upsample_conv] {c}x{h}x{w} batch {batch} {name}: {rows[name]}", flush=True)
            result["shapes"][f"{c}x{h}x{w}_b{batch}"] = rows
            args.out.write_text(json.dumps(result, indent=2))
            del x, weight, bias, reference, reference_norm
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
