"""GroupNorm + SiLU + 3x3 convolution at the SD VAE's resnet shapes: inductor + cuDNN (the fast path today) against
one hand-written Triton kernel that normalises in its prologue and sums for the next GroupNorm in its epilogue; JSON.

Why: ``docs/difix_fast_path.md`` ("What is left to batch 8") names fused convolutions as the remaining lever for
#12's batch-8 and reference goals: much of the batch-8 step is memory-bound GroupNorm passes around cuDNN's
convolutions, which inductor cannot fuse into. The kernel here (:func:`norm_silu_conv3x3`, an implicit GEMM over
K = 9 taps x input channels, channels_last)

* loads the raw input x, applies ``silu(x * scale[n, c] + shift[n, c])`` in registers (GroupNorm's per-sample,
  per-channel scale and shift; the zero padding applied after it, as the convolution pads its normalised input), and
  multiplies with the weight laid out as [9 * C_in, C_out] (:func:`conv3x3_weight_matrix`);
* adds the bias in its epilogue, stores the output and, if asked, atomically adds the
  output's per-(sample, channel) sums and sums of squares, from which :func:`group_norm_scale_shift` gives the next
  GroupNorm's scale and shift without another pass over the output.

It lives in this script, not in ``difix_ns``: the fast path does not use it (see the measurements in
``docs/difix_fast_path.md``). Per shape C x H x W (C in = C out, as in the resnets' second convolutions) and batch,
all in the input dtype, channels_last:

* ``cudnn_conv`` / ``cudnn_conv_nobias``: ``F.conv2d`` alone with / without its bias (cuDNN, benchmark mode);
* ``norm_conv_compiled``: ``group_norm_by_size`` (statistics pass, normalise + SiLU pass) then the convolution,
  compiled by inductor: what the fast path runs per resnet convolution;
* ``triton_conv``: the kernel without prologue or statistics (its convolution alone, against cuDNN's);
* ``triton_norm_conv``: per-channel sums of x (one compiled pass), the scale and shift, then the kernel normalising
  in its prologue (a layer whose input statistics nobody handed over);
* ``triton_norm_only``: the kernel with the prologue's scale and shift but no SiLU, against GroupNorm + convolution
  (a different function: what the SiLU's exponential costs inside the prologue);
* ``triton_chain``: the scale and shift from sums handed over by the previous layer, the kernel normalising in its
  prologue and summing its output in its epilogue: a layer inside a chain of fused layers.

Per variant: ms per call (CUDA events, median of --iters after warm-up; the kernel autotunes over :data:`CONFIGS`
in its first call), TFLOP/s of the convolution, the max / mean abs difference from a float32 (no TF32) GroupNorm +
SiLU + convolution, and for ``triton_chain`` the largest relative error of its output sums. Random weights: speed and
numerics, not quality. Without a GPU (``--smoke-cpu``) the kernel runs under Triton's interpreter in float32 (the
interpreter's bfloat16 products are wrong), which checks its arithmetic, not its speed.

GPU:  python scripts/bench_fused_conv.py --out $OUT/bench_fused_conv.json --compile-cache-dir /tmp/difix_compile_cache
CPU check (Triton's interpreter, float32, tiny):  python scripts/bench_fused_conv.py --smoke-cpu --out /tmp/fc.json
"""
import functools
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import tyro

from kernel_bench import (  # the kernel benchmarks' helpers (scripts/kernel_bench.py)
    KernelBenchOptions,
    group_norm_scale_shift,
    kernel_bench_device,
    kernel_bench_header,
    measure_variant,
    parse_shape,
)

if TYPE_CHECKING:
    import torch

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = (  # (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages): the autotuner's candidates
    (128, 128, 64, 8, 3),
    (128, 128, 64, 4, 4),
    (128, 256, 64, 8, 3),
    (256, 128, 64, 8, 3),
    (128, 128, 32, 4, 4),
    (64, 128, 64, 4, 4),
)


@functools.lru_cache(maxsize=None)
def _kernels():
    """The Triton kernel, plain and autotuned over :data:`CONFIGS` (built on first use: importing this module does
    not import Triton)."""
    import triton
    import triton.language as tl

    @triton.jit
    def norm_silu_conv3x3(
        x_ptr, scale_ptr, shift_ptr, w_ptr, bias_ptr, y_ptr, sum_ptr, sum_sq_ptr,
        H, W, C, COUT,
        sxn, sxc, sxh, sxw, syn, syc, syh, syw,
        NORM: tl.constexpr, SILU: tl.constexpr, HAS_BIAS: tl.constexpr, STATS: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):
        pid_m, pid_n, n = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # output pixels of sample n
        m_ok = offs_m < H * W
        oh, ow = offs_m // W, offs_m % W
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # output channels
        n_ok = offs_n < COUT
        rk = tl.arange(0, BLOCK_K)
        x_n = x_ptr + n.to(tl.int64) * sxn
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for kk in range(0, 9 * C, BLOCK_K):  # K = (tap, input channel); C is a multiple of BLOCK_K
            tap = kk // C
            offs_c = kk - tap * C + rk
            ih, iw = oh + (tap // 3 - 1), ow + (tap % 3 - 1)
            inside = m_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            a = tl.load(x_n + (ih * sxh + iw * sxw)[:, None] + offs_c[None, :] * sxc, mask=inside[:, None], other=0.0)
            if NORM:
                scale = tl.load(scale_ptr + n * C + offs_c)
                shift = tl.load(shift_ptr + n * C + offs_c)
                v = a.to(tl.float32) * scale[None, :] + shift[None, :]
                if SILU:
                    v = v * tl.sigmoid(v)
                a = tl.where(inside[:, None], v, 0.0).to(w_ptr.dtype.element_ty)
            b = tl.load(w_ptr + (kk + rk)[:, None] * COUT + offs_n[None, :], mask=n_ok[None, :], other=0.0)
            acc = tl.dot(a, b, acc)
        if HAS_BIAS:
            acc += tl.load(bias_ptr + offs_n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
        mask = m_ok[:, None] & n_ok[None, :]
        out = acc.to(y_ptr.dtype.element_ty)
        y_ptrs = y_ptr + n.to(tl.int64) * syn + (oh * syh + ow * syw)[:, None] + offs_n[None, :] * syc
        tl.store(y_ptrs, out, mask=mask)
        if STATS:  # of the stored (rounded) values, as the next GroupNorm would read them
            v = tl.where(mask, out.to(tl.float32), 0.0)
            tl.atomic_add(sum_ptr + n * COUT + offs_n, tl.sum(v, axis=0), mask=n_ok)
            tl.atomic_add(sum_sq_ptr + n * COUT + offs_n, tl.sum(v * v, axis=0), mask=n_ok)

    configs = [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=warps, num_stages=stages)
        for bm, bn, bk, warps, stages in CONFIGS
    ]
    autotuned = triton.autotune(
        configs, key=["H", "W", "C", "COUT", "NORM", "SILU", "STATS"],
        reset_to_zero=["sum_ptr", "sum_sq_ptr"],
    )(norm_silu_conv3x3)
    return norm_silu_conv3x3, autotuned


def conv3x3_weight_matrix(weight: "torch.Tensor") -> "torch.Tensor":
    """A [C_out, C_in, 3, 3] convolution weight as the kernel's [9 * C_in, C_out] matrix (rows: tap, then channel)."""
    if weight.ndim != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"weight must be [C_out, C_in, 3, 3], got shape {tuple(weight.shape)}")
    c_out, c_in = weight.shape[:2]
    return weight.permute(2, 3, 1, 0).reshape(9 * c_in, c_out).contiguous()


def norm_silu_conv3x3(
    x: "torch.Tensor",
    weight_matrix: "torch.Tensor",
    bias: Optional["torch.Tensor"] = None,
    scale: Optional["torch.Tensor"] = None,
    shift: Optional["torch.Tensor"] = None,
    stats: bool = False,
    silu: bool = True,
    block: Optional[tuple] = None,
):
    """``conv2d(silu(x * scale + shift), W, bias, padding=1)`` for x [N, C, H, W] (best in channels_last).

    ``weight_matrix`` is :func:`conv3x3_weight_matrix` of W (its dtype is the product's: x is cast to it after the
    prologue); ``scale`` and ``shift`` are float32 [N, C] (both or neither; without them the input is used as it is);
    Returns the output (channels_last, x's dtype) and, with ``stats``, float32
    [N, C_out] sums and sums of squares of it (else None, None). ``silu=False`` leaves the SiLU out (the prologue
    is then the affine normalisation alone: what the SiLU's exponential costs). ``block`` = (BLOCK_M, BLOCK_N,
    BLOCK_K, num_warps, num_stages) skips the autotuner (tests, the interpreter)."""
    if x.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W], got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if weight_matrix.ndim != 2 or weight_matrix.shape[0] != 9 * c:
        raise ValueError(f"weight_matrix must be [9 * {c}, C_out], got shape {tuple(weight_matrix.shape)}")
    if (scale is None) != (shift is None):
        raise ValueError("scale and shift come together")
    c_out = weight_matrix.shape[1]
    norm = scale is not None
    if norm and (scale.shape != (n, c) or shift.shape != (n, c)):
        raise ValueError(f"scale and shift must be [{n}, {c}], got {tuple(scale.shape)} and {tuple(shift.shape)}")
    import torch

    plain, autotuned = _kernels()
    block_k = block[2] if block else max(cfg[2] for cfg in CONFIGS)  # every candidate's BLOCK_K divides the largest
    if c % block_k:
        raise ValueError(f"{c} input channels are not a multiple of BLOCK_K={block_k}")
    y = torch.empty((n, c_out, h, w), device=x.device, dtype=x.dtype, memory_format=torch.channels_last)
    sums = torch.zeros((2, n, c_out), device=x.device, dtype=torch.float32) if stats else None
    dummy = y  # pointers the kernel does not read when a feature is off
    args = (
        x, scale.float().contiguous() if norm else dummy, shift.float().contiguous() if norm else dummy,
        weight_matrix, bias if bias is not None else dummy, y,
        sums[0] if stats else dummy, sums[1] if stats else dummy,
        h, w, c, c_out, *x.stride(), *y.stride(),
    )
    flags = dict(NORM=norm, SILU=silu, HAS_BIAS=bias is not None, STATS=stats)
    if block:
        bm, bn, bk, warps, stages = block
        grid = (-(-h * w // bm), -(-c_out // bn), n)
        plain[grid](*args, **flags, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, num_warps=warps, num_stages=stages)
    else:
        def grid(meta):
            return (-(-h * w // meta["BLOCK_M"]), -(-c_out // meta["BLOCK_N"]), n)
        autotuned[grid](*args, **flags)
    return (y, sums[0], sums[1]) if stats else (y, None, None)


SMOKE_BLOCK = (16, 32, 16, 4, 2)  # the interpreter's tile: any shape, no autotuning


@dataclass
class FusedConvBenchConfig(KernelBenchOptions):
    """Options of the fused GroupNorm-convolution benchmark."""

    shapes: List[str] = field(default_factory=lambda: ["128x576x1024", "256x288x512", "512x144x256", "512x72x128"])
    """convolution inputs CxHxW (the VAE decoder's resnets at 576x1024, largest first)"""
    batches: List[int] = field(default_factory=lambda: [1, 8])
    """batch sizes"""
    smoke_cpu: bool = False
    """CPU plumbing check: Triton's interpreter, batch 2, one 32x6x10 shape, float32, no compile, 1 timed call"""


def main(argv=None) -> dict:
    args = tyro.cli(FusedConvBenchConfig, args=argv, description=__doc__, config=(tyro.conf.FlagCreatePairsOff,))
    shapes = [parse_shape(s) for s in args.shapes]
    if args.smoke_cpu:
        os.environ["TRITON_INTERPRET"] = "1"  # read when the kernel is first built
        args.batches, shapes, args.dtype, args.warmup, args.iters = [2], [(32, 6, 10)], "float32", 1, 1
    if not args.batches or min(args.batches) < 1:
        raise SystemExit("error: --batches must be positive")
    for c, _, _ in shapes:
        if c % 64 and not args.smoke_cpu:
            raise SystemExit(f"error: --shapes channels must be a multiple of 64 (the kernel's BLOCK_K), got {c}")
    cuda, dtype, device = kernel_bench_device(args.smoke_cpu, args.dtype, args.compile_cache_dir)
    import torch
    import torch.nn.functional as F

    from difix_ns.fixers.group_norm import group_norm_by_size

    torch.backends.cudnn.benchmark = True
    block = SMOKE_BLOCK if args.smoke_cpu else None
    groups, eps = 32 if not args.smoke_cpu else 8, 1e-6

    def compiled(fn):
        return torch.compile(fn, dynamic=False) if cuda else fn

    def norm_conv(x, w, b, gw, gb):
        return F.conv2d(group_norm_by_size(x, groups, gw, gb, eps, silu=True), w, b, padding=1)

    def channel_sums(x):
        xf = x.float()
        return xf.sum((2, 3)), (xf * xf).sum((2, 3))

    norm_conv_c, channel_sums_c, scale_shift_c = compiled(norm_conv), compiled(channel_sums), compiled(
        group_norm_scale_shift)

    result = kernel_bench_header("GroupNorm + SiLU + 3x3 convolution (SD VAE resnet shapes): inductor + cuDNN against "
                                 "one Triton kernel normalising in its prologue (scripts/bench_fused_conv.py); random "
                                 "weights", cuda, args, cpu_run="CPU smoke run, Triton interpreter")
    try:
        import triton

        result["triton"] = triton.__version__
    except ImportError:
        pass
    args.out.parent.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator(device="cpu").manual_seed(0)
    for c, h, w in shapes:
        for batch in args.batches:
            x = (torch.randn(batch, c, h, w, generator=gen) * 2 + 0.5).to(device, dtype)
            x = x.contiguous(memory_format=torch.channels_last)
            weight = (torch.randn(c, c, 3, 3, generator=gen) * (9 * c) ** -0.5).to(device, dtype)
            weight = weight.contiguous(memory_format=torch.channels_last)
            bias = (torch.randn(c, generator=gen) * 0.1).to(device, dtype)
            gn_w = (torch.rand(c, generator=gen) + 0.5).to(device, dtype)
            gn_b = (torch.randn(c, generator=gen) * 0.1).to(device, dtype)
            matrix = conv3x3_weight_matrix(weight)
            with torch.no_grad():  # float32 references, no TF32
                allow = torch.backends.cudnn.allow_tf32
                torch.backends.cudnn.allow_tf32 = False
                try:
                    normed = F.silu(F.group_norm(x.float(), groups, gn_w.float(), gn_b.float(), eps))
                    reference = F.conv2d(normed, weight.float(), bias.float(), padding=1)
                    del normed
                    plain_reference = F.conv2d(x.float(), weight.float(), bias.float(), padding=1)
                    normed = F.group_norm(x.float(), groups, gn_w.float(), gn_b.float(), eps)
                    affine_reference = F.conv2d(normed, weight.float(), bias.float(), padding=1)
                    del normed
                    ref_sums = channel_sums(reference)
                    handed_over = channel_sums(x)  # what a previous fused layer would have summed
                    affine = group_norm_scale_shift(*handed_over, h * w, groups, gn_w, gn_b, eps)
                finally:
                    torch.backends.cudnn.allow_tf32 = allow

            def triton_conv(x, m, b):
                return norm_silu_conv3x3(x, m, b, block=block)[0]

            def triton_norm_conv(x, m, b, gw, gb):
                sums, sums_sq = channel_sums_c(x)
                scale, shift = scale_shift_c(sums, sums_sq, h * w, groups, gw, gb, eps)
                return norm_silu_conv3x3(x, m, b, scale, shift, block=block)[0]

            def triton_norm_only(x, m, b, scale, shift):
                return norm_silu_conv3x3(x, m, b, scale, shift, silu=False, block=block)[0]

            chain_out = {}

            def triton_chain(x, m, b, gw, gb):
                scale, shift = scale_shift_c(*handed_over, h * w, groups, gw, gb, eps)
                y, sums, sums_sq = norm_silu_conv3x3(x, m, b, scale, shift, stats=True, block=block)
                chain_out["sums"] = (sums, sums_sq)
                return y

            flop = 2 * batch * c * c * 9 * h * w
            rows = {}
            variants = {
                "cudnn_conv": (lambda x, w, b: F.conv2d(x, w, b, padding=1), (x, weight, bias), plain_reference),
                "cudnn_conv_nobias": (lambda x, w: F.conv2d(x, w, padding=1), (x, weight),
                                      plain_reference - bias.float()[:, None, None]),
                "norm_conv_compiled": (norm_conv_c, (x, weight, bias, gn_w, gn_b), reference),
                "triton_conv": (triton_conv, (x, matrix, bias), plain_reference),
                "triton_norm_conv": (triton_norm_conv, (x, matrix, bias, gn_w, gn_b), reference),
                "triton_norm_only": (triton_norm_only, (x, matrix, bias, *affine), affine_reference),
                "triton_chain": (triton_chain, (x, matrix, bias, gn_w, gn_b), reference),
            }
            for name, (fn, inputs, target) in variants.items():
                rows[name] = measure_variant(fn, inputs, target, args.warmup, args.iters, cuda)
                if "ms" in rows[name]:
                    rows[name]["tflop_per_s"] = round(flop / (rows[name]["ms"] / 1000) / 1e12, 1)
                if name.startswith("triton") and cuda:
                    best = getattr(_kernels()[1], "best_config", None)
                    rows[name]["config"] = str(best) if best is not None else None
                if name == "triton_chain" and "sums" in chain_out:
                    errors = [((got - want).abs().max() / want.abs().max().clamp_min(1e-12)).item()
                              for got, want in zip(chain_out["sums"], ref_sums)]
                    rows[name]["output_sums_max_rel_err"] = max(errors)
                print(f"[fused_conv] {c}x{h}x{w} batch {batch} {name}: {rows[name]}", flush=True)
            if "ms" in rows["norm_conv_compiled"] and "ms" in rows["triton_chain"]:
                rows["chain_saving_ms"] = round(rows["norm_conv_compiled"]["ms"] - rows["triton_chain"]["ms"], 4)
            result["shapes"][f"{c}x{h}x{w}_b{batch}"] = rows
            args.out.write_text(json.dumps(result, indent=2))
            del x, weight, bias, matrix, reference, plain_reference, affine_reference
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
