"""Benchmark the Fixer backend (Cosmos-Predict2 0.6B DiT, random weights) at 576x1024 and write JSON.

GPU (the numbers for the README; about a minute on an H200):
    python scripts/bench_fixer.py --out $OUT

CPU smoke run (tiny architecture, 64x128; proves the script works, the timings mean nothing):
    python scripts/bench_fixer.py --smoke-cpu --out /tmp/bench_fixer

What runs: ``CosmosFixerPipeline.restore`` (encode, one DiT step, decode) in bf16, batch 1, with the DiT in the real
0.6B architecture (20 heads x 64, 20 layers, 1280 wide, adaLN-LoRA 256; ~0.59B parameters; cross-attention on the
all-zero text embedding skipped, as the backend does). NVIDIA's tokenizer is a TorchScript archive inside the
weights and cannot be rebuilt without them, so the encoder/decoder here are a STAND-IN of a plausible size
(diffusers' AutoencoderKL with SD-VAE widths 128/256/512/512, 16 latent channels, /8): the DiT timings are the
real architecture's, the tokenizer and total timings are the stand-in's. Random weights: timing only, no quality.
Settings: eager and torch.compile of the DiT (``--compile-tokenizer`` also compiles the stand-in tokenizer), each
warmed up and timed
with CUDA synchronisation; peak GPU memory per setting. Output: ``OUT/bench_fixer.json``.
"""
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import tyro

if __package__ in (None, ""):  # `python scripts/bench_fixer.py` from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass
class BenchFixerConfig:
    """Options of the Fixer backend benchmark."""

    out: Optional[Path] = None
    """directory for bench_fixer.json (also printed)"""
    smoke_cpu: bool = False
    """CPU smoke run: tiny architecture, 64x128, 1 iter"""
    height: int = 576
    """image height"""
    width: int = 1024
    """image width"""
    warmup: int = 3
    """untimed calls before each timed setting"""
    iters: int = 20
    """timed calls per setting"""
    compile: bool = True
    """also time torch.compile of the DiT (--no-compile: eager timings only)"""
    budget_s: float = 55.0
    """start no new setting after this many seconds (the JSON is rewritten after each)"""
    compile_tokenizer: bool = False
    """also torch.compile the stand-in encoder/decoder (adds about a minute of compilation)"""


def parse_args(argv=None) -> BenchFixerConfig:
    args = tyro.cli(BenchFixerConfig, args=argv, description=__doc__, config=(tyro.conf.FlagCreatePairsOff,))
    if args.smoke_cpu:
        args.height, args.width, args.warmup, args.iters, args.compile = 64, 128, 1, 1, False
    return args


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device, warmup: int, iters: int) -> dict:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    _sync(device)
    warm_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    ms = (time.perf_counter() - start) * 1000 / iters
    out = {"ms_per_frame": round(ms, 3), "warmup_s": round(warm_s, 2), "iters": iters}
    if device.type == "cuda":
        out["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    from difix_ns.fixers.cosmos_fixer import DEFAULT_TIMESTEP
    from difix_ns.fixers.cosmos_testing import build_fixer_pipeline

    use_cuda = torch.cuda.is_available() and not args.smoke_cpu
    device = torch.device("cuda" if use_cuda else "cpu")
    dtype = torch.bfloat16 if use_cuda else torch.float32
    size = "tiny" if args.smoke_cpu else "real"
    pipe = build_fixer_pipeline(size, device=str(device), dtype=dtype)
    dit_params = sum(p.numel() for p in pipe.transformer.parameters())
    tok_params = sum(p.numel() for m in (pipe.encoder, pipe.decoder) for p in m.parameters())
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(1, 3, args.height, args.width, generator=generator, device=device) * 2 - 1
    z = pipe.encode(x)

    result = {
        "gpu": torch.cuda.get_device_name(device) if use_cuda else None,
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "dtype": str(dtype).removeprefix("torch."),
        "batch": 1,
        "size_hw": [args.height, args.width],
        "timestep": DEFAULT_TIMESTEP,
        "architecture": size,
        "dit_parameters": dit_params,
        "tokenizer": "tiny scripted-interface tokenizer" if args.smoke_cpu else "stand-in AutoencoderKL (not NVIDIA's)",
        "tokenizer_parameters": tok_params,
        "note": "random weights: timing only, no quality; tokenizer and total timings are for the stand-in tokenizer",
        "runs": [],
    }

    started = time.perf_counter()

    def write() -> str:
        text = json.dumps(result, indent=2)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "bench_fixer.json").write_text(text + "\n")
        return text

    def record(name: str, fn) -> None:
        if time.perf_counter() - started > args.budget_s:
            result["runs"].append({"setting": name, "skipped": f"time budget {args.budget_s} s"})
        else:
            with torch.inference_mode():
                run = {"setting": name, **_time(fn, device, args.warmup, args.iters)}
            result["runs"].append(run)
            print(json.dumps(run), file=sys.stderr, flush=True)
        write()

    record("eager/restore", lambda: pipe.restore(x))
    record("eager/dit_step", lambda: pipe.denoise(z))
    record("eager/encode", lambda: pipe.encode(x))
    record("eager/decode", lambda: pipe.decode(z))
    if args.compile:
        pipe.transformer.forward = torch.compile(pipe.transformer.forward, dynamic=False)
        record("compiled_dit/dit_step", lambda: pipe.denoise(z))
        record("compiled_dit/restore", lambda: pipe.restore(x))
    if args.compile and args.compile_tokenizer:
        pipe.encoder.forward = torch.compile(pipe.encoder.forward, dynamic=False)
        pipe.decoder.forward = torch.compile(pipe.decoder.forward, dynamic=False)
        record("compiled_all/restore", lambda: pipe.restore(x))

    result["total_s"] = round(time.perf_counter() - started, 1)
    print(write())
    return result


if __name__ == "__main__":
    main()
