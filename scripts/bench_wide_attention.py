"""Attention with one 512-wide head (the SD VAE mid block's) at the Difix latent size: SDPA vs two GEMMs; JSON output.

Why: flash attention takes heads up to 256 wide, so SDPA runs the VAE's 512-wide head on the memory-efficient kernel
(2.9 of the compiled step's 38.8 ms a frame on an NVIDIA H100, ``docs/gpu_results/profile_difix_h100.json``). This
measures, per batch size, [B, 1, L, 512] self-attention (L = latent pixels, 72 x 128 = 9216 for 576x1024):

* ``sdpa``: ``F.scaled_dot_product_attention`` (PyTorch's backend choice), eager;
* ``sdpa_compiled``: the same inside ``torch.compile`` (what the fast path ran before ``wide_attention``);
* ``matmul_compiled``: ``difix_ns.fixers.wide_attention.matmul_attention`` compiled (float32 logits and softmax,
  the fast path's ``compiled_wide_attention="matmul"``).

Per variant: ms per call (CUDA events, median of --iters after warm-up), TFLOP/s (4 L^2 D per head), peak memory and
the max / mean abs difference from a float32 (no TF32) reference on the same inputs.

GPU:  python scripts/bench_wide_attention.py --out $OUT/bench_wide_attention.json \
          --compile-cache-dir /tmp/difix_compile_cache
CPU plumbing check (tiny, no compile):  python scripts/bench_wide_attention.py --smoke-cpu --out /tmp/attn.json
"""
import json
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

import tyro

from kernel_bench import KernelBenchOptions, kernel_bench_device, measure_variant  # the kernel benchmarks' helpers

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass
class WideAttentionBenchConfig(KernelBenchOptions):
    """Options of the wide-head attention benchmark."""

    batches: List[int] = field(default_factory=lambda: [1, 8])
    """batch sizes"""
    tokens: int = 9216
    """sequence length (latent pixels: 72 x 128 for 576x1024)"""
    head_dim: int = 512
    """channels of the single head"""
    smoke_cpu: bool = False
    """CPU plumbing check: batch 2, 64 tokens, 32 channels, float32, no compile, 1 timed call"""


def main(argv=None) -> dict:
    args = tyro.cli(WideAttentionBenchConfig, args=argv, description=__doc__,
                    config=(tyro.conf.FlagCreatePairsOff,))
    if args.smoke_cpu:
        args.batches, args.tokens, args.head_dim, args.dtype, args.warmup, args.iters = [2], 64, 32, "float32", 1, 1
    if not args.batches or min(args.batches) < 1 or args.tokens < 1 or args.head_dim < 1:
        raise SystemExit("error: --batches, --tokens and --head-dim must be positive")
    cuda, dtype, device = kernel_bench_device(args.smoke_cpu, args.dtype, args.compile_cache_dir)
    import torch
    import torch.nn.functional as F

    from difix_ns.fixers.wide_attention import matmul_attention
    scale = args.head_dim ** -0.5

    def sdpa(q, k, v):
        return F.scaled_dot_product_attention(q, k, v)

    def by_matmul(q, k, v):
        return matmul_attention(q, k, v, scale)

    variants = {"sdpa": sdpa}
    if cuda:
        variants["sdpa_compiled"] = torch.compile(sdpa, dynamic=False)
        variants["matmul_compiled"] = torch.compile(by_matmul, dynamic=False)
    else:  # CPU: plumbing only
        variants["matmul_eager"] = by_matmul

    result = {
        "what": "single-head 512-wide self-attention at the Difix latent size: SDPA vs two GEMMs (float32 softmax)",
        "gpu": torch.cuda.get_device_name(0) if cuda else "none (CPU smoke run)",
        "torch": torch.__version__, "python": platform.python_version(), "tokens": args.tokens,
        "head_dim": args.head_dim, "dtype": args.dtype, "iters": args.iters, "batches": {},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator(device="cpu").manual_seed(0)
    for batch in args.batches:
        # activations shaped like a trained VAE's: logits of a few units, so the softmax is far from uniform
        q, k, v = (torch.randn(batch, 1, args.tokens, args.head_dim, generator=gen) * s for s in (1.5, 1.5, 1.0))
        q, k, v = (t.to(device, dtype) for t in (q, k, v))
        with torch.no_grad():  # float32 math, no TF32
            allow = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = False
            try:
                logits = (q.float() @ k.float().transpose(-1, -2)) * scale
                reference = torch.softmax(logits, -1) @ v.float()
            finally:
                torch.backends.cuda.matmul.allow_tf32 = allow
            del logits
        flop = 4 * batch * args.tokens**2 * args.head_dim
        rows = {}
        for name, fn in variants.items():
            rows[name] = measure_variant(fn, (q, k, v), reference, args.warmup, args.iters, cuda)
            if "ms" in rows[name]:
                rows[name]["tflop_per_s"] = round(flop / (rows[name]["ms"] / 1000) / 1e12, 1)
            print(f"[wide_attention] batch {batch} {name}: {rows[name]}", flush=True)
        result["batches"][str(batch)] = rows
        args.out.write_text(json.dumps(result, indent=2))
        del q, k, v, reference
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
