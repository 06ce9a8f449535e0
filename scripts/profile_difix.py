"""Where the time of one Difix step goes: per-stage time, top kernels by class, FLOPs, eager vs compiled.

GPU (one call; a fresh machine compiles the batch-8 shape once, ~2 min; the JSON and two gzipped Chrome traces):
    python scripts/profile_difix.py --out $OUT/profile_difix.json --compile-cache-dir /tmp/difix_compile_cache \
        --trace-dir $OUT

CPU smoke run (tiny architecture, 64x96, batch 2; ``compiled`` runs uncompiled; the numbers mean nothing):
    python scripts/profile_difix.py --smoke-cpu --out /tmp/profile_difix_smoke.json

Modes (each calls what ``DifixFixer._restore`` calls, without the fixer's resize/clamp glue):

* ``eager``: ``DifixPipeline.restore`` (``DifixFixer(compile=False)``: contiguous layout, eager kernels);
* ``eager_channels_last`` (not run by default): the same with the weights and the input in channels_last. In the
  eager path the VAE's mid-block attention hands back a channels_last-strided tensor (diffusers' processor transposes
  its tokens back), so from there on activations are channels_last against contiguous weights: on an NVIDIA H100
  the eager profile had 21 of 67 ms a frame in copies and NCHW<->NHWC conversions. This mode asks whether eager
  fixes (fix rounds, the frames before a size compiles) would run faster with one layout throughout;
* ``eager_mixed_layout`` (not run by default): ``eager`` as it ran before 2026-12-06 session 18, whose VAE now copies
  the mid blocks' outputs into its weights' layout (``DifixAutoencoderKL._in_weight_layout``); here that copy is
  skipped, so the decoder runs channels_last activations against contiguous weights (the A/B of that change);
* ``compiled``: the fast path's ``CompiledDifixStep`` (channels_last, torch.compile'd ``_encode`` / ``_unet`` /
  ``_decode``) with CUDA graphs OFF, so each stage can be timed and profiled; its total with CUDA graphs (what the
  fixer runs) is measured afterwards on the same compiled functions.

Per mode: the stages (VAE encode, UNet, x0 + decode; the step's own functions) timed with CUDA events over --iters
calls after warm-up (on CPU: host clock), ms per frame and share of the total; a torch.profiler table of the top
kernels by device time (CPU: ops by self time) with totals per kernel class, per stage, and the conv / matmul /
attention / norm calls by input shape; achieved TFLOP/s per stage from FLOPs counted once on the eager path
(``torch.utils.flop_counter``; ops it cannot count are listed). The JSON is rewritten after each mode; an error is
recorded in its mode and the run goes on.

The model has the real SD-Turbo-sized architecture with RANDOM weights (``difix_ns.testing``): timings only.
"""

import functools
import json
import os
import re
import sys
import time
import traceback
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Iterator, List, Literal, Optional

import tyro

from bench_difix import Bench, inputs, start_run, sync  # its helpers (bench_difix adds the repository root to sys.path)


Mode = Literal["eager", "eager_channels_last", "eager_mixed_layout", "compiled"]
STAGES = ("vae_encode", "unet", "x0_decode")
STAGE_PREFIX = "difix_stage::"
CLASSES = ("convolution", "gemm", "attention", "normalization", "elementwise", "memory_format", "other")
"""Kernel classes: elementwise includes fused Triton kernels; memory_format: copies, NCHW<->NHWC, dtype casts, cat."""


@dataclass
class ProfileDifixConfig:
    """Options of the Difix step profiler."""

    out: Optional[Path] = None
    """JSON file (rewritten after every mode)"""
    smoke: Annotated[bool, tyro.conf.arg(name="smoke-cpu")] = False
    """CPU smoke run: tiny architecture, 64x96, batch <= 2, 1-2 iterations, float32, compiled mode uncompiled"""
    height: int = 576
    """image height (multiple of 8)"""
    width: int = 1024
    """image width (multiple of 8)"""
    batch: int = 8
    """frames per call"""
    refs: int = 0
    """reference views per frame, passed as latents (random: timings only), as the fixer passes the references its
    cache holds; the UNet then runs 1 + refs views per frame"""
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    """weights / compute dtype on CUDA"""
    modes: List[Mode] = field(default_factory=lambda: ["eager", "compiled"])
    """what to profile, in this order"""
    warmup: int = 2
    """untimed calls before the timed ones (after the compiled mode's first, compiling call)"""
    iters: int = 10
    """timed calls per mode"""
    profile_iters: int = 2
    """calls under torch.profiler per mode (0: no kernel tables)"""
    top: int = 30
    """rows of the kernel table"""
    trace_dir: Optional[Path] = None
    """also write each mode's Chrome trace there (profile_difix_<mode>.json.gz)"""
    compile_cache_dir: Optional[str] = None
    """TORCHINDUCTOR_CACHE_DIR for this run (share it with bench_difix.py)"""
    budget_s: float = 300.0
    """skip a mode that would start after this many seconds"""
    group_norm: Literal["auto", "channel_stats", "channel_sums", "stock"] = "auto"
    """GroupNorm in the compiled mode's graphs (DifixFixerConfig.compiled_group_norm)"""
    wide_attention: Literal["matmul", "sdpa"] = "matmul"
    """the VAE's wide attention head in the compiled mode's graphs (DifixFixerConfig.compiled_wide_attention)"""
    upsample: Literal["phases", "stock"] = "phases"
    """upsampling convolutions in the compiled mode's graphs (DifixFixerConfig.compiled_upsample)"""
    constants: Literal["inputs", "folded", "frozen"] = "inputs"
    """the UNet's conditioning-only work in the compiled mode's graphs (DifixFixerConfig.compiled_constants)"""


def parse_args(argv=None) -> ProfileDifixConfig:
    args = tyro.cli(ProfileDifixConfig, args=argv, description=__doc__, config=(tyro.conf.FlagCreatePairsOff,))
    problems = [f"{flag} must be >= {low}, got {value}" for flag, value, low in (
        ("--batch", args.batch, 1), ("--refs", args.refs, 0), ("--iters", args.iters, 1), ("--warmup", args.warmup, 0),
        ("--profile-iters", args.profile_iters, 0), ("--top", args.top, 1)) if value < low]
    if not args.modes:
        problems.append("--modes needs at least one of: eager eager_channels_last eager_mixed_layout compiled")
    if not args.smoke and (args.height % 8 or args.width % 8 or min(args.height, args.width) < 64):
        problems.append(f"--height/--width must be multiples of 8 and >= 64, got {args.height}x{args.width}")
    if problems:
        sys.exit("error: " + "; ".join(problems))
    args.modes = list(dict.fromkeys(args.modes))
    if args.smoke:
        args.height, args.width, args.dtype, args.warmup = 64, 96, "float32", 1
        args.batch, args.iters, args.profile_iters = min(args.batch, 2), min(args.iters, 2), min(args.profile_iters, 1)
    return args


# ---------------------------------------------------------------------------------------------------- stages
def stage_targets(pipe, step) -> list:
    """(object, method name, stage): the step's own stage functions, routed through a wrapper while profiling."""
    if step is not None:  # CompiledDifixStep._step calls these three (compiled functions, or ``_eps`` calls one)
        return [(step, "_encode", "vae_encode"), (step, "_eps", "unet"), (step, "_decode", "x0_decode")]
    return [(pipe.vae, "encode_with_skips", "vae_encode"), (pipe.unet, "forward", "unet"),
            (pipe, "predict_x0", "x0_decode"), (pipe.vae, "decode_with_skips", "x0_decode")]


_UNSET = object()


@contextmanager
def around_stages(targets, around):
    """Within the block each target method runs as ``around(stage, method, *args, **kwargs)``."""
    saved = []
    try:
        for obj, name, stage in targets:
            saved.append((obj, name, vars(obj).get(name, _UNSET)))
            setattr(obj, name, functools.partial(around, stage, getattr(obj, name)))
        yield
    finally:
        for obj, name, own in reversed(saved):
            if own is _UNSET:
                delattr(obj, name)
            else:
                setattr(obj, name, own)


class StageClock:
    """Start/end marks of every stage and of every whole call: CUDA events on a GPU, the host clock on a CPU."""

    def __init__(self, cuda: bool):
        self.cuda, self.calls, self._spans = cuda, [], None

    def mark(self):
        import torch

        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def ms(self, start, end) -> float:
        return start.elapsed_time(end) if self.cuda else 1000.0 * (end - start)

    def around(self, stage, fn, *args, **kwargs):
        import torch

        start = self.mark()
        with torch.profiler.record_function(STAGE_PREFIX + stage):  # the profiler's stage attribution
            out = fn(*args, **kwargs)
        if self._spans is not None:
            self._spans.append((stage, start, self.mark()))
        return out

    def timed_call(self, call):
        self._spans = []
        start = self.mark()
        out = call()
        self.calls.append((start, self.mark(), self._spans))
        self._spans = None
        return out

    def summary(self, frames: int) -> dict:
        sync(self.cuda)
        n = len(self.calls) * frames
        total = sum(self.ms(start, end) for start, end, _ in self.calls) / n
        stages = dict.fromkeys(STAGES, 0.0)
        for _, _, spans in self.calls:
            for stage, start, end in spans:
                stages[stage] += self.ms(start, end) / n
        inside = sum(stages.values())
        return {
            "total_ms_per_frame": round(total, 3),
            "stages": {s: {"ms_per_frame": round(v, 3), "share": round(v / total, 4)} for s, v in stages.items()},
            "stages_sum_ms_per_frame": round(inside, 3),
            "outside_stages_ms_per_frame": round(total - inside, 3),
        }


# ---------------------------------------------------------------------------------------------------- kernel classes
_COPY_OPS = ("_to_copy", "clone", "copy", "cat", "permute", "view", "expand", "slice", "constant_pad_nd", "contiguous")
_KERNEL_RULES = (  # substrings of lower-cased CUDA kernel names, first match wins
    ("memory_format", ("nchwtonhwc", "nhwctonchw", "nchw2nhwc", "nhwc2nchw", "memcpy", "memset", "copy",
                       "catarraybatched")),
    ("attention", ("flash", "fmha", "attention", "sdpa", "softmax")),
    ("normalization", ("group_norm", "groupnorm", "layer_norm", "layernorm", "moments",  # + the Triton pass
                       "computefusedparams", "batch_norm", "welford")),
    ("convolution", ("conv", "fprop", "dgrad", "wgrad", "winograd")),
    ("gemm", ("gemm", "gemv", "nvjet", "cublas", "matmul", "s16816", "cutlass")),
    ("elementwise", ("elementwise", "reduce_kernel", "upsample")),
)
_ATEN_OPS = {  # aten op names (CPU tables, shaped calls); then substrings: conv, attention, norm
    "gemm": {"mm", "addmm", "bmm", "baddbmm", "linear", "matmul", "_scaled_mm", "addmv", "mv"},
    "memory_format": {"copy_", "clone", "contiguous", "cat", "to", "_to_copy", "empty", "empty_like",
                      "empty_strided", "constant_pad_nd", "pad", "as_strided", "resize_"},
    "elementwise": {"add", "add_", "mul", "mul_", "sub", "div", "div_", "silu", "silu_", "gelu", "clamp", "clamp_",
                    "sigmoid", "exp", "where", "mean", "sum", "pow", "rsqrt", "sqrt", "neg", "softmax", "_softmax",
                    "upsample_nearest2d", "fill_", "zero_", "isfinite", "all"},
}


def kernel_class(name: str) -> str:
    """One of CLASSES from a CUDA kernel name, an inductor Triton kernel name or an aten op name."""
    n = name.lower()
    if n.startswith("aten::"):
        op = n[len("aten::"):]
        for cls, ops in _ATEN_OPS.items():
            if op in ops:
                return cls
        for cls, key in (("convolution", "conv"), ("attention", "attention"), ("normalization", "norm")):
            if key in op:
                return cls
        return "other"
    triton = re.match(r"triton_(poi|red|per|tem|for|mix)_(?:fused_)?(.*?)(_\d+)?$", n)
    if triton:  # inductor names its kernels after the aten ops fused into them
        kind, ops = triton.group(1), triton.group(2)
        if kind == "tem":  # a template (max-autotune): a matmul or a convolution
            return "convolution" if "conv" in ops else "gemm"
        if "norm" in ops or "var_mean" in ops:  # var_mean: GroupNorm's per-channel statistics (group_norm.py)
            return "normalization"
        if kind in ("red", "per") and "sum" in ops.split("_") and "softmax" not in ops:  # channel_sums' reductions
            return "normalization"
        rest = ops
        for op in _COPY_OPS:
            rest = rest.replace(op, "")
        return "memory_format" if not rest.strip("_") else "elementwise"
    for cls, keys in _KERNEL_RULES:
        if any(k in n for k in keys):
            return cls
    return "other"


def _short(name: str, width: int = 120) -> str:
    return name if len(name) <= width else name[:80] + " ... " + name[-(width - 85):]


def _stage_of(event) -> str:
    while event is not None:
        if event.name.startswith(STAGE_PREFIX):
            return event.name[len(STAGE_PREFIX):]
        event = event.cpu_parent
    return "outside_stages"


ATTRIBUTION_WARNING = (
    "kernels attributed to the stages add up to more than the device's busy time: the profiler linked some kernels "
    "to more than one CPU op, so classes_by_stage_ms_per_frame and shaped_calls over-count (seen at batch 8 on "
    "H100/H200, 5-23 %); classes, top and the CUDA-event stage times are exact")


def profile_tables(prof, cuda: bool, steps: int, frames: int, top: int) -> dict:
    """Kernel table, class totals, classes per stage and shaped calls from one torch.profiler run.

    GPU: device activities (kernels, copies, memsets) by device time; per stage through the CPU op that launched
    each kernel. CPU: aten ops by self time."""
    from torch.autograd import DeviceType

    per_frame = 1000.0 * steps * frames  # us over all profiled calls -> ms per frame
    table: dict[str, list] = defaultdict(lambda: [0.0, 0])
    by_stage: dict[str, Counter] = defaultdict(Counter)
    shaped: dict[tuple, list] = defaultdict(lambda: [0.0, 0])
    for e in prof.events():
        annotation = getattr(e, "is_user_annotation", False) or e.name.startswith(STAGE_PREFIX)
        if e.device_type != DeviceType.CPU:
            if cuda and not annotation:  # a kernel / memcpy / memset on the GPU
                row = table[e.name]
                row[0], row[1] = row[0] + e.time_range.elapsed_us(), row[1] + 1
            continue
        if annotation:
            continue
        if cuda:
            pieces = [(k.name, k.duration) for k in e.kernels if not k.name.startswith(STAGE_PREFIX)]
        else:
            pieces = [(e.name, e.self_cpu_time_total)]
            row = table[e.name]
            row[0], row[1] = row[0] + e.self_cpu_time_total, row[1] + 1
        if pieces:
            stage = _stage_of(e)
            for name, us in pieces:
                by_stage[stage][kernel_class(name)] += us
        cls = kernel_class(e.name)
        parent = e.cpu_parent
        if (e.name.startswith("aten::") and cls in ("convolution", "gemm", "attention", "normalization")
                and (parent is None or kernel_class(parent.name) != cls)):  # outermost op of its class
            key = (e.name, str([s for s in (e.input_shapes or []) if s]), _stage_of(e))
            shaped[key][0] += e.device_time_total if cuda else e.cpu_time_total
            shaped[key][1] += 1
    busy = sum(us for us, _ in table.values())
    classes = Counter()
    for name, (us, _) in table.items():
        classes[kernel_class(name)] += us
    rows = sorted(table.items(), key=lambda item: -item[1][0])
    attributed = sum(sum(c.values()) for c in by_stage.values())
    share = attributed / busy if busy else None
    return {
        "what": "device time of GPU kernels" if cuda else "self CPU time of aten ops",
        "profiled_calls": steps,
        "busy_ms_per_frame": round(busy / per_frame, 3),
        "classes": {c: {"ms_per_frame": round(classes[c] / per_frame, 3), "share": round(classes[c] / busy, 4)}
                    for c in CLASSES} if busy else {},
        "classes_by_stage_ms_per_frame": {s: {c: round(v / per_frame, 3) for c, v in sorted(by_stage[s].items())}
                                          for s in (*STAGES, "outside_stages") if s in by_stage},
        "attributed_to_stages_share": round(share, 4) if share is not None else None,
        "attribution_warning": ATTRIBUTION_WARNING if share is not None and share > 1.01 else None,
        "top": [{"name": _short(name), "class": kernel_class(name), "total_ms": round(us / 1000, 3),
                 "ms_per_frame": round(us / per_frame, 4), "calls": calls, "calls_per_step": round(calls / steps, 2),
                 "share": round(us / busy, 4)} for name, (us, calls) in rows[:top]],
        "shaped_calls": [{"op": op, "shapes": shapes[:200], "stage": stage, "ms_per_frame": round(us / per_frame, 4),
                          "calls_per_step": round(calls / steps, 2)}
                         for (op, shapes, stage), (us, calls) in sorted(shaped.items(), key=lambda i: -i[1][0])[:top]],
    }


# ---------------------------------------------------------------------------------------------------- measurements
def count_flops(pipe, call, batch: int) -> dict:
    """FLOPs per frame of each stage on the eager path (one call), and the aten ops the counter has no formula for."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    class OpNames(TorchDispatchMode):
        def __init__(self, seen):
            super().__init__()
            self.seen = seen

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen[str(func.overloadpacket)] += 1
            return func(*args, **(kwargs or {}))

    flops, seen = dict.fromkeys(STAGES, 0), Counter()

    def around(stage, fn, *args, **kwargs):
        with FlopCounterMode(display=False) as counter, OpNames(seen):
            out = fn(*args, **kwargs)
        flops[stage] += counter.get_total_flops()
        return out

    with around_stages(stage_targets(pipe, None), around):
        call()
    registry = {str(op) for op in FlopCounterMode(display=False).flop_registry}
    return {
        "flop_per_frame": {s: v // batch for s, v in flops.items()},
        "gflop_per_frame": {s: round(v / batch / 1e9, 3) for s, v in flops.items()},
        "gflop_per_frame_total": round(sum(flops.values()) / batch / 1e9, 3),
        "counted_ops": {op: n for op, n in sorted(seen.items()) if op in registry},
        "uncounted_ops": {op: n for op, n in sorted(seen.items()) if op not in registry},
        "note": "uncounted ops (elementwise, norms, copies, ...) have no FLOP formula and count as 0",
    }


def cuda_graph_total(step, x, zref, args) -> dict:
    """The same compiled functions replayed as one CUDA graph per call (what DifixFixer runs): total only."""
    import torch

    step.cuda_graphs = True
    t0 = time.perf_counter()
    step(x, zref)  # capture
    torch.cuda.synchronize()
    capture_s = time.perf_counter() - t0
    for _ in range(args.warmup):
        step(x, zref)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(args.iters):
        step(x, zref)
    end.record()
    torch.cuda.synchronize()
    return {"total_ms_per_frame": round(start.elapsed_time(end) / args.iters / args.batch, 3),
            "capture_s": round(capture_s, 2)}


@contextmanager
def layout_copy_skipped(skip: bool) -> Iterator[None]:
    """Within the block (when ``skip``), the VAE leaves its mid blocks' outputs in the layout attention returns (the
    eager path before 2026-12-06 session 18; ``eager_mixed_layout``)."""
    from difix_ns.models.autoencoder import DifixAutoencoderKL

    if not skip:
        yield
        return
    original = DifixAutoencoderKL._in_weight_layout
    DifixAutoencoderKL._in_weight_layout = lambda self, h: h
    try:
        yield
    finally:
        DifixAutoencoderKL._in_weight_layout = original


def run_mode(mode: str, fixer, x, zref, args, cuda: bool, flops: Optional[dict]) -> dict:
    import torch

    from difix_ns.fixers.compiled import CompiledDifixStep

    pipe, entry = fixer.pipeline, {"mode": mode}
    if mode in ("eager", "eager_channels_last", "eager_mixed_layout"):  # what DifixFixer(compile=False) runs
        layout = torch.channels_last if mode == "eager_channels_last" else torch.contiguous_format
        pipe.vae.to(memory_format=layout)
        pipe.unet.to(memory_format=layout)
        step = None
        xe = x.contiguous(memory_format=layout)
        call = functools.partial(pipe.restore, xe, None, prompt=fixer.config.prompt, timestep=fixer.timestep,
                                 ref_latents=zref)
        entry.update(memory_format="channels_last" if mode == "eager_channels_last" else "contiguous",
                     compiled=False, cudnn_benchmark=torch.backends.cudnn.benchmark)
    else:
        step = CompiledDifixStep(pipe, fixer.timestep, fixer.config.prompt, cuda_graphs=False, compile=cuda,
                                 cache_dir=args.compile_cache_dir, group_norm=args.group_norm,
                                 wide_attention=args.wide_attention, upsample=args.upsample, constants=args.constants)
        xd = x.to(fixer.dtype)
        call = functools.partial(step, xd, zref)
        entry.update(memory_format="channels_last", compiled=cuda, cuda_graphs=False, cudnn_benchmark=True,
                     group_norm=step.group_norm, wide_attention=step.wide_attention, upsample=step.upsample,
                     constants=step.constants)
        if not cuda:
            entry["note"] = "CPU smoke: CompiledDifixStep uncompiled (its plumbing, channels_last + SDPA)"
    t0 = time.perf_counter()
    call()  # compiled: compiles this shape (or loads it from the on-disk cache)
    sync(cuda)
    entry["first_call_s"] = round(time.perf_counter() - t0, 2)
    clock = StageClock(cuda)
    with around_stages(stage_targets(pipe, step), clock.around):
        for _ in range(args.warmup):
            call()
        sync(cuda)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        clock.calls.clear()
        t0 = time.perf_counter()
        for _ in range(args.iters):
            clock.timed_call(call)
        sync(cuda)
        entry["host_ms_per_frame"] = round(1000 * (time.perf_counter() - t0) / args.iters / args.batch, 3)
        entry.update(clock.summary(args.batch))
        if cuda:
            entry["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if flops:
            for stage, info in entry["stages"].items():  # FLOP / ms / 1e9 = TFLOP/s
                info["tflop_per_s"] = significant(flops["flop_per_frame"][stage] / info["ms_per_frame"] / 1e9)
            total_flop = sum(flops["flop_per_frame"].values())
            entry["tflop_per_s"] = significant(total_flop / entry["total_ms_per_frame"] / 1e9)
        if args.profile_iters:
            try:
                entry["profile"] = profile(call, mode, args, cuda)
            except Exception as err:  # noqa: BLE001  (keep the timings)
                entry["profile_error"] = _error(err)
    if step is not None and cuda:
        try:
            entry["cuda_graphs_total"] = cuda_graph_total(step, xd, zref, args)
        except Exception as err:  # noqa: BLE001
            entry["cuda_graphs_error"] = _error(err)
    return entry


def profile(call, mode: str, args, cuda: bool) -> dict:
    import torch
    from torch.profiler import ProfilerActivity

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync(cuda)
    with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
        for _ in range(args.profile_iters):
            call()
        sync(cuda)
    tables = profile_tables(prof, cuda, args.profile_iters, args.batch, args.top)
    if args.trace_dir is not None:
        args.trace_dir.mkdir(parents=True, exist_ok=True)
        path = args.trace_dir / f"profile_difix_{mode}.json.gz"
        prof.export_chrome_trace(str(path))
        tables["trace"] = str(path)
    return tables


def significant(value: float, digits: int = 4) -> float:
    """``value`` to ``digits`` significant digits (a tiny CPU model's rate, ~1e-3 TFLOP/s, must not round to 0)."""
    return float(f"{value:.{digits}g}")


def _error(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:500]


def main(argv=None) -> dict:
    args = parse_args(argv)
    cuda, result = start_run(
        args, "Difix single step (VAE encode + UNet at t=199 + x0 + skip decode), per stage and per kernel class",
        "random-weight model in the real architecture: timings only, no restoration quality")
    import importlib.util

    import torch

    from difix_ns.fixer import DifixFixer
    from difix_ns.testing import build_difix_pipeline

    device = "cuda" if cuda else "cpu"
    result |= {
        "resolution_hw": [args.height, args.width],
        "batch": args.batch,
        "refs": args.refs,
        "dtype": args.dtype if cuda else "float32",
        "warmup": args.warmup,
        "iters": args.iters,
        "timing": "CUDA events around each stage and each call" if cuda else "host clock (CPU)",
        "compile_cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
        "modes": {},
    }
    bench = Bench(args, result)
    bench.save()
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (the process default)
    pipe = build_difix_pipeline("real" if cuda else "tiny", reference_mixing=True, seed=0, device=device,
                                vae_lora=importlib.util.find_spec("peft") is not None)
    fixer = DifixFixer.from_pipeline(pipe, dtype=args.dtype, compile=False, model_name="random-weights")
    x = inputs(args, args.batch, 0, device, seed=1)[0] * 2 - 1  # [-1, 1], as DifixFixer passes it
    zref = None
    if args.refs:  # cached reference latents, as DifixFixer passes them to the step
        gen = torch.Generator(device="cpu").manual_seed(2)
        zref = torch.randn(args.batch, args.refs, 4, args.height // 8, args.width // 8, generator=gen)
        zref = zref.to(device=device, dtype=fixer.dtype)
    result["build_s"] = round(bench.elapsed(), 1)
    flops = None
    try:
        restore = functools.partial(fixer.pipeline.restore, x, None, prompt=fixer.config.prompt,
                                    timestep=fixer.timestep, ref_latents=zref)
        flops = result["flops"] = count_flops(fixer.pipeline, restore, args.batch)
    except Exception as err:  # noqa: BLE001
        result["flops"] = {"error": _error(err)}
    bench.save()
    print(json.dumps({"gflop_per_frame": result["flops"].get("gflop_per_frame", result["flops"])}), file=sys.stderr)
    for mode in args.modes:
        if bench.elapsed() > args.budget_s:
            result["modes"][mode] = {"skipped": f"time budget ({args.budget_s:.0f} s) used up"}
        else:
            t0 = time.perf_counter()
            try:
                with layout_copy_skipped(mode == "eager_mixed_layout"):
                    result["modes"][mode] = run_mode(mode, fixer, x, zref, args, cuda, flops)
            except Exception as err:  # noqa: BLE001  (record and go on)
                result["modes"][mode] = {"error": _error(err), "traceback_tail": traceback.format_exc()[-1500:]}
            result["modes"][mode]["wall_s"] = round(time.perf_counter() - t0, 2)
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
        bench.save()
        print(json.dumps({mode: summary(result["modes"][mode])}), file=sys.stderr, flush=True)
    result["total_s"] = round(bench.elapsed(), 1)
    bench.save()
    return result


def summary(entry: dict) -> dict:
    """One log line per mode: totals, stage times, class shares."""
    if "stages" not in entry:
        return {k: v for k, v in entry.items() if k in ("error", "skipped")}
    line = {"ms_per_frame": entry["total_ms_per_frame"],
            "stages": {s: v["ms_per_frame"] for s, v in entry["stages"].items()}}
    if "cuda_graphs_total" in entry:
        line["with_cuda_graphs"] = entry["cuda_graphs_total"]["total_ms_per_frame"]
    classes = entry.get("profile", {}).get("classes", {})
    line["class_share"] = {c: v["share"] for c, v in classes.items() if v["share"] >= 0.01}
    return line


if __name__ == "__main__":
    main()
