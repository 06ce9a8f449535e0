#!/usr/bin/env python
"""GPU check: a short NiFi training run of the SD-Turbo-option restorer, initialised from RANDOM weights.

    source .device/setup.sh && python scripts/gpu_train_restorer.py --out $OUT/gpu_train_restorer.json \
        [--pairs PAIRS_ROOT] [--fox .device/data/fox] [--size turbo|medium] [--train_seconds 120]

What it does (about 3-4 minutes on one H100/H200):
1. pairs: --pairs <root>/<scene>/rate_<λ>/{train,test}/{clean,degraded}; if absent, builds them from the fox photos
   (images_4) with a SYNTHETIC image-space degradation (nifi_ns.training.synthetic_pairs, not a 3DGS codec) and
   says so in the JSON;
2. model: an SD-Turbo-sized (default; the Difix core's UNet/VAE/scheduler configs, 865M-parameter UNet) or a
   "medium" (UNet channels halved) latent-diffusion model with random weights, written in the real diffusers layout
   and loaded back through the restorer's from_pretrained path; its text encoder is a random 2-layer CLIP (width
   1024, the UNet's cross-attention width) with a character tokenizer;
3. NiFi training (nifi_ns.training.NiFiTrainer): φ⁻ rank-64 LoRA (UNet + VAE encoder) vs φ⁺ critic, distribution
   matching with CFG 7.5 + ℓ2 + LPIPS-alex, bf16, batch 4, 256 px crops, for --train_seconds; the learning rate
   is raised to 1e-4 (the paper's 5e-6 moves nothing in two minutes);
4. held-out (test split) degraded->restored LPIPS-alex / PSNR / SSIM (+ DISTS when VGG16 weights are available) at
   initialisation and after training.
Random weights demonstrate the training loop (losses logged, whether they fall), never restoration quality.
"""
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import torch
import tyro

ROOT = Path(__file__).resolve().parents[1]


def build_random_model(path: Path, size: str, device: torch.device) -> dict:
    """Write a random SD-Turbo-layout model (unet/ vae/ scheduler/ text_encoder/ tokenizer/ model_index.json)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from nifi_ns.restoration.testing import _clip_tokenizer

    configs = ROOT / "difix_ns" / "models" / "configs"
    unet_cfg = json.loads((configs / "unet_config.json").read_text())
    vae_cfg = json.loads((configs / "vae_config.json").read_text())
    sched_cfg = json.loads((configs / "scheduler_config.json").read_text())
    if size == "medium":
        unet_cfg["block_out_channels"] = [c // 2 for c in unet_cfg["block_out_channels"]]
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(unet_cfg)
        vae = AutoencoderKL.from_config({k: v for k, v in vae_cfg.items() if k not in ("lora_rank", "ignore_skip")})
        tok = _clip_tokenizer()
        text = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tok), hidden_size=unet_cfg["cross_attention_dim"], intermediate_size=4096,
            num_hidden_layers=2, num_attention_heads=16, max_position_embeddings=77,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    counts = {"unet": sum(p.numel() for p in unet.parameters()), "vae": sum(p.numel() for p in vae.parameters()),
              "text_encoder": sum(p.numel() for p in text.parameters())}
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1"}
    for name, module in (("unet", unet), ("vae", vae), ("text_encoder", text)):
        module.to(torch.bfloat16).save_pretrained(path / name)
        index[name] = ["transformers" if name == "text_encoder" else "diffusers", type(module).__name__]
        del module
    DDPMScheduler.from_config(sched_cfg).save_pretrained(path / "scheduler")
    tok.save_pretrained(path / "tokenizer")
    index["scheduler"], index["tokenizer"] = ["diffusers", "DDPMScheduler"], ["transformers", "CLIPTokenizer"]
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    return counts


def stage_device_alexnet(work: Path) -> str:
    """The GPU machine has no network: hand the difix_ns metric cache the AlexNet weights .device/ ships
    (``DEVICE_ALEXNET_FEATURES``, set by .device/setup.sh), unless the cache already holds them."""
    from difix_ns.metrics.weights import stage_features

    return stage_features("alexnet", os.environ.get("DEVICE_ALEXNET_FEATURES"), work / "metric_cache")


def held_out_metrics(trainer, records, metrics) -> dict:
    from nifi_ns.evaluation.pairs_eval import aggregate, evaluate_pairs, group_by

    rows = evaluate_pairs(records, lambda x: trainer.restorer.restore(x, seed=0), metrics)
    return {"aggregate": aggregate(rows), "per_rate": group_by(rows, "rate")}


@dataclass
class GpuRestorerConfig:
    """Options of the short GPU NiFi training run (flags keep their underscores: --train_seconds)."""

    out: str
    """JSON output path"""
    pairs: Optional[str] = None
    """pairs root (default: synthetic fox pairs)"""
    fox: str = str(ROOT / ".device" / "data" / "fox")
    """fox scene folder (images_4/) for the synthetic pairs"""
    size: Literal["turbo", "medium", "tiny"] = "turbo"
    """tiny = the test-suite model, also runs on CPU (a dry run of this script, not a GPU result)"""
    train_seconds: float = 120.0
    """training time budget (seconds)"""
    max_steps: int = 2000
    """stop training after this many steps"""
    lr: float = 1e-4
    """learning rate of phi- and phi+"""
    crop: int = 256
    """training crop (pixels)"""
    batch: int = 4
    """training batch size"""
    workdir: Optional[str] = None
    """scratch folder (default: a temporary one)"""


def main(argv=None) -> int:
    args = tyro.cli(GpuRestorerConfig, args=argv, description=__doc__, use_underscores=True)
    t0 = time.time()
    if not torch.cuda.is_available() and args.size != "tiny":
        print("error: this check needs a CUDA GPU (use --size tiny for a CPU dry run)", file=sys.stderr)
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="nifi_gpu_"))
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "none (CPU dry run)"
    result: dict = {"script": "scripts/gpu_train_restorer.py", "gpu": gpu,
                    "torch": torch.__version__, "honesty": (
                        "Random-weight backbone: this run demonstrates the NiFi training loop (distribution matching "
                        "+ perceptual matching + critic) on a GPU; restoration quality needs pretrained SD3/SD-Turbo "
                        "weights, so 'after' metrics are expected to be worse than 'before'.")}

    result["alexnet_weights"] = stage_device_alexnet(work)
    from nifi_ns.training.data import scan_pairs
    from nifi_ns.training.synthetic_pairs import SEVERITY, write_synthetic_pairs

    if args.pairs and Path(args.pairs).is_dir():
        pairs, result["pairs_source"] = Path(args.pairs), f"given: {args.pairs}"
    else:
        images = Path(args.fox) / "images_4"
        pairs = write_synthetic_pairs(images, work / "pairs", scene="fox", rates=("0.5", "1.0"),
                                      caption="a photo of a small fox figurine")
        result["pairs_source"] = (f"{'--pairs ' + args.pairs + ' not found; ' if args.pairs else ''}synthetic "
                                  f"image-space degradation of {images} (downsample/blur/banding per rate "
                                  f"{dict((r, SEVERITY[r]) for r in ('0.5', '1.0'))}); "
                                  "NOT renders of a compressed 3DGS")
    train_records, test_records = scan_pairs(pairs, "train"), scan_pairs(pairs, "test")
    result["pairs"] = {"train": len(train_records), "test": len(test_records)}

    t = time.time()
    model_dir = work / f"random_sdturbo_{args.size}"
    if args.size == "tiny":
        from nifi_ns.restoration.testing import make_tiny_sdturbo

        make_tiny_sdturbo(model_dir)
        params = {"note": "tiny test model"}
    else:
        params = build_random_model(model_dir, args.size, device)
    result["model"] = {"size": args.size, "parameters": params,
                       "init": "random (diffusers default init), seed 0", "seconds_to_build": round(time.time() - t, 1)}
    if device.type == "cuda":
        torch.cuda.empty_cache()

    from nifi_ns.evaluation.pairs_eval import PairMetrics
    from nifi_ns.training.config import NiFiTrainingConfig
    from nifi_ns.training.trainer import NiFiTrainer

    cfg = NiFiTrainingConfig()
    cfg.model.backbone, cfg.model.model_path, cfg.model.dtype = "sdturbo", str(model_dir), "bfloat16"
    cfg.train.batch_size, cfg.train.crop_size, cfg.train.num_workers = args.batch, args.crop, 4
    cfg.train.lr_phi_minus = cfg.train.lr_phi_plus = args.lr
    cfg.train.max_steps, cfg.train.log_every, cfg.train.save_every = args.max_steps, 10, 10 ** 9
    cfg.train.eval_every, cfg.train.eval_max_images, cfg.train.eval_crop = 10 ** 9, 4, 256
    cfg.loss_weights.lpips_net = "alex"
    trainer = NiFiTrainer(cfg, pairs, work / "exp", log=lambda s: print(s, flush=True))
    result["config"] = cfg.to_dict()
    result["sigma_t0"], result["timestep_t0"] = trainer.restorer.sigma_t0, trainer.restorer.timestep_t0
    result["trainable_parameters"] = {"phi_minus": sum(p.numel() for p in trainer.params_minus),
                                      "phi_plus": sum(p.numel() for p in trainer.params_plus)}

    from difix_ns.metrics.weights import cached_features_path

    # DISTS needs VGG16 weights; the GPU machine has none unless a difix_ns cache was carried (DIFIX_NS_CACHE)
    metrics = PairMetrics(device, "alex", require_dists=False, with_dists=cached_features_path("vgg16").exists())
    result["dists_unavailable"] = metrics.dists_error
    t = time.time()
    result["held_out_at_init"] = held_out_metrics(trainer, test_records, metrics)
    result["seconds_eval"] = round(time.time() - t, 1)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    summary = trainer.train(time_budget_s=args.train_seconds)
    hist = trainer.history
    result["training"] = {k: summary[k] for k in ("steps_completed", "wall_time_s", "stopped_early", "first_steps_mean",
                                                  "last_steps_mean", "skipped_non_finite_updates")}
    result["training"]["seconds_per_step"] = summary["wall_time_s"] / max(1, summary["steps_this_run"])
    result["training"]["peak_gpu_memory_gb"] = (round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
                                                if device.type == "cuda" else None)
    result["training"]["loss_curve"] = [
        {k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()
         if k in ("step", "loss_generator", "loss_kl", "loss_l2", "loss_lpips", "loss_critic", "grad_norm_phi_minus")}
        for r in hist if r["step"] % 10 == 0 or r is hist[-1]]
    n = max(1, min(20, len(hist) // 4))
    falling = {}
    for key in ("loss_generator", "loss_lpips", "loss_l2", "loss_critic"):
        first = sum(r[key] for r in hist[:n]) / n
        last = sum(r[key] for r in hist[-n:]) / n
        falling[key] = {"first_mean": first, "last_mean": last, "fell": last < first, "window_steps": n}
    result["training"]["falling"] = falling
    result["held_out_after_training"] = held_out_metrics(trainer, test_records, metrics)
    result["total_seconds"] = round(time.time() - t0, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("gpu", "pairs_source", "total_seconds")}, indent=2))
    print(json.dumps({"falling": falling, "at_init": result["held_out_at_init"]["aggregate"],
                      "after": result["held_out_after_training"]["aggregate"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
