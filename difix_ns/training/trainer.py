"""``difix-train``: train or fine-tune a Difix fixer on (degraded, clean, reference) pairs, with accelerate.

Single process: ``difix-train --data pairs/fox/pairs.json --architecture small --out runs/fixer``.
Several processes / GPUs: ``accelerate launch --multi_gpu --num_processes 2 -m difix_ns.cli.train ...`` (on a
machine without CUDA the processes train on CPU and synchronise over gloo).

Output folder::

    model/               the fixer in the real HF layout (DifixPipeline.from_pretrained, difix-fix --model_name,
                         ns-train difix3d-splatfacto --pipeline.fixer.model-name), rewritten at every checkpoint
    checkpoints/step_N/  accelerate state (model, optimizer, RNG) + trainer_state.json; written to a temporary
                         folder and renamed, so a killed run never leaves a half checkpoint; the newest is resumed
    eval.csv             held-out PSNR / LPIPS of fixed and of degraded (raw) renders vs the clean photos
    tensorboard/         the same numbers and the training losses
    train_config.json    the configuration of the run
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional

import torch

from difix_ns.io import InputError
from difix_ns.training.architectures import Architecture
from difix_ns.training.pairs import MakePairsConfig

EVAL_FIELDS = ("step", "epoch", "train_loss", "psnr_fixed", "psnr_degraded", "lpips_fixed", "lpips_degraded",
               "num_pairs", "elapsed_s")


@dataclass
class LossConfig:
    """Loss weights (upstream README: l2 1, lpips 1, gram 1 after 2000 steps; the paper uses gram 0.5)."""

    l2: float = 1.0
    """Weight of the mean squared error (in [-1, 1] space, as upstream)."""
    lpips: float = 1.0
    """Weight of LPIPS."""
    lpips_net: Literal["vgg", "alex"] = "vgg"
    """LPIPS backbone of the loss (upstream: vgg)."""
    gram: float = 0.0
    """Weight of the VGG16 Gram (style) loss; 0 disables it (NVIDIA's Fixer recipe keeps it off)."""
    gram_warmup: int = 2000
    """Steps before the Gram loss switches on."""
    gram_crop: int = 400
    """Side of the random crop the Gram loss sees."""
    ref_weight: float = 1.0
    """Weight of the reference view's reconstruction relative to the degraded view (upstream: 1)."""


@dataclass
class TrainConfig:
    """Train or fine-tune a Difix fixer."""

    out: Path = Path("difix_train")
    """Output folder (model/, checkpoints/, eval.csv, tensorboard/). An existing run there is resumed."""
    data: tuple[Path, ...] = ()
    """Pair files in upstream Difix's JSON format (difix-make-pairs writes them); several are merged."""
    scene: Optional[Path] = None
    """Per-scene fixer: make pairs from this capture's own training views first (into OUT/pairs), then train."""
    pairs: MakePairsConfig = field(default_factory=lambda: MakePairsConfig(holdout="fraction"))
    """Pair-making settings used with --scene (scene and out are filled in)."""
    model_name: Optional[str] = None
    """Start from a pretrained Difix: hub id (nvidia/difix_ref) or local folder in the HF layout."""
    architecture: Optional[Architecture] = None
    """Train from scratch with this architecture instead: sd-turbo (865.9M-param UNet), small (3.3M), tiny (tests)."""
    reference_mixing: bool = True
    """From scratch: reference-mixing UNet (difix_ref layout). Pretrained models keep their own kind."""
    trainable: Literal["auto", "upstream", "all"] = "auto"
    """upstream: UNet + decoder skip convs + vae_skip LoRA; all: also the whole VAE; auto: all from scratch,
    upstream otherwise."""
    unet_lora_rank: int = 0
    """> 0: train a PEFT LoRA of this rank on the UNet attention instead of the full UNet (merged on export)."""
    vae_lora_rank: int = 4
    """From scratch: rank of the decoder ``vae_skip`` LoRA (upstream 4)."""
    max_steps: int = 10000
    """Optimizer steps (upstream README: 10000)."""
    max_seconds: Optional[float] = None
    """Stop (with a checkpoint and export) once training has run this long."""
    batch_size: int = 1
    """Pairs per process per step (upstream README: 1)."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step."""
    lr: float = 2e-5
    """AdamW learning rate (upstream README / Fixer: 2e-5; from scratch use ~1e-4 to 5e-4)."""
    weight_decay: float = 1e-2
    """AdamW weight decay (upstream 1e-2)."""
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0
    """Gradient clipping (upstream 1.0)."""
    lr_warmup_steps: int = 0
    """Linear warm-up steps (upstream uses a constant schedule)."""
    timestep: int = 199
    """The single denoising timestep (Difix 199; NVIDIA's Fixer 250)."""
    prompt: str = "remove degradation"
    """The fixed prompt."""
    crop: int = 512
    """Training crop side (floored to a multiple of 8 and to the smallest image). Upstream resizes to 576x1024."""
    flip: bool = True
    """Random horizontal flips of the training crops."""
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    """auto: bf16 on CUDA, no on CPU."""
    gradient_checkpointing: bool = False
    """Recompute UNet activations in the backward pass (less memory, ~30 % slower)."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Loss weights."""
    eval_every: int = 500
    """Held-out evaluation every N steps (0: only at the end; needs a non-empty "test" split)."""
    eval_pairs: int = 100
    """Test pairs evaluated (upstream: 100)."""
    eval_lpips_net: Literal["alex", "vgg"] = "alex"
    """LPIPS backbone of the evaluation (alex: the number Difix3D reports)."""
    checkpoint_every: int = 1000
    """Checkpoint (and export model/) every N steps; always at the end."""
    keep_checkpoints: int = 2
    """Newest checkpoints kept."""
    resume: bool = True
    """Resume from the newest checkpoint in OUT/checkpoints."""
    save_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype of the exported model/ weights."""
    num_workers: int = 2
    """DataLoader workers per process."""
    seed: int = 0
    """Seed of the initial weights (from scratch), data order and crops."""


class TrainingProblem(InputError):
    """A configuration or data problem found before training starts."""


def _check(cfg: TrainConfig) -> None:
    if (cfg.model_name is None) == (cfg.architecture is None):
        raise TrainingProblem("give exactly one of --model-name (fine-tune) and --architecture (from scratch)")
    if not cfg.data and cfg.scene is None:
        raise TrainingProblem("no training data: pass --data PAIRS.json (difix-make-pairs) or --scene DATA")
    for name in ("max_steps", "batch_size", "gradient_accumulation_steps", "crop"):
        if getattr(cfg, name) < 1:
            raise TrainingProblem(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.eval_every < 0 or cfg.checkpoint_every < 0:
        raise TrainingProblem("--eval-every and --checkpoint-every must be >= 0")
    if not 0 <= cfg.timestep < 1000:
        raise TrainingProblem(f"--timestep must be in [0, 1000), got {cfg.timestep}")
    if cfg.out.exists() and not cfg.out.is_dir():
        raise TrainingProblem(f"--out {cfg.out} exists and is not a folder")


def _atomic_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def latest_checkpoint(root: Path) -> Optional[Path]:
    """Newest complete checkpoint folder (one with trainer_state.json), or None."""
    if not root.is_dir():
        return None
    done = [d for d in root.glob("step_*") if (d / "trainer_state.json").is_file()]
    return max(done, key=lambda d: int(d.name.split("_")[1])) if done else None


def load_start_pipeline(cfg: TrainConfig):
    """The DifixPipeline training starts from (fp32, CPU)."""
    if cfg.architecture is not None:
        from difix_ns.training.architectures import build_from_scratch

        return build_from_scratch(cfg.architecture, cfg.reference_mixing, cfg.seed, cfg.vae_lora_rank)
    from difix_ns.pipeline_difix import DifixPipeline

    return DifixPipeline.from_pretrained(cfg.model_name, dtype=torch.float32)


class _EvalWriter:
    def __init__(self, out: Path, enabled: bool):
        self.enabled = enabled
        self.csv_path = out / "eval.csv"
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                self.tb = None

    def scalars(self, values: dict, step: int, prefix: str) -> None:
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def row(self, row: dict) -> None:
        new = not self.csv_path.is_file()
        with self.csv_path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=EVAL_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in EVAL_FIELDS})
        self.scalars({k: v for k, v in row.items() if k not in ("step",)}, int(row["step"]), "eval")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


@torch.no_grad()
def evaluate(model, dataset, accelerator, lpips_net: str, limit: int) -> dict:
    """Mean PSNR / LPIPS of the fixed and of the degraded (raw) test images against their clean photos."""
    from difix_ns.metrics.lpips import LPIPS
    from difix_ns.metrics.pixel import psnr

    lpips = LPIPS(lpips_net).to(accelerator.device)
    was_training = model.training
    model.eval()
    sums = {"psnr_fixed": 0.0, "psnr_degraded": 0.0, "lpips_fixed": 0.0, "lpips_degraded": 0.0}
    n = min(limit, len(dataset))
    for i in range(n):
        item = dataset[i]
        x = item["input"][None].to(accelerator.device)
        target = (item["target"][None, 0].to(accelerator.device) + 1) / 2
        with accelerator.autocast():
            y = model(x, sample=False)
        fixed = ((y[:, 0].float() + 1) / 2).clamp(0, 1)
        degraded = (x[:, 0].float() + 1) / 2
        sums["psnr_fixed"] += float(psnr(fixed, target).mean())
        sums["psnr_degraded"] += float(psnr(degraded, target).mean())
        sums["lpips_fixed"] += float(lpips(fixed, target).mean())
        sums["lpips_degraded"] += float(lpips(degraded, target).mean())
    model.train(was_training)
    return {k: v / max(n, 1) for k, v in sums.items()} | {"num_pairs": n}


def train(cfg: TrainConfig, on_progress: Optional[Callable[[dict], None]] = None) -> dict:
    """Run (or resume) training; returns a summary with the final evaluation and the model path."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from difix_ns.training.dataset import PairDataset, crop_size_for, load_entries
    from difix_ns.training.losses import DifixLoss
    from difix_ns.training.model import DifixTrainModel, export_pipeline, select_trainable

    _check(cfg)
    mp = cfg.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() else "no"
    # cpu=True on CPU-only machines: processes started by `accelerate launch --multi_gpu` / torchrun then form a
    # gloo (MULTI_CPU) group instead of each training alone.
    accelerator = Accelerator(mixed_precision=mp, gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                              cpu=not torch.cuda.is_available())
    out = Path(cfg.out)
    data = list(cfg.data)
    if cfg.scene is not None:
        from difix_ns.training.pairs import make_pairs

        pairs_cfg = cfg.pairs
        pairs_cfg.scene, pairs_cfg.out = cfg.scene, out / "pairs"
        if accelerator.is_main_process:
            make_pairs(pairs_cfg)
        accelerator.wait_for_everyone()
        data.append(out / "pairs" / "pairs.json")

    # Everything about the inputs is checked before anything is written.
    train_entries = load_entries(data, "train")
    test_entries = []
    if cfg.eval_every > 0 or cfg.eval_pairs > 0:
        test_entries = load_entries(data, "test",
                                    hint="; pass --eval-every 0 --eval-pairs 0 to train without evaluation")
    set_seed(cfg.seed)
    pipe = load_start_pipeline(cfg)
    use_refs = pipe.reference_mixing
    model = DifixTrainModel(pipe, cfg.timestep, cfg.prompt)
    mode = cfg.trainable if cfg.trainable != "auto" else ("all" if cfg.architecture else "upstream")
    params = select_trainable(model, mode, cfg.unet_lora_rank)
    if cfg.gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
    crop = crop_size_for(train_entries, cfg.crop)
    train_set = PairDataset(train_entries, use_refs, crop=crop, flip=cfg.flip)
    test_set = PairDataset(test_entries, use_refs, crop=None) if test_entries else None
    criterion = DifixLoss(cfg.loss.l2, cfg.loss.lpips, cfg.loss.lpips_net, cfg.loss.gram, cfg.loss.gram_warmup,
                          cfg.loss.gram_crop, cfg.loss.ref_weight).to(accelerator.device)

    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                  weight_decay=cfg.weight_decay, eps=cfg.adam_eps)
    warmup = max(cfg.lr_warmup_steps, 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers, drop_last=False,
        persistent_workers=cfg.num_workers > 0,
    )
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    ckpt_root = out / "checkpoints"
    step, epoch, elapsed_before = 0, 0, 0.0
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        _atomic_json(out / "train_config.json", asdict(cfg))
    accelerator.wait_for_everyone()
    resume_from = latest_checkpoint(ckpt_root) if cfg.resume else None
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        state = json.loads((resume_from / "trainer_state.json").read_text())
        step, epoch, elapsed_before = int(state["step"]), int(state["epoch"]), float(state.get("elapsed_s", 0.0))
    writer = _EvalWriter(out, accelerator.is_main_process)
    t_start = time.perf_counter()

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t_start

    def save_checkpoint() -> None:
        tmp = ckpt_root / f".tmp_step_{step:08d}"
        final = ckpt_root / f"step_{step:08d}"
        if accelerator.is_main_process:
            ckpt_root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            _atomic_json(tmp / "trainer_state.json", {"step": step, "epoch": epoch, "elapsed_s": elapsed()})
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            done = sorted((d for d in ckpt_root.glob("step_*") if d != final), key=lambda d: int(d.name[5:]))
            for old in done[: max(0, len(done) - (cfg.keep_checkpoints - 1))]:
                shutil.rmtree(old)
            dtype = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.save_dtype]
            export_pipeline(pipe, out / "model", dtype=dtype, name=str(out / "model"))
        accelerator.wait_for_everyone()

    last_eval: dict = {}

    def run_eval(train_loss: float) -> None:
        nonlocal last_eval
        if accelerator.is_main_process and test_set is not None:
            metrics = evaluate(accelerator.unwrap_model(model), test_set, accelerator, cfg.eval_lpips_net,
                               cfg.eval_pairs)
            last_eval = {"step": step, "epoch": epoch, "train_loss": train_loss, **metrics,
                         "elapsed_s": round(elapsed(), 2)}
            writer.row(last_eval)
            if on_progress is not None:
                on_progress({"event": "eval", **last_eval})
        accelerator.wait_for_everyone()

    model.train()
    running = 0.0
    start_step = step
    stop = step >= cfg.max_steps
    while not stop:
        for batch in loader:
            with accelerator.accumulate(model):
                pred = model(batch["input"])
                terms = criterion(pred, batch["target"], step)
                accelerator.backward(terms["loss"])
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            step += 1
            loss_value = float(accelerator.reduce(terms["loss"].detach(), reduction="mean"))
            running = loss_value if step == start_step + 1 else 0.9 * running + 0.1 * loss_value
            if accelerator.is_main_process:
                writer.scalars({k: float(v.detach()) for k, v in terms.items()}, step, "train")
                if on_progress is not None:
                    on_progress({"event": "step", "step": step, "loss": running})
            out_of_time = cfg.max_seconds is not None and elapsed() >= cfg.max_seconds
            flag = torch.tensor([int(out_of_time)], device=accelerator.device)
            stop = step >= cfg.max_steps or bool(accelerator.gather(flag).sum() > 0)
            if cfg.eval_every and step % cfg.eval_every == 0 and not stop:
                run_eval(running)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and not stop:
                save_checkpoint()
            if stop:
                break
        epoch += 1
    if step > start_step or latest_checkpoint(ckpt_root) is None:
        run_eval(running)
        save_checkpoint()
    writer.close()
    return {"model": str(out / "model"), "step": step, "eval": last_eval, "crop": crop,
            "train_pairs": len(train_entries), "test_pairs": len(test_entries), "trainable": mode,
            "mixed_precision": mp, "num_processes": accelerator.num_processes, "train_seconds": round(elapsed(), 2)}
