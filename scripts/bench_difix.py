"""Benchmark the Difix forward pass side by side: plain-diffusers anchor, this project's eager path, its fast path.

GPU (the numbers for the README; about 4-5 minutes on an H200 with a cold compile cache):
    python scripts/bench_difix.py --out $OUT/bench_difix.json --compile-cache-dir /tmp/difix_compile_cache

CPU smoke run (tiny architecture, 64x96; the fast path runs its plumbing uncompiled; timings mean nothing):
    python scripts/bench_difix.py --smoke-cpu --out /tmp/bench_difix_smoke.json

The fast path's compiled formulation (per-channel GroupNorm, two-GEMM VAE attention, transposed-convolution upsampling
with the decoder LoRA merged) against eager, float32 on the CPU (inductor's C++ backend; about 3 minutes on 2 cores;
``output_differences_on_0_1`` in the JSON):
    python scripts/bench_difix.py --smoke-cpu --smoke-compile --out /tmp/bench_difix_compiled_cpu.json

All models have the real SD-Turbo-sized architecture (``difix_ns.testing``) with RANDOM weights: the numbers are
timings (and numerical differences between code paths), not restoration quality. Measured at 576x1024:

* ``anchor``: stock diffusers ``AutoencoderKL`` + ``UNet2DConditionModel`` (encode -> UNet at t=199 -> x0 ->
  decode), diffusers defaults, eager; bf16 batch 1 and 8, fp32 batch 1.
* ``eager``: ``DifixFixer(compile=False)`` (LoRA merged, references cached), fp32 and bf16, batch 1 and 8,
  0 and 1 reference view; plus one reference *without* the latent cache (what a reference cost before).
* ``fast``: ``DifixFixer`` defaults on CUDA (compiled static-shape graphs replayed as CUDA graphs, channels_last,
  references cached), bf16, batch 1 and 8, V = 0 and 1; ``first_call_s`` is the compile + capture time of that
  shape (with the compile cache dir given, a second process finds most of it on disk); an ablation without CUDA
  graphs; the bf16 fast-vs-eager output difference (mean / max abs on [0,1]).

Every measurement is wrapped: an error is recorded in the JSON and the run goes on; the JSON is rewritten after
each measurement, so a run cut short still leaves its numbers. ``--budget-s`` skips what would start too late.
"""

import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, List, Literal, Optional

import tyro

if __package__ in (None, ""):  # `python scripts/bench_difix.py` from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


Dtype = Literal["float32", "bfloat16", "float16"]


@dataclass
class BenchDifixConfig:
    """Options of the Difix forward-pass benchmark."""

    out: Optional[Path] = None
    """JSON file (rewritten after every measurement)"""
    smoke: Annotated[bool, tyro.conf.arg(name="smoke-cpu", aliases=("--quick",))] = False
    """CPU smoke run: tiny architecture, 64x96, 1 iteration, fast path uncompiled"""
    smoke_compile: bool = False
    """with --smoke-cpu: compile the fast path on the CPU (batch 1, no reference; every VAE attention head through the
    two GEMMs, the tiny model's being narrow; the decoder LoRA merged, as on CUDA, so its upsamplers take the
    transposed convolution) to compare its formulation with eager in float32"""
    height: int = 576
    """image height"""
    width: int = 1024
    """image width"""
    batches: List[int] = field(default_factory=lambda: [1, 8])
    """batch sizes"""
    refs: List[int] = field(default_factory=lambda: [0, 1])
    """reference views per frame"""
    eager_dtypes: List[Dtype] = field(default_factory=lambda: ["float32", "bfloat16"])
    """dtypes of the eager path"""
    fast_dtypes: List[Dtype] = field(default_factory=lambda: ["bfloat16"])
    """dtypes of the compiled path (each dtype compiles every shape again)"""
    warmup: int = 2
    """untimed calls before each timed setting"""
    iters: int = 10
    """timed calls per setting (batch 8: half, at least 3 unless fewer are asked)"""
    compile_cache_dir: Optional[str] = None
    """TORCHINDUCTOR_CACHE_DIR for this run (share it with bench_postfix_render.py)"""
    budget_s: float = 285.0
    """skip measurements that would start after this many seconds"""
    anchor: bool = True
    """measure the stock-diffusers anchor (--no-anchor skips it)"""
    eager: bool = True
    """measure the eager path (--no-eager skips it)"""
    group_norm: Literal["auto", "channel_stats", "channel_sums", "stock"] = "auto"
    """GroupNorm in the fast path's compiled graphs (DifixFixerConfig.compiled_group_norm)"""
    wide_attention: Literal["matmul", "sdpa"] = "matmul"
    """the VAE's wide attention head in the fast path's compiled graphs (DifixFixerConfig.compiled_wide_attention)"""
    upsample: Literal["phases", "stock"] = "phases"
    """upsampling convolutions in the fast path's compiled graphs (DifixFixerConfig.compiled_upsample)"""
    constants: Literal["inputs", "folded", "frozen"] = "inputs"
    """the UNet's conditioning-only work in the fast path's graphs (DifixFixerConfig.compiled_constants)"""
    graphs_ablation: bool = True
    """time the fast path's batch-1 step without CUDA graphs as well (--no-graphs-ablation skips it: without V=0 in
    --refs or 1 in --batches its shape is one more compile)"""
    inductor: List[str] = field(default_factory=list)
    """inductor settings for the fast path's graphs as NAME=VALUE (e.g. combo_kernels=True aggressive_fusion=True):
    set on torch._inductor.config before anything compiles, recorded in the JSON; give each setting its own
    --compile-cache-dir to A/B it from a cold cache"""


def parse_args(argv=None) -> BenchDifixConfig:
    args = tyro.cli(BenchDifixConfig, args=argv, description=__doc__, config=(tyro.conf.FlagCreatePairsOff,))
    for option, values in (("--batches", args.batches), ("--refs", args.refs)):
        if not values:
            sys.exit(f"error: {option} needs at least one value")
    if args.smoke_compile and not args.smoke:
        sys.exit("error: --smoke-compile needs --smoke-cpu (on a GPU the fast path is always compiled)")
    if args.smoke:
        args.height, args.width, args.batches, args.warmup, args.iters = 64, 96, [1, 2], 1, 1
        args.eager_dtypes, args.fast_dtypes = ["float32"], ["float32"]
    if args.smoke_compile:  # each shape compiles for minutes on a CPU
        args.batches, args.refs = [1], [0]
    inductor_settings(args.inductor)  # a wrong name or value stops here, before any measurement
    return args


def inductor_settings(pairs: List[str]) -> dict:
    """``["NAME=VALUE", ...]`` -> ``{name: value}``, each name an existing ``torch._inductor.config`` setting and each
    value (a Python literal, else the string itself) of that setting's type; exits with an error naming the option
    otherwise."""
    import ast

    import torch._inductor.config as inductor_config

    settings = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            sys.exit(f"error: --inductor {pair!r}: expected NAME=VALUE, e.g. combo_kernels=True")
        try:
            current = getattr(inductor_config, name)
        except AttributeError:
            sys.exit(f"error: --inductor {pair!r}: torch._inductor.config has no setting {name!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        if current is not None and not isinstance(value, type(current)):
            sys.exit(f"error: --inductor {pair!r}: {name} takes a {type(current).__name__} (now {current!r})")
        settings[name] = value
    return settings


class Bench:
    """Result JSON + the wrapped, budgeted measurements."""

    def __init__(self, args, result: dict):
        self.args, self.result, self.start = args, result, time.perf_counter()

    def save(self) -> None:
        if self.args.out is not None:
            self.args.out.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.args.out.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.result, indent=2) + "\n")
            tmp.replace(self.args.out)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def measure(self, section: str, name: str, fn, **labels) -> dict:
        import torch

        entry = {"name": name, **labels}
        if self.elapsed() > self.args.budget_s:
            entry["skipped"] = f"time budget ({self.args.budget_s:.0f} s) used up"
        else:
            t0 = time.perf_counter()
            try:
                entry.update(fn())
            except Exception as err:  # noqa: BLE001  (record and go on)
                entry["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:500]
                entry["traceback_tail"] = traceback.format_exc()[-1500:]
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                    torch.cuda.empty_cache()
            entry["wall_s"] = round(time.perf_counter() - t0, 2)
        self.result.setdefault(section, []).append(entry)
        self.save()
        print(json.dumps({k: v for k, v in entry.items() if k != "traceback_tail"}), file=sys.stderr, flush=True)
        return entry


def sync(cuda: bool) -> None:
    import torch

    if cuda:
        torch.cuda.synchronize()


def time_calls(call, frames: int, warmup: int, iters: int, cuda: bool) -> dict:
    """Warm up, then time ``iters`` calls (host clock around synchronised calls)."""
    import torch

    for _ in range(warmup):
        call()
    sync(cuda)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times, out = [], None
    for _ in range(iters):
        t0 = time.perf_counter()
        out = call()
        sync(cuda)
        times.append(time.perf_counter() - t0)
    times.sort()
    stats = {
        "ms_per_frame": round(1000 * sum(times) / len(times) / frames, 2),
        "ms_per_frame_median": round(1000 * times[len(times) // 2] / frames, 2),
        "ms_per_batch_min": round(1000 * times[0], 2),
        "output_finite": bool(torch.isfinite(out.float()).all()),
    }
    if cuda:
        stats["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        stats["reserved_gib"] = round(torch.cuda.memory_reserved() / 2**30, 2)
    return stats


def iters_for(args, batch: int) -> int:
    return max(min(3, args.iters), args.iters // 2) if batch >= 8 else args.iters


# ---------------------------------------------------------------------------------------------------- anchor
def build_anchor(size: str, device: str):
    """Stock diffusers VAE + UNet of the SD-Turbo architecture (the VAE without Difix's skips/LoRA)."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    from difix_ns.models.configs import real_configs, tiny_configs

    cfg = real_configs() if size == "real" else tiny_configs(1000)
    vae_cfg = {k: v for k, v in cfg["vae"].items() if k not in ("lora_rank", "lora_alpha", "gamma", "ignore_skip")}
    torch.manual_seed(0)
    with torch.device(device):
        vae = AutoencoderKL.from_config(vae_cfg).eval().requires_grad_(False)
        unet = UNet2DConditionModel.from_config(cfg["unet"]).eval().requires_grad_(False)
    scheduler = DDPMScheduler.from_config(cfg["scheduler"])
    emb = torch.randn(1, 77, unet.config.cross_attention_dim, device=device)
    return vae, unet, scheduler, emb


def anchor_step(vae, unet, scheduler, emb, x, timestep: int = 199):
    import torch

    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode() * vae.config.scaling_factor
        t = torch.full((x.shape[0],), timestep, device=x.device, dtype=torch.long)
        eps = unet(z, t, encoder_hidden_states=emb.expand(x.shape[0], -1, -1)).sample
        abar = scheduler.alphas_cumprod[timestep].to(x.device)
        x0 = (z.float() - (1 - abar).sqrt() * eps.float()) / abar.sqrt()
        return vae.decode(x0.to(z.dtype) / vae.config.scaling_factor).sample


def run_anchor(bench: Bench, size: str, device: str, cuda: bool) -> None:
    import torch

    args = bench.args
    built = {}

    def build():
        t0 = time.perf_counter()
        built["m"] = build_anchor(size, device)
        return {"build_s": round(time.perf_counter() - t0, 2)}

    bench.measure("anchor", "build", build)
    if "m" not in built:
        return
    vae, unet, scheduler, emb = built["m"]
    plan = [("float32", 1)] if "float32" in args.eager_dtypes else []
    plan += [("bfloat16", b) for b in args.batches] if cuda else []
    for dtype_name, batch in plan:
        dtype = getattr(torch, dtype_name)

        def fn(dtype=dtype, batch=batch):
            vae.to(dtype), unet.to(dtype)
            x = (torch.rand(batch, 3, args.height, args.width, device=device) * 2 - 1).to(dtype)
            e = emb.to(dtype)
            return time_calls(lambda: anchor_step(vae, unet, scheduler, e, x), batch, args.warmup,
                              iters_for(args, batch), cuda)

        bench.measure("anchor", f"anchor_{dtype_name}_b{batch}", fn, dtype=dtype_name, batch=batch, refs=0)
    vae = unet = None  # the models go before the Difix paths load theirs
    built.clear()
    if cuda:
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------- difix paths
def inputs(args, batch: int, refs: int, device: str, seed: int):
    import torch

    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.rand(batch, 3, args.height, args.width, generator=gen).to(device)
    r = torch.rand(batch, refs, 3, args.height, args.width, generator=gen).to(device) if refs else None
    return x, r


def fixer_runs(bench: Bench, section: str, fixer, dtype_name: str, cuda: bool, device: str, first_call: bool):
    """batch x refs grid through ``fixer.fix``; refs are the same tensors every call (cached after the first)."""
    args = bench.args
    for refs in args.refs:
        for batch in args.batches:
            def fn(batch=batch, refs=refs):
                x, r = inputs(args, batch, refs, device, seed=100 * batch + refs)
                stats = {}
                if first_call:  # compile + capture of this shape (and the references' encoding)
                    t0 = time.perf_counter()
                    fixer.fix(x, r)
                    sync(cuda)
                    stats["first_call_s"] = round(time.perf_counter() - t0, 2)
                stats.update(time_calls(lambda: fixer.fix(x, r), batch, args.warmup, iters_for(args, batch), cuda))
                if section == "fast":
                    parts = fast_path_parts(fixer, x, r, args, batch, cuda)
                    if "step_ms_per_frame" in parts:
                        parts["glue_ms_per_frame"] = round(stats["ms_per_frame"] - parts["step_ms_per_frame"], 2)
                    stats.update(parts)
                return stats

            bench.measure(section, f"{section}_{dtype_name}_b{batch}_v{refs}", fn, dtype=dtype_name, batch=batch,
                          refs=refs, cached_refs=bool(refs))


def fast_path_parts(fixer, x, r, args, batch: int, cuda: bool) -> dict:
    """Where a fast-path ``fixer.fix(x, r)`` call's time goes, in the same process: the compiled step alone
    (``CompiledDifixStep.__call__`` on the prepared input and the cached latents: copies into the captured graph's
    inputs, the replay, the output's copy) and ``fix`` with the references encoded beforehand (no content hashes
    read back in the call); ``glue_ms_per_frame`` = ``fix`` minus the step (resizing and scaling around the step,
    the reference lookup and its wait, the output's conversion)."""
    import torch

    step = fixer._fast
    if step in (None, False):
        return {}
    iters = iters_for(args, batch)
    parts = {}
    encoded = fixer.encode_references(r, tuple(x.shape[-2:])) if r is not None else None
    if encoded is not None:
        parts["fix_encoded_refs_ms_per_frame"] = time_calls(lambda: fixer.fix(x, encoded), batch, args.warmup, iters,
                                                            cuda)["ms_per_frame"]
    prepared = (x.to(fixer.device, torch.float32) * 2 - 1).to(fixer.dtype)  # sizes here are multiples of 8
    latents = encoded.latents if encoded is not None else None
    parts["step_ms_per_frame"] = time_calls(lambda: step(prepared, latents), batch, args.warmup, iters,
                                            cuda)["ms_per_frame"]
    return parts


def output_diff(a, b) -> dict:
    d = (a.float() - b.float()).abs()
    return {"mean_abs": float(d.mean()), "max_abs": float(d.max()), "p99_abs": float(d.flatten().kthvalue(
        max(1, int(0.99 * d.numel()))).values)}


def run_difix(bench: Bench, size: str, device: str, cuda: bool) -> None:
    from difix_ns.fixer import DifixFixer
    from difix_ns.testing import build_difix_pipeline

    args = bench.args
    has_peft = importlib.util.find_spec("peft") is not None
    state = {}

    def build():
        t0 = time.perf_counter()
        state["pipe"] = build_difix_pipeline(size, reference_mixing=True, seed=0, device=device, vae_lora=has_peft)
        pipe = state["pipe"]
        return {"build_s": round(time.perf_counter() - t0, 2),
                "unet_params": sum(p.numel() for p in pipe.unet.parameters()),
                "vae_params": sum(p.numel() for p in pipe.vae.parameters())}

    bench.measure("difix", "build", build)
    if "pipe" not in state:
        return
    pipe = state["pipe"]
    probe = {v: inputs(args, 1, v, device, seed=7 + v) for v in (0, 1)}  # fixed inputs for the differences
    outputs = {}
    common = dict(model_name="random-weights", batch_size=max(args.batches))

    if args.eager:
        for dtype_name in args.eager_dtypes:
            if not cuda and dtype_name != "float32":
                continue
            fixer = DifixFixer.from_pipeline(pipe, dtype=dtype_name, compile=False, **common)
            fixer_runs(bench, "eager", fixer, dtype_name, cuda, device, first_call=False)
            if 1 in args.refs:  # one reference, re-encoded every call (the behaviour before the latent cache)
                def uncached(fixer=fixer, dtype_name=dtype_name):
                    plain = DifixFixer.from_pipeline(pipe, dtype=dtype_name, compile=False, cache_references=False,
                                                     **common)
                    x, r = inputs(args, 1, 1, device, seed=101)
                    return time_calls(lambda: plain.fix(x, r), 1, args.warmup, args.iters, cuda)

                bench.measure("eager", f"eager_{dtype_name}_b1_v1_uncached", uncached, dtype=dtype_name, batch=1,
                              refs=1, cached_refs=False)
            for v, (x, r) in probe.items():
                try:
                    outputs[(dtype_name, "eager", v)] = fixer.fix(x, r).cpu()
                except Exception as err:  # noqa: BLE001
                    bench.result.setdefault("errors", []).append(f"eager {dtype_name} probe: {err}")

    for dtype_name in args.fast_dtypes:
        if not cuda and dtype_name != "float32":
            continue
        fixer = DifixFixer.from_pipeline(pipe, dtype=dtype_name, compile=True, compile_min_frames=0,
                                         compile_cache_dir=args.compile_cache_dir,
                                         compiled_group_norm=args.group_norm,
                                         compiled_wide_attention=args.wide_attention,
                                         compiled_upsample=args.upsample, compiled_constants=args.constants,
                                         **common)
        if not cuda:  # smoke: the fast step's plumbing (reference latents, padding, x0 + decode), uncompiled
            from difix_ns.fixers.compiled import CompiledDifixStep
            from difix_ns.fixers.wide_attention import use_wide_head_attention

            step = CompiledDifixStep(fixer.pipeline, fixer.timestep, fixer.config.prompt, cuda_graphs=False,
                                     compile=args.smoke_compile, cache_dir=args.compile_cache_dir,
                                     group_norm=args.group_norm, wide_attention=args.wide_attention,
                                     upsample=args.upsample, constants=args.constants)
            if args.smoke_compile:  # as DifixFixer._prepare does on CUDA; the decoder's upsamplers then take the phases
                fixer.pipeline.vae.merge_lora()
            if args.smoke_compile and args.wide_attention == "matmul":
                use_wide_head_attention(fixer.pipeline.vae, wider_than=0)
            fixer.set_fast_step(step)
        fixer_runs(bench, "fast", fixer, dtype_name, cuda, device, first_call=True)
        fast = fixer._fast
        bench.result.setdefault("fast_info", {})[dtype_name] = {
            "compiled": bool(fast) and fixer.compiled,
            "cuda_graphs": bool(fast) and bool(getattr(fast, "cuda_graphs", False)),
            "compile_cache_dir": getattr(fast, "cache_dir", None) if fast else None,
            "group_norm": getattr(fast, "group_norm", None) if fast else None,
            "wide_attention": getattr(fast, "wide_attention", None) if fast else None,
            "upsample": getattr(fast, "upsample", None) if fast else None,
            "constants": getattr(fast, "constants", None) if fast else None,
            "reference_cache_hits": fixer.reference_cache.hits,
            "reference_cache_misses": fixer.reference_cache.misses,
        }
        # the probes are batch 1: only shapes measured above (so compiled already) are probed; a new shape would
        # compile for ~100 s after the budget ran out (the 2026-12-05 H100 run lost its differences that way)
        measured = {e.get("refs") for e in bench.result.get("fast", [])
                    if "ms_per_frame" in e and e.get("dtype") == dtype_name and e.get("batch") == 1}
        for v, (x, r) in probe.items():
            if (cuda or args.smoke_compile) and v not in measured:
                bench.result.setdefault("notes", []).append(
                    f"fast {dtype_name} probe v{v} skipped: its batch-1 shape was not measured (not compiled)")
                continue
            try:
                outputs[(dtype_name, "fast", v)] = fixer.fix(x, r).cpu()
            except Exception as err:  # noqa: BLE001
                bench.result.setdefault("errors", []).append(f"fast {dtype_name} probe: {err}")
        if args.graphs_ablation and fast and getattr(fast, "cuda_graphs", False):
            def no_graphs(fast=fast, fixer=fixer):
                fast.cuda_graphs = False
                try:
                    x, _ = inputs(args, 1, 0, device, seed=100)
                    return time_calls(lambda: fixer.fix(x), 1, args.warmup, args.iters, cuda)
                finally:
                    fast.cuda_graphs = True

            bench.measure("fast", f"fast_{dtype_name}_b1_v0_compiled_no_cuda_graphs", no_graphs, dtype=dtype_name,
                          batch=1, refs=0, cuda_graphs=False)
        bench.save()

    diffs = {}
    for (dtype_name, path, v), out in outputs.items():
        if path == "fast" and (dtype_name, "eager", v) in outputs:
            diffs[f"fast_vs_eager_{dtype_name}_v{v}"] = output_diff(out, outputs[(dtype_name, "eager", v)])
        if path == "eager" and dtype_name != "float32" and ("float32", "eager", v) in outputs:
            diffs[f"eager_{dtype_name}_vs_eager_float32_v{v}"] = output_diff(out, outputs[("float32", "eager", v)])
    bench.result["output_differences_on_0_1"] = diffs
    bench.save()


def start_run(args, what: str, note: str) -> tuple[bool, dict]:
    """Shared start of the Difix benchmarks: compile cache, CUDA check, the JSON's header -> (cuda, header)."""
    if args.compile_cache_dir:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(args.compile_cache_dir).resolve())
    import torch

    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda and not args.smoke:
        raise SystemExit("error: no CUDA GPU; use --smoke-cpu for a CPU smoke run")
    return cuda, {
        "what": what,
        "note": note,
        "architecture": "real" if cuda else "tiny",
        "gpu": torch.cuda.get_device_name(0) if cuda else "none (CPU smoke run)",
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    cuda, result = start_run(
        args, "Difix single step (VAE encode + UNet at t=199 + x0 + skip decode): anchor vs eager vs fast path",
        "random-weight models in the real architecture: timings and code-path differences only, no quality")
    import torch

    device = "cuda" if cuda else "cpu"
    size = result["architecture"]
    result |= {
        "resolution_hw": [args.height, args.width],
        "warmup": args.warmup,
        "iters": args.iters,
        "compile_cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
    }
    try:
        import diffusers

        result["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    settings = inductor_settings(args.inductor)
    if settings:
        import torch._inductor.config as inductor_config

        for name, value in settings.items():
            setattr(inductor_config, name, value)
        result["inductor_settings"] = settings
    bench = Bench(args, result)
    bench.save()
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here (the process default)
    if args.anchor:
        run_anchor(bench, size, device, cuda)
    run_difix(bench, size, device, cuda)
    result["total_s"] = round(bench.elapsed(), 1)
    bench.save()
    print(json.dumps(summary(result), indent=1))
    return result


def summary(result: dict) -> dict:
    """ms/frame per setting, for the end of the log."""
    table = {}
    for section in ("anchor", "eager", "fast"):
        for e in result.get(section, []):
            if "ms_per_frame" in e:
                table[e["name"]] = e["ms_per_frame"]
            elif "error" in e or "skipped" in e:
                table[e["name"]] = e.get("error") or e.get("skipped")
    table["differences"] = result.get("output_differences_on_0_1")
    return table


if __name__ == "__main__":
    main()
