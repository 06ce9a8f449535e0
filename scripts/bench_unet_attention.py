"""The UNet's self-attention at the Difix latent size, with and without a reference view: SDPA kernels; JSON output.

Why: with one reference view every UNet self-attention runs over the tokens of both views, four times the work of a
view alone, and a batch-1 step with a cached reference took 35.9 ms against 27.3 ms without on an NVIDIA H200
(``docs/gpu_results/bench_difix_h200_session11.json``). This times the SDPA kernels PyTorch offers for the SD-Turbo
UNet's self-attention layers (64-wide heads; 320/640/1280 channels at 1/8, 1/16, 1/32 of the image; one layer at 1/64),
in the layout diffusers hands them (heads split from [B, N, C] by a view and a transpose):

* ``default``: SDPA's own choice (what the fast path's compiled UNet calls);
* ``flash``, ``cudnn``, ``efficient``: one backend forced;

per level, batch size and number of views (1 = no reference, 2 = one reference; tokens per sample = views x tokens per
view). Per row: ms per call (CUDA events, median of --iters after warm-up), TFLOP/s (4 N^2 C), peak memory and the max
/ mean abs difference from float32 (no TF32) attention of the same inputs. ``per_frame_ms`` sums each backend over
the UNet's layers (5 + 5 + 5 + 1) and divides by the batch: the attention share of one frame's UNet. With a
reference, the row ``default_render_queries_only`` of the 1/8 level times the UNet's last self-attention as the fast
path runs it (the degraded view's queries only, see ``difix_ns/models/reference_attention.py``), and
``per_frame_ms_render_queries_last`` is the default kernel's per-frame total with that layer so.

Measured on an NVIDIA H100 80GB HBM3 (torch 2.11, cuDNN 9.19; 2026-12-06;
``docs/gpu_results/bench_unet_attention_h100_session13.json``): SDPA's own choice already is cuDNN's kernel on this
stack (the profiler names it ``cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma...``), 450-500 TFLOP/s at the
1/8 level; forcing PyTorch's flash kernel is 1.5x slower. A frame's attention costs 5.3 ms at batch 8 with one
reference (1.3 ms without): a faster kernel is not what is left to take out of a referenced step.

GPU:  python scripts/bench_unet_attention.py --out $OUT/bench_unet_attention.json
CPU plumbing check (tiny):  python scripts/bench_unet_attention.py --smoke-cpu --out /tmp/unet_attn.json
"""
import json
import math
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

import tyro

from kernel_bench import kernel_bench_device, measure_variant  # the kernel benchmarks' helpers

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HEAD_DIM = 64
"""Channels per head of the SD 2.x / SD-Turbo UNet."""


@dataclass
class UNetAttentionBenchConfig:
    """Options of the UNet self-attention benchmark."""

    out: Path
    """JSON file (rewritten after every row)"""
    height: int = 576
    """image height (latent: / 8)"""
    width: int = 1024
    """image width (latent: / 8)"""
    batches: List[int] = field(default_factory=lambda: [1, 8])
    """samples per call"""
    views: List[int] = field(default_factory=lambda: [1, 2])
    """views per sample (1 + references)"""
    dtype: str = "bfloat16"
    """input dtype (bfloat16, float16)"""
    warmup: int = 3
    """untimed calls per kernel"""
    iters: int = 20
    """timed calls per kernel"""
    smoke_cpu: bool = False
    """CPU plumbing check: 64x128 image, batch 1, views 1 and 2, float32, the default and math kernels, 1 call"""


def unet_levels(height: int, width: int) -> list[dict]:
    """Self-attention levels of the SD 2.x UNet: tokens per view, channels and how many layers run there."""
    h, w = height // 8, width // 8
    return [
        {"name": "1/8", "tokens": h * w, "channels": 320, "layers": 5},  # down 0 (2) + up 3 (3)
        {"name": "1/16", "tokens": (h // 2) * (w // 2), "channels": 640, "layers": 5},
        {"name": "1/32", "tokens": (h // 4) * (w // 4), "channels": 1280, "layers": 5},
        {"name": "1/64", "tokens": (h // 8) * (w // 8), "channels": 1280, "layers": 1},  # mid block
    ]


def qkv_like_diffusers(batch: int, tokens: int, channels: int, dtype, device, gen):
    """q, k, v [B, heads, N, 64] as diffusers' AttnProcessor2_0 makes them (strided views of [B, N, C])."""
    import torch

    heads = channels // HEAD_DIM
    out = []
    for scale in (1.0, 1.0, 1.0):
        t = (torch.randn(batch, tokens, channels, generator=gen) * scale).to(device, dtype)
        out.append(t.view(batch, tokens, heads, HEAD_DIM).transpose(1, 2))
    return tuple(out)


def float32_attention(q, k, v, chunk: int = 4096):
    """Exact float32 attention (no TF32), one query chunk at a time to bound memory."""
    import torch

    allow = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        qf, kf, vf = q.float(), k.float(), v.float()
        scale = q.shape[-1] ** -0.5
        parts = []
        for start in range(0, q.shape[-2], chunk):
            logits = (qf[..., start:start + chunk, :] @ kf.transpose(-1, -2)) * scale
            parts.append(torch.softmax(logits, -1) @ vf)
            del logits
        return torch.cat(parts, dim=-2)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allow


def kernels(cuda: bool) -> dict:
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def forced(backend):
        def call(q, k, v):
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v)
        return call

    named = {"default": lambda q, k, v: F.scaled_dot_product_attention(q, k, v)}
    if cuda:
        named |= {"flash": forced(SDPBackend.FLASH_ATTENTION), "cudnn": forced(SDPBackend.CUDNN_ATTENTION),
                  "efficient": forced(SDPBackend.EFFICIENT_ATTENTION)}
    else:
        named["math"] = forced(SDPBackend.MATH)
    return named


def main(argv=None) -> dict:
    args = tyro.cli(UNetAttentionBenchConfig, args=argv, description=__doc__,
                    config=(tyro.conf.FlagCreatePairsOff,))
    if args.smoke_cpu:
        args.height, args.width, args.batches, args.views = 64, 128, [1], [1, 2]
        args.dtype, args.warmup, args.iters = "float32", 1, 1
    if min(args.batches, default=0) < 1 or min(args.views, default=0) < 1:
        raise SystemExit("error: --batches and --views must be positive")
    if args.height % 64 or args.width % 64 or args.height < 64 or args.width < 64:
        raise SystemExit(f"error: --height/--width must be positive multiples of 64 (the UNet's deepest level); "
                         f"got {args.height}x{args.width}")
    cuda, dtype, device = kernel_bench_device(args.smoke_cpu, args.dtype, None)
    import torch

    named = kernels(cuda)
    levels = unet_levels(args.height, args.width)
    result = {
        "what": "SD-Turbo UNet self-attention (64-wide heads) per level, with and without a reference: SDPA kernels",
        "gpu": torch.cuda.get_device_name(0) if cuda else "none (CPU smoke run)",
        "torch": torch.__version__, "python": platform.python_version(),
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "resolution_hw": [args.height, args.width], "dtype": args.dtype, "iters": args.iters,
        "levels": levels, "rows": {}, "per_frame_ms": {}, "per_frame_ms_render_queries_last": {},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator(device="cpu").manual_seed(0)
    for views in args.views:
        for batch in args.batches:
            totals = {name: 0.0 for name in named}
            saved_ms = None  # the default kernel's time saved by the last layer's render-only queries
            for level in levels:
                tokens = views * level["tokens"]
                q, k, v = qkv_like_diffusers(batch, tokens, level["channels"], dtype, device, gen)
                with torch.no_grad():
                    reference = float32_attention(q, k, v)
                flop = 4 * batch * tokens**2 * level["channels"]
                rows = {}
                for name, fn in named.items():
                    row = measure_variant(fn, (q, k, v), reference, args.warmup, args.iters, cuda)
                    if "ms" in row:
                        row["tflop_per_s"] = round(flop / (row["ms"] / 1000) / 1e12, 1)
                        totals[name] += row["ms"] * level["layers"]
                    else:
                        totals[name] = float("nan")
                    rows[name] = row
                    print(f"[unet_attention] v{views} b{batch} {level['name']} ({tokens} tokens) {name}: {row}",
                          flush=True)
                if views > 1 and level is levels[0]:
                    # the UNet's last self-attention (a 1/8 layer) as the fast path runs it with references: the
                    # degraded view's queries only, keys and values of every view (reference_attention)
                    per_view = level["tokens"]
                    row = measure_variant(named["default"], (q[:, :, :per_view].contiguous(), k, v),
                                          reference[:, :, :per_view], args.warmup, args.iters, cuda)
                    if "ms" in row and "ms" in rows["default"]:
                        row["tflop_per_s"] = round(flop / views / (row["ms"] / 1000) / 1e12, 1)
                        saved_ms = rows["default"]["ms"] - row["ms"]
                    rows["default_render_queries_only"] = row
                    print(f"[unet_attention] v{views} b{batch} {level['name']} render queries only: {row}", flush=True)
                result["rows"][f"v{views}_b{batch}_{level['name']}"] = rows
                del q, k, v, reference
                args.out.write_text(json.dumps(result, indent=2))
            result["per_frame_ms"][f"v{views}_b{batch}"] = {
                name: (round(total / batch, 3) if math.isfinite(total) else None) for name, total in totals.items()}
            if saved_ms is not None and math.isfinite(totals["default"]):
                result["per_frame_ms_render_queries_last"][f"v{views}_b{batch}"] = round(
                    (totals["default"] - saved_ms) / batch, 3)
            args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["per_frame_ms"], indent=2))
    return result


if __name__ == "__main__":
    main()
