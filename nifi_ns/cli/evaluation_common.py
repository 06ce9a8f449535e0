"""Options, checks and run of `nifi-eval` and `nifi-eval-benchmark` (shared): one tyro option set, the restorer
build and evaluation with every input checked first, atomic JSON output, one `error:` line (exit 2) for bad input."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Tuple

import torch

from difix_ns.cli.tyro_style import parse
from difix_ns.diffusion.model_names import PLUMBING_NOTE, has_random_weights, plumbing_banner
from nifi_ns.evaluation.pairs_eval import PairMetrics, evaluate_pairs
from nifi_ns.training.data import PairLayoutError, scan_pairs


@dataclass(kw_only=True)
class EvaluationConfig:
    """Options of ``nifi-eval`` and ``nifi-eval-benchmark`` (the NiFi scripts' underscored flags)."""

    ckpt: str
    """runs/<exp>/best.pt (or latest.pt), the runs/<exp>/best folder, a phi_minus .safetensors file, or the \
authors' released .ckpt (recognised by content)."""
    prompt_embeds: Optional[str] = None
    """Precomputed prompt embedding (official default_embeddings.npz or safetensors); without it a checkpoint's \
own embedding or the base model's text encoders are used."""
    data_root: str
    """Pairs root: [<dataset>/]<scene>/rate_<λ>/<split>/{clean,degraded}/."""
    split: str = "test"
    """Split label of the pairs to evaluate."""
    out: str
    """Output JSON."""
    backbone: Optional[Literal["sd3", "sdturbo"]] = None
    """Override the backbone kind (needed for a bare LoRA file)."""
    model_path: Optional[str] = None
    """Override the base model folder / hub id."""
    device: Optional[str] = None
    """Torch device (default: cuda if available, else cpu)."""
    dtype: Optional[Literal["bfloat16", "float16", "float32"]] = None
    """Override the compute dtype."""
    seed: int = 0
    """Seed of the t0 noise (deterministic restoration)."""
    lpips_net: Literal["alex", "vgg"] = "alex"
    """LPIPS backbone (alex = splatfacto/ns-eval; the paper does not state its backbone)."""
    rates: Optional[Tuple[str, ...]] = None
    """Rate labels to keep (default: all)."""
    scenes: Optional[Tuple[str, ...]] = None
    """Scene names to keep (default: all)."""
    max_images: Optional[int] = None
    """Evaluate at most this many pairs."""
    save_images: Optional[str] = None
    """Folder for the restored PNGs."""
    overwrite: bool = False
    """Replace an existing --out JSON / PNGs in --save_images (default: refuse)."""


def parse_evaluation_args(argv, description: str) -> EvaluationConfig:
    """The shared options of both evaluations, parsed with tyro."""
    return parse(EvaluationConfig, argv, description=description)


def check_args(args) -> None:
    """Every option checked before any model is built or any pair is read."""
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give a .json file path")
    if not args.overwrite:
        if out.exists():
            raise ValueError(f"output {out} already exists; pass --overwrite to replace it")
        if args.save_images and Path(args.save_images).is_dir() and any(Path(args.save_images).iterdir()):
            raise ValueError(f"--save_images {args.save_images} is not empty; pass --overwrite to write into it")
    if args.max_images is not None and args.max_images < 1:
        raise ValueError(f"--max_images must be >= 1, got {args.max_images}")


def run_evaluation(args) -> tuple[list[dict], dict]:
    """Validate inputs, build the restorer, evaluate; raises with a clear message on bad input."""
    check_args(args)
    records = scan_pairs(args.data_root, args.split, args.rates, args.scenes)
    if args.max_images:
        records = records[: args.max_images]
    from nifi_ns.restoration.restorer import load_restorer

    restorer = load_restorer(args.ckpt, backbone=args.backbone, model_path=args.model_path, device=args.device,
                             prompt_embeds_path=args.prompt_embeds,
                             dtype=args.dtype, seed=args.seed, batch_size=1)
    plumbing_only = has_random_weights(restorer.config.resolved_model_path())
    if plumbing_only:
        plumbing_banner(f"restorer backbone {restorer.config.resolved_model_path()}")
    metrics = PairMetrics(restorer.device, args.lpips_net)
    rows = evaluate_pairs(records, lambda x: restorer.restore(x, seed=args.seed), metrics,
                          Path(args.save_images) if args.save_images else None, log=lambda s: print(s, file=sys.stderr))
    info = {
        "plumbing_only": plumbing_only,
        "note": PLUMBING_NOTE if plumbing_only else "restorer with pretrained backbone weights",
        "ckpt": str(args.ckpt), "data_root": str(args.data_root), "split": args.split,
        "backbone": restorer.backbone.kind, "model_path": str(restorer.config.resolved_model_path()),
        "lora_path": restorer.config.lora_path, "prompt_embeds_path": restorer.config.prompt_embeds_path,
        "t0": restorer.config.t0, "sigma_t0": restorer.sigma_t0,
        "seed": args.seed, "device": str(restorer.device), "dtype": str(restorer.dtype).replace("torch.", ""),
        "lpips_net": args.lpips_net, "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    return rows, info


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def summary_prefix(info: dict) -> str:
    """``"PLUMBING ONLY (random weights): "`` for results of a random-weight backbone, else empty."""
    return "PLUMBING ONLY (random weights): " if info.get("plumbing_only") else ""


def guarded(main):
    """Turn input errors into one clear line on stderr and exit code 2 (no partial output)."""
    def wrapper(argv=None) -> int:
        from nifi_ns.restoration.lora import LoraMismatchError

        try:
            return main(argv)
        except (PairLayoutError, FileNotFoundError, LoraMismatchError, ValueError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return wrapper
