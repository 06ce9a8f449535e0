"""GroupNorm (+SiLU) at the Difix VAE decoder's shapes: stock kernels against per-channel statistics; JSON output.

Why: the compiled Difix step spends 18.4 of its 38.8 ms a frame in GroupNorm reductions on an NVIDIA H100
(``docs/gpu_results/profile_difix_h100.json``), 15.3 ms of them in the decoder. This measures, per shape, the
variants the fast path could use, each with SiLU as in the decoder's resnets:

* ``eager``: ``F.group_norm`` then ``F.silu``, channels_last input (what eager kernels get in the fast path's layout);
* ``eager_contiguous``: the same on the input in the default layout (what eager fixes get before the fast path has
  switched the model to channels_last: fix rounds, the first ``compile_min_frames`` frames, ``--no-compile``);
* ``channel_stats_eager``: ``group_norm_from_channel_stats`` uncompiled, channels_last input (whether eager fixes
  could use the formulation without a compile: separate reduction and elementwise kernels, float32 intermediates);
* ``compiled``: the same compiled by inductor (the fast path's ``compiled_group_norm="stock"``);
* ``channel_stats_compiled``: ``difix_ns.fixers.group_norm.group_norm_from_channel_stats`` compiled, per-channel
  statistics from ``torch.var_mean`` (``compiled_group_norm="channel_stats"``; under the default "auto", the
  formulation of inputs below 2**25 elements);
* ``channel_sums_compiled``: ``group_norm_from_channel_sums`` compiled: per-channel shifted sums, the group
  statistics and the per-channel scale and shift stored by small reductions (``compiled_group_norm="channel_sums"``;
  under "auto", the formulation of inputs of 2**25 elements or more).

(``docs/gpu_results/bench_groupnorm_h100.json`` also has a ``triton_compiled`` row: the statistics from a hand-written
Triton pass, slower than ``channel_stats_compiled`` at every shape and removed since.)

Per variant: ms per call (CUDA events, median of --iters after warm-up), effective memory bandwidth counting one
read of x for the statistics plus one read and one write for the output, and the max abs difference from a float32
``F.group_norm`` + SiLU of the same input.

GPU:
    python scripts/bench_groupnorm.py --out $OUT/bench_groupnorm.json --compile-cache-dir /tmp/difix_compile_cache

GPU, small inputs as the fast path runs them (one CUDA graph; the UNet's GroupNorms with a reference view):
    python scripts/bench_groupnorm.py --batch 2 --shapes 320x72x128 640x36x64 1280x18x32 1280x9x16 --cuda-graphs \
      --out $OUT/bench_groupnorm_unet_b2_graphs.json --compile-cache-dir /tmp/difix_compile_cache

CPU plumbing check (tiny shapes, no compile):
    python scripts/bench_groupnorm.py --smoke-cpu --out /tmp/gn.json
"""
import json
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

import tyro

from kernel_bench import KernelBenchOptions, kernel_bench_device, measure_variant, parse_shape  # shared helpers

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DECODER_SHAPES = ["512x72x128", "512x144x256", "256x288x512", "128x576x1024"]
"""channels x height x width of the SD VAE decoder's GroupNorms for a 576x1024 output (up blocks 1-4)."""


@dataclass
class GroupNormBenchConfig(KernelBenchOptions):
    """Options of the GroupNorm benchmark."""

    batch: int = 8
    """frames per call"""
    shapes: List[str] = field(default_factory=lambda: list(DECODER_SHAPES))
    """CxHxW of each GroupNorm input"""
    groups: int = 32
    """GroupNorm groups (the SD VAE uses 32)"""
    cuda_graphs: bool = False
    """time each variant replayed as a CUDA graph (as the fast path runs its step: no launch gaps between the small
    kernels of small inputs, which otherwise dominate, e.g. the UNet's GroupNorms at batch 1 or 2)"""
    smoke_cpu: bool = False
    """CPU plumbing check: batch 2, one 16x8x12 shape in 4 groups, float32, no compile, 1 timed call"""


def main(argv=None) -> dict:
    args = tyro.cli(GroupNormBenchConfig, args=argv, description=__doc__, config=(tyro.conf.FlagCreatePairsOff,))
    shapes = [parse_shape(s) for s in args.shapes]
    if args.cuda_graphs and args.smoke_cpu:
        raise SystemExit("error: --cuda-graphs needs a GPU; it cannot be combined with --smoke-cpu")
    if args.smoke_cpu:
        args.batch, shapes, args.dtype, args.warmup, args.iters = 2, [(16, 8, 12)], "float32", 1, 1
        args.groups = 4
    for c, _, _ in shapes:
        if c % args.groups:
            raise SystemExit(f"error: {c} channels cannot be split into --groups {args.groups}")
    cuda, dtype, device = kernel_bench_device(args.smoke_cpu, args.dtype, args.compile_cache_dir)
    import torch
    import torch.nn.functional as F

    from difix_ns.fixers.group_norm import group_norm_from_channel_stats, group_norm_from_channel_sums

    def stock(x, w, b):
        return F.silu(F.group_norm(x, args.groups, w, b, 1e-6))

    def by_channel(x, w, b):
        return group_norm_from_channel_stats(x, args.groups, w, b, 1e-6, silu=True)

    def by_channel_sums(x, w, b):
        return group_norm_from_channel_sums(x, args.groups, w, b, 1e-6, silu=True)

    variants = {"eager": stock, "eager_contiguous": stock}  # the latter gets the input in the default layout
    if cuda:
        variants["compiled"] = torch.compile(stock, dynamic=False)
        variants["channel_stats_compiled"] = torch.compile(by_channel, dynamic=False)
        variants["channel_sums_compiled"] = torch.compile(by_channel_sums, dynamic=False)
    # uncompiled per-channel statistics (CPU: plumbing only; compiling needs minutes and a C++ toolchain)
    variants["channel_stats_eager"] = by_channel
    variants["channel_sums_eager"] = by_channel_sums

    result = {
        "what": "GroupNorm + SiLU at the Difix VAE decoder's shapes: stock kernels vs per-channel statistics",
        "gpu": torch.cuda.get_device_name(0) if cuda else "none (CPU smoke run)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "batch": args.batch,
        "groups": args.groups,
        "dtype": args.dtype,
        "memory_format": "channels_last",
        "iters": args.iters,
        "cuda_graphs": args.cuda_graphs,
        "shapes": {},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator(device="cpu").manual_seed(0)
    for c, h, w in shapes:
        x = (torch.randn(args.batch, c, h, w, generator=gen) * 2 + 0.5).to(device, dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        weight = (torch.rand(c, generator=gen) + 0.5).to(device, dtype)
        bias = (torch.randn(c, generator=gen) * 0.1).to(device, dtype)
        reference = F.silu(F.group_norm(x.float(), args.groups, weight.float(), bias.float(), 1e-6))
        gigabytes = 3 * x.numel() * x.element_size() / 1e9
        rows = {}
        contiguous = x.contiguous()
        for name, fn in variants.items():
            inputs = (contiguous if name == "eager_contiguous" else x, weight, bias)
            rows[name] = measure_variant(fn, inputs, reference, args.warmup, args.iters, cuda, args.cuda_graphs)
            if "ms" in rows[name]:
                rows[name]["gb_per_s"] = round(gigabytes / (rows[name]["ms"] / 1000), 1)
            print(f"[groupnorm] {c}x{h}x{w} {name}: {rows[name]}", flush=True)
        result["shapes"][f"{c}x{h}x{w}"] = rows
        args.out.write_text(json.dumps(result, indent=2))
        del x, contiguous, reference
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
