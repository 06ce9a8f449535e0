"""NiFi restorer training loop: alternating φ⁻ (generator) and φ⁺ (critic) AdamW steps, through accelerate.

Per step (reference nifi.md §1.4-§1.5, TSD-SR recipe):
  1. x̂ = one-step restoration of the degraded render (φ⁻ on VAE encoder + denoiser, default prompt, t0);
  2. x = ℰ(photo) with the frozen encoder; the same (t, ε) noise both: x̂_t, x_t;
  3. teacher (frozen base) and critic (φ⁺) velocities with CFG on the captions -> g (no grad);
  4. φ⁻ loss = w_kl·½‖x̂ - sg(x̂ - g)‖² + w_l2·MSE(𝒟(x̂), I) + w_lpips·LPIPS(𝒟(x̂), I); AdamW step, clip 1.0;
  5. φ⁺ loss = flow-matching MSE on sg(x̂) at a fresh (t, ε), captions with dropout; AdamW step, clip 1.0.
Multi-GPU: accelerate shards the data; both adapters are plain tensors on a shared frozen model, so their
gradients are averaged across processes explicitly (one flat all-reduce per optimiser step).
Outputs in ``exp_dir``: ``latest.pt`` / ``best.pt`` (one file each: φ⁻, φ⁺, prompt embedding, optimiser and RNG
state; ``load_restorer`` and ``--resume`` read them), ``latest/`` / ``best/`` (the same restorer as
``phi_minus.safetensors``, ``phi_plus.safetensors``, ``prompt_embeds.safetensors``, ``nifi_restorer.json``),
``train_log.csv``, ``train_summary.json``.
"""
from __future__ import annotations

import csv
import json
import math
import random
import shutil
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from nifi_ns.restoration import lora as L
from nifi_ns.restoration.checkpoint import (
    embeds_from_checkpoint,
    lora_from_checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from nifi_ns.restoration.flow import add_noise
from nifi_ns.restoration.embeds import DEFAULT_PROMPT, NULL_PROMPT, PromptEmbeds
from nifi_ns.restoration.restorer import NiFiRestorer
from nifi_ns.training import losses as Lo
from nifi_ns.training.config import NiFiTrainingConfig
from nifi_ns.training.data import PairLayoutError, PairsDataset, center_crop, load_pair, scan_pairs

LOG_COLUMNS = ["step", "loss_generator", "loss_kl", "loss_l2", "loss_lpips", "loss_critic", "grad_norm_phi_minus",
               "grad_norm_phi_plus", "g_abs_mean", "sigma_mean", "val_lpips", "seconds"]
RESTORER_FILE = "phi_minus.safetensors"
CRITIC_FILE = "phi_plus.safetensors"
PROMPT_FILE = "prompt_embeds.safetensors"
META_FILE = "nifi_restorer.json"


class NiFiTrainer:
    def __init__(self, cfg: NiFiTrainingConfig, data_root: str | Path, exp_dir: str | Path,
                 device: Optional[str] = None, resume: bool = False, log: Callable[[str], None] = print):
        from accelerate import Accelerator

        self.cfg, self.exp_dir, self.log = cfg, Path(exp_dir), log
        self.accelerator = Accelerator(cpu=device == "cpu")
        self.device = self.accelerator.device
        self.is_main = self.accelerator.is_main_process
        mc, tc = cfg.model, cfg.train
        self.default_prompt = mc.default_prompt or DEFAULT_PROMPT

        # data first: a bad layout should fail before any model is loaded
        self.train_records = scan_pairs(data_root, cfg.data.train_split, cfg.data.rates, cfg.data.scenes)
        try:
            self.val_records = scan_pairs(data_root, cfg.data.val_split, cfg.data.rates, cfg.data.scenes)
            self.val_source = cfg.data.val_split
        except PairLayoutError:
            self.val_records, self.val_source = (self.train_records,
                                                 f"{cfg.data.train_split} (no '{cfg.data.val_split}' split)")
        self.val_records = self.val_records[: tc.eval_max_images]

        torch.manual_seed(tc.seed)  # identical adapter init on every process
        self.restorer = NiFiRestorer(cfg.restorer_settings(device=str(self.device), seed=tc.seed,
                                                           batch_size=tc.batch_size))
        bb = self.backbone = self.restorer.backbone
        if tc.crop_size % bb.pad_multiple:
            raise ValueError(f"train.crop_size={tc.crop_size} must be a multiple of {bb.pad_multiple} "
                             f"for backbone '{bb.kind}'")
        if not 0 <= cfg.diffusion.t_min_index < cfg.diffusion.t_max_index <= len(bb.table):
            raise ValueError(f"diffusion.t_min_index/t_max_index must satisfy 0 <= min < max <= {len(bb.table)}")
        # Seeded again right before the adapters are initialised: model loading may consume the global RNG
        # differently (first load in a process vs cached), and a run must not depend on that.
        _seed_everything(tc.seed)
        bb.add_generator_lora(mc.lora_rank, mc.lora_alpha)
        bb.add_critic_lora(mc.critic_lora_rank, mc.lora_alpha)
        if mc.gradient_checkpointing:
            bb.denoiser.enable_gradient_checkpointing()

        # every prompt is embedded once; the text encoders are then released
        captions = sorted({r.caption for r in self.train_records if r.caption})
        bb.encode_prompts([self.default_prompt, NULL_PROMPT] + captions)
        bb.release_text_encoders()

        from difix_ns.metrics import LPIPS

        self.lpips = LPIPS(cfg.loss_weights.lpips_net).to(self.device)
        betas = (tc.adam_beta1, tc.adam_beta2)
        self.params_minus, self.params_plus = bb.generator_parameters(), bb.critic_parameters()
        self.opt_minus = torch.optim.AdamW(self.params_minus, lr=tc.lr_phi_minus, betas=betas,
                                           weight_decay=tc.weight_decay)
        self.opt_plus = torch.optim.AdamW(self.params_plus, lr=tc.lr_phi_plus, betas=betas,
                                          weight_decay=tc.weight_decay)
        _seed_everything(tc.seed + 1)  # crops and anything else drawn from the global RNGs during training
        dataset = self.train_dataset = PairsDataset(self.train_records, tc.crop_size, seed=tc.seed)
        # Every data-order draw (shuffle, worker seeds) comes from this generator; its state at the start of the
        # current epoch plus the batches consumed since are checkpointed, so a resume replays the same order.
        self.data_generator = torch.Generator().manual_seed(tc.seed)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=tc.batch_size, shuffle=True, drop_last=len(dataset) >= tc.batch_size,
            num_workers=tc.num_workers, generator=self.data_generator,
        )
        self.loader = self.accelerator.prepare(loader)
        self._epoch_start_state = self.data_generator.get_state()
        self._epoch, self._epoch_batches = 0, 0  # current epoch (1-based once training started), batches used
        self._resume_skip: Optional[int] = None
        self.noise_gen = torch.Generator(device=self.device).manual_seed(
            tc.seed * 1000 + self.accelerator.process_index)
        self.step, self.best_metric, self.best_step, self.resumed_from = 0, math.inf, None, None
        self.stopped_early: Optional[str] = None
        self.skipped_steps = {"phi_minus": 0, "phi_plus": 0}  # updates skipped for non-finite loss / gradient
        self.history: list[dict] = []  # every step's losses of the last train() call
        if self.is_main:
            self._remove_stray_temporaries()
        if resume:
            self._resume()

    # ----- helpers ---------------------------------------------------------------------------------------------
    def _randn(self, shape) -> torch.Tensor:
        return torch.randn(shape, generator=self.noise_gen, device=self.device, dtype=torch.float32)

    def _timesteps(self, batch: int):
        d = self.cfg.diffusion
        idx = torch.randint(d.t_min_index, d.t_max_index, (batch,), generator=self.noise_gen, device=self.device).cpu()
        table = self.backbone.table
        return table.sigmas[idx].to(self.device), table.timesteps[idx].to(self.device)

    def _caption_embeds(self, captions: list[str]) -> PromptEmbeds:
        p = self.cfg.model.prompt_dropout
        drop = torch.rand(len(captions), generator=self.noise_gen, device=self.device).cpu() < p
        chosen = [NULL_PROMPT if d else (c or self.default_prompt) for c, d in zip(captions, drop.tolist())]
        return self.backbone.encode_prompts(chosen)

    def _guided_velocity(self, adapter: Optional[str], x, timesteps, cond: PromptEmbeds) -> torch.Tensor:
        bb, scale = self.backbone, self.cfg.model.guidance_scale
        with L.active_adapter(bb.denoiser, adapter):
            if scale == 1.0:
                return bb.velocity(x, timesteps, cond)
            null = bb.encode_prompts([NULL_PROMPT]).expand(x.shape[0])
            v = bb.velocity(torch.cat([x, x]), torch.cat([timesteps, timesteps]), PromptEmbeds.cat([null, cond]))
        v_uncond, v_cond = v.chunk(2)
        return Lo.cfg(v_uncond, v_cond, scale)

    def _sync_and_clip(self, params) -> float:
        if self.accelerator.num_processes > 1:
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            flat = self.accelerator.reduce(torch.cat([g.flatten() for g in grads]), reduction="mean")
            offset = 0
            for p, g in zip(params, grads):
                p.grad = flat[offset:offset + g.numel()].view_as(g).clone()
                offset += g.numel()
        return float(torch.nn.utils.clip_grad_norm_(params, self.cfg.train.grad_clip))

    def _step_if_finite(self, optimizer, loss: torch.Tensor, grad_norm: float, name: str) -> None:
        """A non-finite loss or gradient (bf16 overflow) skips the update instead of poisoning the adapters."""
        if torch.isfinite(loss.detach()).item() and math.isfinite(grad_norm):
            optimizer.step()
        else:
            self.skipped_steps[name] += 1
            optimizer.zero_grad(set_to_none=True)

    # ----- the two steps ---------------------------------------------------------------------------------------
    def generator_step(self, clean01: torch.Tensor, degraded01: torch.Tensor, captions: list[str]) -> dict:
        bb, w = self.backbone, self.cfg.loss_weights
        clean, degraded = clean01.to(self.device) * 2 - 1, degraded01.to(self.device) * 2 - 1
        b = clean.shape[0]
        x_hat, _ = self.restorer.generate(degraded, self._randn(self.restorer.latent_shape(b, *clean.shape[-2:])))
        with torch.no_grad():
            with L.active_adapter(bb.vae, None):
                x_real = bb.encode(clean)
            sigma, ts = self._timesteps(b)
            eps = self._randn(x_hat.shape)
            x_hat_t, x_t = add_noise(x_hat.detach(), eps, sigma), add_noise(x_real, eps, sigma)
            cond = self._caption_embeds(captions)
            v_teacher = self._guided_velocity(None, torch.cat([x_hat_t, x_t]), torch.cat([ts, ts]),
                                              PromptEmbeds.cat([cond, cond]))
            v_teacher_fake, v_teacher_real = v_teacher.chunk(2)
            v_critic_fake = self._guided_velocity(L.PHI_PLUS, x_hat_t, ts, cond)
            g = Lo.distribution_matching_gradient(sigma, v_teacher_fake, v_critic_fake, v_teacher_real, w.alpha)
        loss_kl = Lo.distribution_matching_loss(x_hat, g)
        perceptual = Lo.perceptual_losses(bb.decode(x_hat), clean, self.lpips)
        total = w.kl * loss_kl + w.l2 * perceptual["l2"] + w.lpips * perceptual["lpips"]
        self.opt_minus.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = self._sync_and_clip(self.params_minus)
        self._step_if_finite(self.opt_minus, total, grad_norm, "phi_minus")
        return {"x_hat": x_hat.detach(), "loss_generator": total.item(), "loss_kl": loss_kl.item(),
                "loss_l2": perceptual["l2"].item(), "loss_lpips": perceptual["lpips"].item(),
                "grad_norm_phi_minus": grad_norm, "g_abs_mean": float(g.abs().mean()),
                "sigma_mean": float(sigma.mean())}

    def critic_step(self, x_hat: torch.Tensor, captions: list[str]) -> dict:
        bb = self.backbone
        x_hat = x_hat.detach()
        sigma, ts = self._timesteps(x_hat.shape[0])
        eps = self._randn(x_hat.shape)
        cond = self._caption_embeds(captions)
        with L.active_adapter(bb.denoiser, L.PHI_PLUS):
            v = bb.velocity(add_noise(x_hat, eps, sigma), ts, cond)
        loss = self.cfg.loss_weights.critic * Lo.critic_flow_loss(v, eps, x_hat)
        self.opt_plus.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = self._sync_and_clip(self.params_plus)
        self._step_if_finite(self.opt_plus, loss, grad_norm, "phi_plus")
        return {"loss_critic": loss.item(), "grad_norm_phi_plus": grad_norm}

    # ----- evaluation / checkpoints ----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean LPIPS(restored, photo) over the held-out pairs (seeded noise, centre crops)."""
        values = []
        for record in self.val_records:
            clean, degraded = load_pair(record)
            if self.cfg.train.eval_crop:
                clean, degraded = (center_crop(clean, self.cfg.train.eval_crop),
                                   center_crop(degraded, self.cfg.train.eval_crop))
            restored = self.restorer.restore(degraded[None], seed=self.cfg.train.seed)
            values.append(float(self.lpips(restored.to(self.device), clean[None].to(self.device)).mean()))
        return sum(values) / max(len(values), 1)

    def save(self, kind: str) -> Path:
        """Write ``<exp>/<kind>.pt`` (restorer + critic + optimiser/RNG state, one file) and ``<exp>/<kind>/`` (the
        same restorer as safetensors + JSON, for ns-eval and other tools); both replace older copies atomically."""
        bb, mc = self.backbone, self.cfg.model
        extra = {"t0": self.cfg.diffusion.t0, "final_sigma": self.cfg.diffusion.final_sigma, "step": self.step}
        generator = bb.generator_lora(mc.lora_rank, mc.lora_alpha, extra)
        critic = bb.critic_lora(mc.critic_lora_rank, mc.lora_alpha, extra)
        embeds = bb.encode_prompts([self.default_prompt])
        meta = {
            "backbone": bb.kind, "model_path": str(self.restorer.config.resolved_model_path()),
            "lora_path": RESTORER_FILE, "prompt": self.default_prompt, "prompt_embeds_path": PROMPT_FILE,
            "t0": self.cfg.diffusion.t0, "final_sigma": self.cfg.diffusion.final_sigma, "step": self.step,
            "best_val_lpips": _finite(self.best_metric), "lpips_net": self.cfg.loss_weights.lpips_net,
        }
        state = {
            "step": self.step, "best_metric": float(self.best_metric), "best_step": self.best_step,
            "opt_minus": self.opt_minus.state_dict(), "opt_plus": self.opt_plus.state_dict(),
            "noise_rng": self.noise_gen.get_state(), "torch_rng": torch.get_rng_state(), "rng": self._rng_states(),
        }
        # The .pt is the commit point (written atomically first); the folder is derived from it afterwards, so it
        # is never ahead of the .pt: a kill in between leaves it behind, and a resume re-derives it.
        write_checkpoint(self.exp_dir / f"{kind}.pt", meta, {L.PHI_MINUS: generator, L.PHI_PLUS: critic}, embeds, state)
        return self._write_folder(kind, meta, generator, critic, embeds)

    def _write_folder(self, kind: str, meta: dict, generator, critic, embeds) -> Path:
        final = self.exp_dir / kind
        tmp = self.exp_dir / f".{kind}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        L.save_lora_file(tmp / RESTORER_FILE, *generator)
        L.save_lora_file(tmp / CRITIC_FILE, *critic)
        embeds.save(tmp / PROMPT_FILE, meta["prompt"], meta["backbone"])
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        return final

    def _rng_states(self) -> dict:
        """Every random state a step depends on (python, numpy, torch, CUDA, data order)."""
        name, key, pos, has_gauss, cached = np.random.get_state()
        states = {
            "python": random.getstate(),
            "numpy": {"name": name, "key": torch.from_numpy(np.asarray(key, np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "data_epoch_start": self._epoch_start_state.clone(), "data_batches_done": int(self._epoch_batches),
            "data_epoch": int(self._epoch),
        }
        if torch.cuda.is_available():
            states["cuda"] = torch.cuda.get_rng_state_all()
        return states

    def _set_rng_states(self, states: dict) -> None:
        random.setstate(_as_tuple(states["python"]))
        npy = states["numpy"]
        np.random.set_state((npy["name"], npy["key"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                             npy["cached_gaussian"]))
        if torch.cuda.is_available() and states.get("cuda") is not None:
            torch.cuda.set_rng_state_all(states["cuda"])
        self._epoch_start_state = states["data_epoch_start"].clone()
        self._resume_skip = int(states["data_batches_done"])
        self._epoch = int(states["data_epoch"])

    def _remove_stray_temporaries(self) -> None:
        """A kill during a save leaves hidden temporaries (``.latest.tmp/``, ``.latest.pt.tmp``): remove them."""
        if not self.exp_dir.is_dir():
            return
        for kind in ("latest", "best"):
            shutil.rmtree(self.exp_dir / f".{kind}.tmp", ignore_errors=True)
            (self.exp_dir / f".{kind}.pt.tmp").unlink(missing_ok=True)

    def _sync_folder_with_checkpoint(self, kind: str) -> None:
        """Re-derive ``<kind>/`` from ``<kind>.pt`` when a kill left the folder at another step."""
        path, folder = self.exp_dir / f"{kind}.pt", self.exp_dir / kind
        if not path.is_file():
            return
        payload = read_checkpoint(path)
        meta = dict(payload["restorer"])
        try:
            folder_step = json.loads((folder / META_FILE).read_text()).get("step")
        except (OSError, ValueError):
            folder_step = None
        if folder_step == meta.get("step"):
            return
        loras = {name: lora_from_checkpoint(payload, name, path) for name in (L.PHI_MINUS, L.PHI_PLUS)}
        generator = (loras[L.PHI_MINUS][0], loras[L.PHI_MINUS][1])
        critic = (loras[L.PHI_PLUS][0], loras[L.PHI_PLUS][1])
        self._write_folder(kind, meta, generator, critic, embeds_from_checkpoint(payload))
        self.log(f"resume: {folder} was at step {folder_step}, rewritten from {path} (step {meta.get('step')})")

    def _resume(self) -> None:
        path = self.exp_dir / "latest.pt"
        if not path.is_file():
            raise FileNotFoundError(f"--resume: '{path}' does not exist (no previous run in '{self.exp_dir}')")
        payload = read_checkpoint(path)
        state = payload["training_state"]
        if not state:
            raise ValueError(f"--resume: '{path}' holds no training state")
        for adapter in (L.PHI_MINUS, L.PHI_PLUS):
            self.backbone.load_lora_parts(*lora_from_checkpoint(payload, adapter, path), path)
        self.opt_minus.load_state_dict(state["opt_minus"])
        self.opt_plus.load_state_dict(state["opt_plus"])
        self.noise_gen.set_state(state["noise_rng"].to(self.noise_gen.get_state().device))
        torch.set_rng_state(state["torch_rng"])
        if state.get("rng") is not None:  # checkpoints written before RNG states were saved resume approximately
            self._set_rng_states(state["rng"])
        self.step, self.best_metric, self.best_step = (int(state["step"]), float(state["best_metric"]),
                                                       state["best_step"])
        self.resumed_from = self.step
        if self.is_main:
            for kind in ("latest", "best"):
                self._sync_folder_with_checkpoint(kind)
            self._truncate_log(self.step)

    def _truncate_log(self, step: int) -> None:
        """Drop the log rows after the checkpoint's step (a killed run logged steps the resume will redo)."""
        log_path = self.exp_dir / "train_log.csv"
        if not log_path.is_file():
            return
        with log_path.open(newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if r.get("step", "").isdigit() and int(r["step"]) <= step]
        tmp = log_path.with_name(f".{log_path.name}.tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(log_path)

    # ----- loop ------------------------------------------------------------------------------------------------
    def train(self, max_steps: Optional[int] = None, time_budget_s: Optional[float] = None) -> dict:
        """Run until ``max_steps`` (or until ``time_budget_s`` of wall time is spent, checked between steps)."""
        tc = self.cfg.train
        max_steps = tc.max_steps if max_steps is None else max_steps
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.exp_dir / "train_log.csv"
        rows: list[dict] = []
        new_log = not (self.resumed_from and log_path.is_file())
        t_start = time.time()
        handle = open(log_path, "w" if new_log else "a", newline="") if self.is_main else None
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS) if handle else None
        if writer and new_log:
            writer.writeheader()
        try:
            while self.step < max_steps:
                if self._resume_skip is not None:  # the rest of the epoch the checkpoint was taken in
                    self.data_generator.set_state(self._epoch_start_state)
                    loader = self.accelerator.skip_first_batches(self.loader, self._resume_skip)
                    self._epoch_batches, self._resume_skip = self._resume_skip, None
                else:
                    self._epoch_start_state, self._epoch_batches = self.data_generator.get_state(), 0
                    self._epoch += 1
                    loader = self.loader
                self.train_dataset.epoch = self._epoch
                for batch in loader:
                    if self.step >= max_steps:
                        break
                    self._epoch_batches += 1
                    captions = list(batch["caption"])
                    gen = self.generator_step(batch["clean"], batch["degraded"], captions)
                    crit = self.critic_step(gen.pop("x_hat"), captions)
                    self.step += 1
                    row = {"step": self.step, **gen, **crit, "val_lpips": "",
                           "seconds": round(time.time() - t_start, 3)}
                    out_of_time = time_budget_s is not None and time.time() - t_start > time_budget_s
                    if out_of_time:
                        self.stopped_early = f"time budget of {time_budget_s:.0f} s reached at step {self.step}"
                    last = self.step == max_steps or out_of_time
                    if self.step % tc.eval_every == 0 or last:
                        row["val_lpips"] = val = self.evaluate()
                        if val < self.best_metric:
                            self.best_metric, self.best_step = val, self.step
                            if self.is_main:
                                self.save("best")
                    if self.is_main and (self.step % tc.save_every == 0 or last):
                        self.save("latest")
                    rows.append(row)
                    if writer and (self.step % tc.log_every == 0 or last or row["val_lpips"] != ""):
                        writer.writerow({k: _fmt(row.get(k, "")) for k in LOG_COLUMNS})
                        handle.flush()
                        self.log(" ".join(f"{k}={_fmt(row[k])}" for k in ("step", "loss_generator", "loss_kl",
                                                                          "loss_lpips", "loss_critic", "val_lpips")))
                    if out_of_time:
                        break
                if self.stopped_early:
                    break
        finally:
            if handle:
                handle.close()
        self.history = rows
        summary = self._summary(rows, time.time() - t_start, max_steps)
        if self.is_main:
            (self.exp_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def _summary(self, rows: list[dict], seconds: float, max_steps: int) -> dict:
        def mean(key, part):
            vals = [r[key] for r in part if isinstance(r.get(key), (int, float))]
            return sum(vals) / len(vals) if vals else None

        n = max(1, min(10, len(rows) // 2)) if rows else 0
        keys = ("loss_generator", "loss_kl", "loss_l2", "loss_lpips", "loss_critic")
        return {
            "exp_dir": str(self.exp_dir), "backbone": self.backbone.kind,
            "model_path": str(self.restorer.config.resolved_model_path()),
            "steps_completed": self.step, "max_steps": max_steps, "resumed_from_step": self.resumed_from,
            "steps_this_run": len(rows), "wall_time_s": round(seconds, 2), "stopped_early": self.stopped_early,
            "skipped_non_finite_updates": dict(self.skipped_steps),
            "world_size": self.accelerator.num_processes, "device": str(self.device),
            "train_pairs": len(self.train_records), "val_pairs": len(self.val_records), "val_source": self.val_source,
            "best": {"step": self.best_step, "val_lpips": _finite(self.best_metric),
                     "lpips_net": self.cfg.loss_weights.lpips_net},
            "first_steps_mean": {k: mean(k, rows[:n]) for k in keys} if rows else {},
            "last_steps_mean": {k: mean(k, rows[-n:]) for k in keys} if rows else {},
            "sigma_t0": self.restorer.sigma_t0, "timestep_t0": self.restorer.timestep_t0,
            "outputs": {k: str(self.exp_dir / k) for k in ("latest.pt", "best.pt", "latest", "best", "train_log.csv",
                                                             "train_summary.json")},
            "config": self.cfg.to_dict(),
        }


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def _as_tuple(value):
    """``random.setstate`` needs nested tuples; a checkpoint round trip may hand back lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def _finite(x: float):
    return None if x is None or not math.isfinite(x) else float(x)


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else v
