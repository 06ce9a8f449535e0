"""Helpers the kernel benchmarks share; not a command of its own.

``bench_groupnorm.py``, ``bench_fused_conv.py``, ``bench_cudnn_conv.py``, ``bench_upsample_conv.py``,
``bench_wide_attention.py`` and ``bench_unet_attention.py`` import it as ``kernel_bench`` (Python puts a script's
own folder first on ``sys.path``; the tests' ``load_script`` does the same): the options every one of them takes,
the device and JSON header, the timing (CUDA events, optionally replayed as a CUDA graph), one row of a table
(time, difference from a float32 reference, peak memory), shape parsing, and GroupNorm's scale and shift from
per-channel sums handed over by a producing kernel (the fused-convolution benchmarks). torch is imported inside
the functions, so a script's ``--help`` stays fast.
"""
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Tuple

if TYPE_CHECKING:
    import torch


@dataclass
class KernelBenchOptions:
    """What every kernel benchmark takes; each script's config adds its shapes and switches."""

    out: Path
    """JSON file (rewritten after every shape)"""
    dtype: str = "bfloat16"
    """input dtype (bfloat16, float16, float32)"""
    warmup: int = 3
    """untimed calls per variant (the first compiles)"""
    iters: int = 20
    """timed calls per variant"""
    compile_cache_dir: Optional[str] = None
    """TORCHINDUCTOR_CACHE_DIR for the compiled variants"""


def kernel_bench_device(smoke_cpu: bool, dtype_name: str, compile_cache_dir: Optional[str]):
    """Shared start of the kernel benchmarks -> (cuda, dtype, device); exits with a message without a GPU (unless
    smoke_cpu) or on a dtype name torch does not have."""
    if compile_cache_dir:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(compile_cache_dir).resolve())
    import torch

    cuda = torch.cuda.is_available() and not smoke_cpu
    if not cuda and not smoke_cpu:
        raise SystemExit("error: no CUDA GPU; use --smoke-cpu for a CPU plumbing check")
    dtype = getattr(torch, dtype_name, None)
    if not isinstance(dtype, torch.dtype):
        raise SystemExit(f"error: --dtype {dtype_name!r} is not a torch dtype")
    return cuda, dtype, torch.device("cuda" if cuda else "cpu")


def kernel_bench_header(what: str, cuda: bool, args: KernelBenchOptions, cpu_run: str = "CPU smoke run") -> dict:
    """The first keys of a kernel benchmark's JSON: what it measures, the GPU (or ``none (cpu_run)``), torch, Python,
    dtype and timed calls, and an empty ``shapes`` table the script fills."""
    import torch

    return {"what": what, "gpu": torch.cuda.get_device_name(0) if cuda else f"none ({cpu_run})",
            "torch": torch.__version__, "python": platform.python_version(), "dtype": args.dtype, "iters": args.iters,
            "shapes": {}}


GRAPH_CALLS = 10
"""calls captured in one CUDA graph with ``graphs``: one replay's launch is shared by that many calls."""


def median_ms(fn, inputs: tuple, warmup: int, iters: int, cuda: bool, graphs: bool = False) -> float:
    """Median milliseconds of ``fn(*inputs)`` over ``iters`` calls after ``warmup`` untimed ones (CUDA events on a
    GPU, wall clock on the CPU). With ``graphs`` (a GPU only) the warm-up runs on a side stream, then
    :data:`GRAPH_CALLS` calls are captured in one CUDA graph and each timed replay counts as that many calls: the
    kernels' own time, with no launch gaps between them, as the fast path runs its step."""
    import torch

    if graphs and not cuda:
        raise ValueError("CUDA graphs need a GPU")
    call, per_call = (lambda: fn(*inputs)), 1
    if graphs:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(max(warmup, 1)):
                fn(*inputs)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(GRAPH_CALLS):
                fn(*inputs)
        call, per_call = graph.replay, GRAPH_CALLS
        warmup = 1
    for _ in range(warmup):
        call()
    times = []
    for _ in range(iters):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / per_call)
        else:
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def measure_variant(fn, inputs: tuple, reference, warmup: int, iters: int, cuda: bool, graphs: bool = False) -> dict:
    """One benchmark row: median ms of ``fn(*inputs)`` (:func:`median_ms`, replayed as a CUDA graph with ``graphs``),
    max / mean abs difference of its output from ``reference`` and, on a GPU, peak memory; an error is recorded in
    the row instead of raised."""
    import torch

    try:
        with torch.no_grad():
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            ms = median_ms(fn, inputs, warmup, iters, cuda, graphs)
            diff = (fn(*inputs).float() - reference).abs()
        row = {"ms": round(ms, 4), "max_abs_diff_vs_fp32": diff.max().item(),
               "mean_abs_diff_vs_fp32": diff.mean().item()}
        if cuda:
            row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        return row
    except Exception as err:  # noqa: BLE001  (recorded; the other variants still run)
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}


def parse_shape(text: str) -> tuple:
    """``--shapes`` text CxHxW -> (C, H, W); exits with a message naming the option on anything else."""
    try:
        c, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"error: --shapes {text!r} is not CxHxW (e.g. 128x576x1024)") from None
    if min(c, h, w) < 1:
        raise SystemExit(f"error: --shapes {text!r} has a zero or negative size")
    return c, h, w


def group_norm_scale_shift(
    sums: "torch.Tensor",
    sums_sq: "torch.Tensor",
    count: int,
    groups: int,
    weight: Optional["torch.Tensor"] = None,
    bias: Optional["torch.Tensor"] = None,
    eps: float = 1e-6,
) -> Tuple["torch.Tensor", "torch.Tensor"]:
    """GroupNorm's per-(sample, channel) scale and shift from per-channel sums and sums of squares over ``count``
    values each ([N, C] float32): ``x * scale + shift`` is ``F.group_norm(x, groups, weight, bias, eps)``. The
    variance is E[x^2] - E[x]^2 in float32, which loses digits when a group's mean is large against its spread."""
    import torch

    n, c = sums.shape
    if c % groups:
        raise ValueError(f"{c} channels cannot be split into {groups} groups")
    per_group = count * (c // groups)
    mean = sums.view(n, groups, -1).sum(-1) / per_group
    var = (sums_sq.view(n, groups, -1).sum(-1) / per_group - mean * mean).clamp_min(0)
    inv_std = torch.rsqrt(var + eps).repeat_interleave(c // groups, dim=1)
    scale = inv_std * (weight.float() if weight is not None else 1.0)
    shift = -mean.repeat_interleave(c // groups, dim=1) * scale
    if bias is not None:
        shift = shift + bias.float()
    return scale, shift
