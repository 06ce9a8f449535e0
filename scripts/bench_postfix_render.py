"""GPU benchmark: ms per frame of Difix3D+ post-fixing at 576x1024 inside nerfstudio's ns-render loop.

Renders the same camera trajectory through ``nerfstudio.scripts.render._render_trajectory_video`` (the function behind
``ns-render camera-path|interpolate``) with the ns-difix-render hooks installed, once plain (``rgb``) and once
post-fixed (``rgb_fixed``), for a tiny and an SD-Turbo-sized random-weight Difix (``difix_ns.testing``; random weights
give timings only, not quality), in the nvidia/difix_ref layout (the nearest training view as reference) and, with
``--checkpoints difix``, the nvidia/difix one (no reference). ``postfix_ms_per_frame`` = fixed minus plain, per
frame. The fixer-only time per frame (one ``DifixFixer.fix`` call per batch, CUDA-synchronised) is reported too,
and render + fix through the hook alone (no file writing), with the hook working one batch ahead
(``render_plus_fix_*``, ``DifixRenderHook.work_ahead``) and without (``render_plus_fix_not_ahead_*``), and at batch 1
with nothing planned, each frame's camera asked for as the viewer asks (``viewer_unplanned_*``, with the largest
difference from the planned frames: 0 expected); ``--work-ahead`` (default) times the ns-render passes with it.

Scene: ``--load-config`` of an existing run, or a short splatfacto run trained here on ``--data`` (quarter-res fox).

    source .device/setup.sh && python scripts/bench_postfix_render.py --data .device/data/fox \
        --out $OUT/bench_postfix_render.json
"""
import atexit
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import List, Literal, Optional

import tyro


Dtype = Literal["float32", "bfloat16", "float16"]


@dataclass
class PostfixRenderConfig:
    """Options of the ns-render post-fixing benchmark."""

    out: Path
    """JSON file to write"""
    data: Path = Path(".device/data/fox")
    """nerfstudio scene (images_4 + transforms.json)"""
    load_config: Optional[Path] = None
    """existing run's config.yml (skips training)"""
    train_iters: int = 300
    """iterations of the short splatfacto run"""
    frames: int = 64
    """frames per timed render (a pass starts with no batch fixed and ends writing the last batch with nothing left to
    overlap: on an H100 at batch 8 that fill and drain cost ~150 ms a pass, a quarter of a 16-frame pass and under a
    tenth of a 64-frame one)"""
    height: int = 576
    """rendered frame height"""
    width: int = 1024
    """rendered frame width"""
    dtype: Dtype = "bfloat16"
    """fixer dtype"""
    batch_sizes: List[int] = field(default_factory=lambda: [1, 4])
    """fixer batch sizes"""
    sizes: List[Literal["tiny", "real"]] = field(default_factory=lambda: ["tiny", "real"])
    """random-weight fixer sizes (tiny, SD-Turbo-sized real)"""
    checkpoints: List[Literal["difix_ref", "difix"]] = field(default_factory=lambda: ["difix_ref"])
    """checkpoint layouts to time (random weights): difix_ref (nvidia/difix_ref: the nearest training view as
    reference, what ns-difix-render uses by default) and/or difix (nvidia/difix: no reference); the JSON's models are
    keyed SIZE for difix_ref and SIZE_difix for difix"""
    allow_cpu: bool = False
    """smoke-test the script without a GPU (tiny model only)"""
    compile: bool = True
    """fast path (--no-compile: eager fixer)"""
    log_recompiles: bool = True
    """print torch.compile's reason for every recompile (guard failures) to stderr"""
    work_ahead: bool = True
    """time the ns-render passes with the render hook working one batch ahead (DifixRenderHook.work_ahead; the hook
    alone is timed both ways regardless)"""
    compile_cache_dir: Optional[str] = None
    """TORCHINDUCTOR_CACHE_DIR (share it with bench_difix.py so shapes it compiled load from disk)"""
    profile_dir: Optional[Path] = None
    """after the timed passes of each batch size, one more ns-render pass (references cached) under torch.profiler:
    where its wall time goes (inside the hook: renders, reference latents, fixer calls; outside: ns-render's own
    per-frame work), how long the GPU was idle, the top CPU ops; its Chrome trace (gzipped) goes to this folder"""


def parse_args(argv: Optional[List[str]] = None) -> PostfixRenderConfig:
    args = tyro.cli(PostfixRenderConfig, args=argv, description=__doc__, config=(tyro.conf.FlagCreatePairsOff,))
    for option, values in (("--batch-sizes", args.batch_sizes), ("--sizes", args.sizes),
                           ("--checkpoints", args.checkpoints)):
        if not values:
            sys.exit(f"error: {option} needs at least one value")
    uneven = [b for b in args.batch_sizes if b < 1 or args.frames % b]
    if uneven:  # a short last batch is a new shape: one more compile of about two minutes on a GPU
        sys.exit(f"error: --frames {args.frames} must be a positive multiple of every --batch-sizes value "
                 f"(got {uneven})")
    return args


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def train_run(data: Path, work: Path, iters: int, cpu: bool = False) -> Path:
    if not (data / "transforms.json").is_file():
        raise SystemExit(f"error: --data {data} has no transforms.json")
    cmd = ["ns-train", "splatfacto", "--data", str(data), "--output-dir", str(work), "--experiment-name", "bench",
           "--timestamp", "run", "--max-num-iterations", str(iters), "--vis", "tensorboard",
           "--steps-per-eval-image", "100000", "--steps-per-eval-batch", "100000", "--steps-per-eval-all-images",
           "100000"]
    if cpu:
        cmd += ["--machine.device-type", "cpu", "--pipeline.datamanager.cache-images", "gpu",
                "--pipeline.model.random-init", "True", "--pipeline.model.num-random", "400"]
    cmd += ["nerfstudio-data", "--downscale-factor", "4"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    config = work / "bench" / "splatfacto" / "run" / "config.yml"
    if proc.returncode != 0 or not config.is_file():
        raise SystemExit(f"ns-train failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return config


def save_model(size: str, folder: Path, reference_mixing: bool = True) -> Path:
    """A random-weight difix_ref (``reference_mixing``) or difix in the HF layout (tiny: difix_ns.testing; real:
    SD-Turbo-sized, saved fp16)."""
    import torch

    from difix_ns.testing import build_difix_pipeline, save_tiny_difix, write_tiny_tokenizer

    if size == "tiny":
        return save_tiny_difix(folder, reference_mixing=reference_mixing)
    pipe = build_difix_pipeline("real", reference_mixing=reference_mixing, device="cuda")
    pipe.to(torch.float16)
    pipe.save_pretrained(folder)
    for extra in ("tokenizer.json", "chat_template.jinja"):
        if (folder / "tokenizer" / extra).exists():
            (folder / "tokenizer" / extra).unlink()
    write_tiny_tokenizer(folder / "tokenizer")
    del pipe
    torch.cuda.empty_cache()
    return folder


def bench_cameras(pipeline, n: int, height: int, width: int):
    """n interpolated poses through the training cameras, with intrinsics set for height x width."""
    from difix_ns.render.trajectory import trajectory_cameras

    train = pipeline.datamanager.train_dataset.cameras
    per_pair = max(1, -(-(n - 1) // max(1, len(train) - 1)))
    cams = trajectory_cameras(train, per_pair, "spline")[:n]
    scale = height / float(train.height[0])
    cams.fx[:] = train.fx[0] * scale
    cams.fy[:] = train.fy[0] * scale
    cams.cx[:] = width / 2.0
    cams.cy[:] = height / 2.0
    cams.width[:] = width
    cams.height[:] = height
    return cams


def compile_events() -> dict:
    """Counts that tell a compile or a CUDA-graph capture happened (torch._dynamo's unique graphs and calls)."""
    try:
        from torch._dynamo.utils import counters
    except Exception:  # noqa: BLE001  (private API: diagnostics only)
        return {}
    stats = counters["stats"]
    return {"dynamo_graphs": int(stats["unique_graphs"]), "dynamo_calls": int(stats["calls_captured"])}


def fast_path_state(fixer) -> dict:
    """Shapes the fixer has seen and the CUDA graphs its fast path holds (diagnostics for an unexpected compile)."""
    fast = getattr(fixer, "_fast", None)
    cache = getattr(fixer, "_ref_cache", None)
    return {
        "shapes_seen": [str(k) for k in getattr(fixer, "_shape_frames", {})],
        "cuda_graphs": [str(k) for k in getattr(fast, "_graphs", {})] if fast else [],
        "reference_cache_misses": getattr(cache, "misses", None),
        **compile_events(),
    }


def time_render(render_module, pipeline, cameras, names, out_dir: Path) -> float:
    sync()
    start = time.perf_counter()
    render_module._render_trajectory_video(
        pipeline, cameras, output_filename=out_dir / "frames.mp4", rendered_output_names=names,
        output_format="images", image_format="jpeg", seconds=1.0,
    )
    sync()
    return time.perf_counter() - start


class _Timed:
    """Wraps a callable and adds up the wall seconds spent in it (diagnostics of the profiled pass)."""

    def __init__(self, fn):
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


def _busy_seconds(intervals: List[tuple]) -> float:
    """Length of the union of [start, end) intervals (microseconds in, seconds out)."""
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total / 1e6


def profile_ns_render(render_module, pipeline, hook, cameras, out_dir: Path, trace: Optional[Path]) -> dict:
    """One ns-render pass under torch.profiler with the hook's parts timed: see ``--profile-dir``."""
    import gzip

    import torch
    from torch.profiler import ProfilerActivity, profile

    fixer = hook.fixer
    parts = {  # name -> (object, attribute) timed by an instance attribute that shadows it during the pass
        "hook_total": (pipeline.model, "get_outputs_for_camera"),
        "renders": (hook, "original"),
        "launch_batches": (hook, "_launch"),
        "fix_calls": (hook, "add_fixed"),
        "reference_latents": (fixer, "_reference_latents"),
        "fast_step_calls": (fixer, "_restore"),
    }
    before = {name: obj.__dict__.get(attr) for name, (obj, attr) in parts.items()}
    timed = {name: _Timed(getattr(obj, attr)) for name, (obj, attr) in parts.items()}
    for name, (obj, attr) in parts.items():
        obj.__dict__[attr] = timed[name]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    try:
        with profile(activities=activities) as prof:
            wall = time_render(render_module, pipeline, cameras, ["rgb_fixed"], out_dir)
    finally:
        for name, (obj, attr) in parts.items():
            if before[name] is None:
                obj.__dict__.pop(attr, None)
            else:
                obj.__dict__[attr] = before[name]
    n = cameras.shape[0]
    result = {"wall_ms_per_frame": round(wall / n * 1000, 2)}
    for name, t in timed.items():
        result[f"{name}_ms_per_frame"] = round(t.seconds / n * 1000, 2)
        result[f"{name}_calls"] = t.calls
    result["outside_hook_ms_per_frame"] = round((wall - timed["hook_total"].seconds) / n * 1000, 2)
    events = prof.events()
    kernels = [(e.time_range.start, e.time_range.end) for e in events
               if getattr(e, "device_type", None) is not None and e.device_type.name == "CUDA"]
    if kernels:
        busy = _busy_seconds(kernels)
        result["gpu_kernel_events"] = len(kernels)
        result["gpu_busy_ms_per_frame"] = round(busy / n * 1000, 2)
        result["gpu_idle_share_of_wall"] = round(max(0.0, 1 - busy / wall), 3)
        # when the GPU waited for the host, and when the host waited for the GPU (ms from the first kernel)
        origin, gaps, end = min(a for a, _ in kernels), [], None
        for a, b in sorted(kernels):
            if end is not None and a - end > 2000:
                gaps.append([round((end - origin) / 1000, 1), round((a - end) / 1000, 1)])
            end = b if end is None else max(end, b)
        result["gpu_gaps_over_2ms"] = gaps  # [start, length]
        waits = [e for e in events if e.name in ("cudaMemcpyAsync", "cudaStreamSynchronize", "cudaDeviceSynchronize")
                 and e.time_range.end - e.time_range.start > 20000]
        result["host_waits_over_20ms"] = [[e.name, round((e.time_range.start - origin) / 1000, 1),
                                           round((e.time_range.end - e.time_range.start) / 1000, 1)] for e in waits]
    top = sorted(prof.key_averages(), key=lambda a: a.self_cpu_time_total, reverse=True)[:25]
    result["top_cpu_ops"] = [{"name": a.key[:120], "self_cpu_ms_per_frame": round(a.self_cpu_time_total / 1000 / n, 3),
                              "calls": a.count} for a in top]
    if trace is not None:
        trace.parent.mkdir(parents=True, exist_ok=True)
        raw = trace.with_suffix("")
        prof.export_chrome_trace(str(raw))
        with open(raw, "rb") as src, gzip.open(trace, "wb") as dst:
            shutil.copyfileobj(src, dst)
        raw.unlink()
        result["trace"] = trace.name
    return result


def main() -> None:
    args = parse_args()
    if args.log_recompiles:
        import torch

        torch._logging.set_logs(recompiles=True)
    if args.compile_cache_dir:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(args.compile_cache_dir).resolve())
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        raise SystemExit("error: this benchmark needs a CUDA GPU (--allow-cpu runs a CPU smoke test)")
    if not cuda:
        from difix_ns.render.runtime import prepare_runtime

        prepare_runtime()
        args.sizes = ["tiny"]
    device = "cuda" if cuda else "cpu"
    import nerfstudio.scripts.render as render_module
    from nerfstudio.utils.eval_utils import eval_setup

    from difix_ns.fixer import DifixFixer, DifixFixerConfig
    from difix_ns.render import settings
    from difix_ns.render.runtime import batched_rendering, ensure_ffmpeg
    from difix_ns.render.postfix import install_render_fix

    try:
        ensure_ffmpeg()
    except RuntimeError as err:  # frames are written as images below, so ffmpeg is optional here
        print(f"note: {err}", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="bench_postfix_"))
    atexit.register(shutil.rmtree, work, True)  # scratch runs and frames; results go to --out
    t0 = time.time()
    config = args.load_config or train_run(args.data, work / "runs", args.train_iters, cpu=not cuda)
    train_s = time.time() - t0
    _, pipeline, _, _ = eval_setup(config, test_mode="test")
    hook = install_render_fix(pipeline, enabled=False, viewer_controls=False)
    cameras = bench_cameras(pipeline, args.frames, args.height, args.width)
    n = cameras.shape[0]
    result = {
        "gpu": torch.cuda.get_device_name(0) if cuda else "none (CPU smoke test)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "resolution": [args.height, args.width],
        "frames": n,
        "dtype": args.dtype,
        "scene": str(config),
        "train_seconds": round(train_s, 1) if args.load_config is None else None,
        "note": "random-weight Difix models: timings only, no quality claim",
        "compile": args.compile,
        "compile_cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
        "models": {},
    }

    def save() -> None:  # after every measurement: a run cut by its timeout (compiling takes minutes) keeps its rows
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))

    hook.enabled = False
    time_render(render_module, pipeline, cameras[:2], ["rgb"], work / "warm")  # warm-up (kernels, allocator)
    with batched_rendering(render_module, [hook]):
        plain_s = time_render(render_module, pipeline, cameras, ["rgb"], work / "plain")
    result["plain_render_ms_per_frame"] = round(plain_s / n * 1000, 2)
    save()

    for size, checkpoint in [(size, checkpoint) for size in args.sizes for checkpoint in args.checkpoints]:
        name = size if checkpoint == "difix_ref" else f"{size}_{checkpoint}"
        model_dir = save_model(size, work / f"{checkpoint}_{size}", reference_mixing=checkpoint == "difix_ref")
        # Loaded once per size; compiled from the first frame (compile_min_frames=0) so warm-up renders compile.
        shared = DifixFixer(DifixFixerConfig(model_name=str(model_dir), dtype=args.dtype, compile=args.compile,
                                             compile_min_frames=0))
        entry = {}
        for batch in args.batch_sizes:
            shared.config = replace(shared.config, batch_size=batch)
            settings.enable_render_fix(True)
            hook.enabled = True
            hook.fixer_config = None
            hook.fixer_factory = lambda: shared
            hook.work_ahead = args.work_ahead
            with batched_rendering(render_module, [hook]):
                t_warm = time.perf_counter()
                # load + warm with exactly one batch: each new batch shape compiles for about two minutes on a GPU
                time_render(render_module, pipeline, cameras[:batch], ["rgb_fixed"], work / "warm")
                warm_s = time.perf_counter() - t_warm
                after_warmup = fast_path_state(hook.fixer)
                calls = hook.fix_calls
                fixed_s = time_render(render_module, pipeline, cameras, ["rgb_fixed"], work / f"{name}_{batch}")
                calls = hook.fix_calls - calls
                after_timed = fast_path_state(hook.fixer)
                # the same render again: every reference latent is cached now (the first pass encodes each new
                # reference once), so the difference between the two is reference encoding
                again_s = time_render(render_module, pipeline, cameras, ["rgb_fixed"], work / f"{name}_{batch}_again")
                # and once more with work-ahead switched the other way (the A/B of ns-render itself)
                hook.work_ahead = not args.work_ahead
                other_s = time_render(render_module, pipeline, cameras, ["rgb_fixed"], work / f"{name}_{batch}_other")
                hook.work_ahead = args.work_ahead
            # render + post-fix through the hook alone (no video/image writing), planned as ns-render plans it;
            # once without and once with the next batch rendered and queued while the current one is fixed (default)
            def hook_pass():  # (seconds, frames) of every camera asked for through the hook, in order
                sync()
                start = time.perf_counter()
                fixed = [hook.get_outputs_for_camera(cameras[i : i + 1].to(device))["rgb_fixed"] for i in range(n)]
                sync()
                return time.perf_counter() - start, torch.stack(fixed).float()

            hook_s, frames = {}, {}
            for ahead in (False, True):
                hook.work_ahead = ahead
                hook.plan(cameras)
                hook_s[ahead], frames[ahead] = hook_pass()
                hook.plan(None)
            ahead_diff = (frames[True] - frames[False]).abs().max().item()  # working ahead must not change a frame
            viewer_s, viewer_diff = None, None
            if batch == 1:  # nothing planned, as the viewer asks for frames (it fixes one at a time: batch 1 only)
                viewer_s, viewer_frames = hook_pass()
                viewer_diff = (viewer_frames - frames[False]).abs().max().item()
                del viewer_frames
            del frames
            hook.work_ahead = args.work_ahead
            # fixer alone on a batch of renders of the same size
            fixer = hook.fixer
            images = torch.rand(batch, 3, args.height, args.width, device=device)
            views = 1 if fixer.uses_references else 0  # the hook gives a reference only to a difix_ref checkpoint
            refs = torch.rand(batch, views, 3, args.height, args.width, device=device) if views else None
            fixer.fix(images, refs)
            sync()
            reps = max(2, 8 // batch)
            start = time.perf_counter()
            for _ in range(reps):
                fixer.fix(images, refs)
            sync()
            fixer_ms = (time.perf_counter() - start) / (reps * batch) * 1000
            # a reference seen for the first time has its latent encoded once (one view per encoder call): the same
            # fix with `batch` new references, less the fix with cached ones, is that cost per reference
            miss_ms = None
            if refs is not None:
                fresh = [torch.rand_like(refs) for _ in range(reps)]
                sync()
                start = time.perf_counter()
                for new_refs in fresh:
                    fixer.fix(images, new_refs)
                sync()
                miss_ms = ((time.perf_counter() - start) / reps * 1000 - fixer_ms * batch) / batch
                del fresh
            entry[f"batch_{batch}"] = {
                "ns_render_ms_per_frame": round(fixed_s / n * 1000, 2),
                "ns_render_fps": round(n / fixed_s, 1),
                "ns_render_refs_cached_ms_per_frame": round(again_s / n * 1000, 2),
                "ns_render_refs_cached_fps": round(n / again_s, 1),
                "render_plus_fix_ms_per_frame": round(hook_s[True] / n * 1000, 2),
                "render_plus_fix_fps": round(n / hook_s[True], 1),
                "render_plus_fix_not_ahead_ms_per_frame": round(hook_s[False] / n * 1000, 2),
                "render_plus_fix_not_ahead_fps": round(n / hook_s[False], 1),
                "viewer_unplanned_ms_per_frame": None if viewer_s is None else round(viewer_s / n * 1000, 2),
                "viewer_unplanned_fps": None if viewer_s is None else round(n / viewer_s, 1),
                "viewer_unplanned_max_abs_diff": viewer_diff,
                "ns_render_work_ahead": args.work_ahead,
                "ns_render_refs_cached_other_work_ahead_ms_per_frame": round(other_s / n * 1000, 2),
                "work_ahead_max_abs_diff": ahead_diff,
                "warmup_render_s": round(warm_s, 1),
                "compiled": bool(shared.compiled),
                "postfix_ms_per_frame": round((fixed_s - plain_s) / n * 1000, 2),
                "fixer_only_ms_per_frame": round(fixer_ms, 2),
                "references_per_frame": views,
                "reference_first_use_ms": None if miss_ms is None else round(miss_ms, 2),
                "fixer_calls": calls,
                # a timed render slower than the hook-only loop below means something compiled during it: these
                # say what (new shapes, new CUDA graphs, dynamo graphs; the 2026-12-05 H100 batch-8 row)
                "fast_path_after_warmup": after_warmup,
                "fast_path_after_timed_render": after_timed,
                "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            }
            print(name, batch, entry[f"batch_{batch}"], flush=True)
            result["models"][name] = entry
            save()
            if args.profile_dir is not None:
                hook.work_ahead = args.work_ahead
                with batched_rendering(render_module, [hook]):
                    entry[f"batch_{batch}"]["ns_render_profile"] = profile_ns_render(
                        render_module, pipeline, hook, cameras, work / f"{name}_{batch}_profiled",
                        args.profile_dir / f"postfix_ns_render_{name}_b{batch}.json.gz")
                print(name, batch, entry[f"batch_{batch}"]["ns_render_profile"], flush=True)
                save()
        hook.release_fixer()  # drop the model before loading the next size
        if cuda:
            torch.cuda.empty_cache()
        entry["dtype_effective"] = str(shared.dtype).replace("torch.", "")  # CPU always runs float32
        result["models"][name] = entry
    settings.enable_render_fix(None)
    save()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "4")
    sys.exit(main())
