"""Rectified-flow maths of the NiFi restorer (torch only, no diffusers).

Conventions (reference nifi.md §1.3): x_t = (1 - σ)·x + σ·ε, the network predicts the velocity v = ε - x, and an
Euler step from σ_a to σ_b is x_b = x_a - (σ_a - σ_b)·v. Every backbone exposes a *training table*: 1000 entries of
(model timestep, σ) in ascending order; NiFi's t0 = 199 is looked up by model timestep in that table, as the
official code does, which for SD3 (shift 3) lands on σ ≈ 0.198, not on the unshifted 0.199.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SigmaTable:
    """The backbone's 1000-step training schedule, ascending in σ."""

    timesteps: torch.Tensor  # [N] model timesteps (what the network is conditioned on)
    sigmas: torch.Tensor  # [N] flow σ in (0, 1]

    def __post_init__(self):
        if self.timesteps.shape != self.sigmas.shape or self.sigmas.ndim != 1:
            raise ValueError("SigmaTable needs two 1-D tensors of the same length")
        if not bool((self.sigmas[1:] >= self.sigmas[:-1]).all()):
            raise ValueError("SigmaTable sigmas must be ascending")

    def __len__(self) -> int:
        return int(self.sigmas.numel())

    def index_of_timestep(self, timestep: float) -> int:
        """Entry whose model timestep is closest to ``timestep`` (the official t0 lookup)."""
        return int((self.timesteps.double() - float(timestep)).abs().argmin())

    def sigma_at_timestep(self, timestep: float) -> tuple[float, float]:
        """(σ, model timestep) of the entry nearest to ``timestep``."""
        i = self.index_of_timestep(timestep)
        return float(self.sigmas[i]), float(self.timesteps[i])

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])


def flow_sigma_table_sd3(scheduler) -> SigmaTable:
    """SD3's FlowMatchEulerDiscreteScheduler training table (shift already applied by the scheduler)."""
    sigmas = scheduler.sigmas.detach().double().cpu()
    sigmas = sigmas[sigmas > 0]  # a trailing terminal 0 appears only after set_timesteps
    timesteps = sigmas * scheduler.config.num_train_timesteps
    order = torch.argsort(sigmas)
    return SigmaTable(timesteps=timesteps[order].float(), sigmas=sigmas[order].float())


def vp_sigma_table(alphas_cumprod: torch.Tensor) -> SigmaTable:
    """A variance-preserving (DDPM) schedule seen as a rescaled rectified flow.

    x_vp = a·x + b·ε with a = √ᾱ, b = √(1-ᾱ) equals (a + b)·[(1 - σ)·x + σ·ε] with σ = b / (a + b), so an SD-Turbo
    UNet can be driven with exactly the same flow maths as SD3 (only the input scale and the output conversion differ).
    """
    a = alphas_cumprod.double().sqrt()
    b = (1 - alphas_cumprod.double()).sqrt()
    return SigmaTable(timesteps=torch.arange(len(a), dtype=torch.float32), sigmas=(b / (a + b)).float())


def _expand(sigma, like: torch.Tensor) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, device=like.device, dtype=like.dtype)
    return sigma.reshape(-1, *([1] * (like.ndim - 1))) if sigma.ndim else sigma


def add_noise(x: torch.Tensor, noise: torch.Tensor, sigma) -> torch.Tensor:
    """Eq. (2): x_t = (1 - σ)·x + σ·ε; ``sigma`` is a float or a per-sample tensor [B]."""
    s = _expand(sigma, x)
    return (1 - s) * x + s * noise


def euler_step(x_t: torch.Tensor, velocity: torch.Tensor, sigma_from, sigma_to) -> torch.Tensor:
    """Eq. (3)/(7): x_{t'} = x_t - (σ_t - σ_{t'})·v."""
    return x_t - (_expand(sigma_from, x_t) - _expand(sigma_to, x_t)) * velocity


def seeded_noise(shape, seed: int | None, device, dtype, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian noise; with a seed it is drawn on the CPU so the result is identical on every device."""
    if seed is not None:
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        return torch.randn(shape, generator=g, dtype=torch.float32).to(device=device, dtype=dtype)
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)
