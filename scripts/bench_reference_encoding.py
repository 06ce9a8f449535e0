"""What a reference view's first use costs, and what the VAE encoder costs in each layout (GPU; JSON).

A reference's latent is encoded once (``difix_ns.fixers.reference_cache``), today eagerly and one view at a time. On
a GPU ``bench_postfix_render.py`` measured ~35 ms per new reference (NVIDIA H200, 576x1024, bf16), which makes the
first ``ns-render`` pass over a trajectory much slower than the second. This benchmark times the encoder alone:

* ``eager_contiguous_b1``: ``DifixPipeline.encode_latents`` on one view, the model in the default memory format;
* ``eager_channels_last_b1``: the same after the fast path has switched the model to channels_last (what a new
  reference runs while the fast path is active);
* ``compiled_b1`` / ``compiled_b8``: the fast path's own compiled encoder (``CompiledDifixStep``'s), per view;
  ``first_call_s`` is its compile time;
* ``compiled_b8_batch_independence_max_abs``: the latent of one view encoded in a batch of 8 different views
  against the same view in a batch of 8 copies of itself (0 means a latent does not depend on its batch);
* ``encode_reference_*``: ``CompiledDifixStep.encode_reference``, what the fast path now encodes a new reference
  with (the encoder compiled for one view, without the decoder skips); ``first_call_s`` is its compile time, and
  ``encode_reference_repeat_max_abs`` must be 0 (the reference cache hands out a first result as a recomputation).

Random weights in the real SD-Turbo-sized architecture: timings only.

    python scripts/bench_reference_encoding.py --out $OUT/bench_reference_encoding.json \
        --compile-cache-dir /tmp/difix_compile_cache
"""

import importlib.util
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import tyro


@dataclass
class ReferenceEncodingBenchConfig:
    """Options of the reference-encoding benchmark."""

    out: Path
    """JSON file (rewritten after every row)."""
    height: int = 576
    """image height of the reference views"""
    width: int = 1024
    """image width of the reference views"""
    warmup: int = 2
    """untimed calls before each timed row"""
    iters: int = 10
    """timed calls per row"""
    compile_cache_dir: Optional[str] = None
    """TORCHINDUCTOR_CACHE_DIR for this run (share it with the other benchmarks)."""


def time_ms(fn: Callable[[], object], warmup: int, iters: int) -> float:
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters * 1000


def parse_args(argv: Optional[List[str]] = None) -> ReferenceEncodingBenchConfig:
    return tyro.cli(ReferenceEncodingBenchConfig, args=argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if args.compile_cache_dir:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(args.compile_cache_dir).resolve())
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("error: this benchmark needs a CUDA GPU")
    from difix_ns.fixer import DifixFixer
    from difix_ns.fixers.compiled import CompiledDifixStep
    from difix_ns.testing import build_difix_pipeline

    result = {
        "what": "VAE encoding of reference views (a reference's first use), per view",
        "note": "random-weight model in the real SD-Turbo-sized architecture: timings only",
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "resolution_hw": [args.height, args.width],
        "dtype": "bfloat16",
        "rows": {},
    }

    def save(name: str, value) -> None:
        result["rows"][name] = value
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(name, value, flush=True)

    has_peft = importlib.util.find_spec("peft") is not None
    pipe = build_difix_pipeline("real", reference_mixing=True, seed=0, device="cuda", vae_lora=has_peft)
    fixer = DifixFixer.from_pipeline(pipe, model_name="random-weights", dtype="bfloat16", compile=False, batch_size=8)
    pipe = fixer.pipeline  # bf16, decoder LoRA merged: what the fixer runs
    gen = torch.Generator(device="cuda").manual_seed(0)
    views = torch.rand(8, 3, args.height, args.width, device="cuda", generator=gen) * 2 - 1
    one = views[:1].to(torch.bfloat16)

    with torch.no_grad():
        save("eager_contiguous_b1_ms", round(time_ms(lambda: pipe.encode_latents(one), args.warmup, args.iters), 2))
        step = CompiledDifixStep(pipe, fixer.timestep, fixer.config.prompt, cuda_graphs=False, compile=True,
                                 cache_dir=args.compile_cache_dir)  # switches the model to channels_last
        save("eager_channels_last_b1_ms", round(time_ms(lambda: pipe.encode_latents(one), args.warmup, args.iters), 2))
        for batch in (1, 8):
            x = views[:batch].to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
            start = time.perf_counter()
            step._encode(x)
            torch.cuda.synchronize()
            save(f"compiled_b{batch}_first_call_s", round(time.perf_counter() - start, 1))
            per_view = time_ms(lambda: step._encode(x), args.warmup, args.iters) / batch
            save(f"compiled_b{batch}_ms_per_view", round(per_view, 2))
        mixed = step._encode(views.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))[0][:1]
        alone = step._encode(views[:1].expand(8, -1, -1, -1).to(torch.bfloat16)
                             .contiguous(memory_format=torch.channels_last))[0][:1]
        save("compiled_b8_batch_independence_max_abs", float((mixed.float() - alone.float()).abs().max()))
        start = time.perf_counter()
        first = step.encode_reference(one)
        torch.cuda.synchronize()
        save("encode_reference_first_call_s", round(time.perf_counter() - start, 1))
        save("encode_reference_ms", round(time_ms(lambda: step.encode_reference(one), args.warmup, args.iters), 2))
        save("encode_reference_repeat_max_abs", float((step.encode_reference(one).float() - first.float()).abs().max()))
        eager = pipe.encode_latents(one)
        save("encode_reference_vs_eager_latent_max_abs", float((first.float() - eager.float()).abs().max()))
        save("compiled_vs_eager_b1_latent_max_abs", float((step._encode(views[:1].to(torch.bfloat16).contiguous(
            memory_format=torch.channels_last))[0].float() - eager.float()).abs().max()))
    save("peak_mem_gib", round(torch.cuda.max_memory_allocated() / 2**30, 2))


if __name__ == "__main__":
    main()
