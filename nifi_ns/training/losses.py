"""Loss maths of NiFi training (reference nifi.md §1.4-§1.5); torch only, shapes [B,C,h,w] latents.

Restoring distribution matching (TSD-SR form, velocity space, same ε and t for both branches):
    g_KL = σ²·(v_teacher(x̂_t) - v_critic(x̂_t))         (DMD: moves x̂ toward the real score, away from the fake one)
    g_GT = σ²·(v_teacher(x̂_t) - v_teacher(x_t))         (anchors the update at the noised photo latent x_t)
    g    = α·g_KL + (1 - α)·g_GT,   α = 0.7
    L_KL = ½‖x̂ - sg(x̂ - g)‖²   =>   ∂L_KL/∂x̂ = g exactly (sum reduction, no batch averaging)
Critic φ⁺ (Eq. 8, flow-matching form): ‖v_critic((1-σ)·sg(x̂) + σ·ε) - (ε - sg(x̂))‖² (mean).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _sigma2(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, device=like.device, dtype=like.dtype)
    return (sigma.reshape(-1, *([1] * (like.ndim - 1))) if sigma.ndim else sigma) ** 2


def cfg(v_uncond: torch.Tensor, v_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: v_u + s·(v_c - v_u)."""
    return v_uncond + scale * (v_cond - v_uncond)


def kl_direction(sigma, v_teacher_fake: torch.Tensor, v_critic_fake: torch.Tensor) -> torch.Tensor:
    """g_KL = σ²·(v_θ(x̂_t) - v_{θ,φ⁺}(x̂_t))."""
    return _sigma2(sigma, v_teacher_fake) * (v_teacher_fake - v_critic_fake)


def gt_direction(sigma, v_teacher_fake: torch.Tensor, v_teacher_real: torch.Tensor) -> torch.Tensor:
    """g_GT = σ²·(v_θ(x̂_t) - v_θ(x_t))."""
    return _sigma2(sigma, v_teacher_fake) * (v_teacher_fake - v_teacher_real)


def distribution_matching_gradient(
    sigma, v_teacher_fake: torch.Tensor, v_critic_fake: torch.Tensor, v_teacher_real: torch.Tensor, alpha: float = 0.7
) -> torch.Tensor:
    """g = α·g_KL + (1 - α)·g_GT (detached)."""
    g = alpha * kl_direction(sigma, v_teacher_fake, v_critic_fake)
    g = g + (1 - alpha) * gt_direction(sigma, v_teacher_fake, v_teacher_real)
    return g.detach()


class _SurrogateKL(torch.autograd.Function):
    """Forward ½‖g‖², backward g: the value and gradient of ½‖x̂ - sg(x̂ - g)‖² without its rounding.

    Written literally, the residual x̂ - (x̂ - g) is g only up to one ulp of x̂ in floating point; this Function hands
    autograd g itself, so ∂L/∂x̂ = g holds bit for bit.
    """

    @staticmethod
    def forward(ctx, x_hat, g):
        ctx.save_for_backward(g)
        return 0.5 * g.float().pow(2).sum()

    @staticmethod
    def backward(ctx, grad_out):
        (g,) = ctx.saved_tensors
        return (grad_out * g).to(g.dtype), None


def distribution_matching_loss(x_hat: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """½‖x̂ - sg(x̂ - g)‖² (summed over all elements); its gradient w.r.t. x̂ is exactly ``g``."""
    if x_hat.shape != g.shape:
        raise ValueError(f"x_hat {tuple(x_hat.shape)} and g {tuple(g.shape)} must have the same shape")
    return _SurrogateKL.apply(x_hat, g.detach().to(x_hat.dtype))


def critic_flow_loss(v_critic: torch.Tensor, noise: torch.Tensor, x_hat_detached: torch.Tensor) -> torch.Tensor:
    """Flow-matching MSE of the critic on detached restored latents (target velocity ε - x̂)."""
    return F.mse_loss(v_critic.float(), (noise - x_hat_detached).float().detach())


def perceptual_losses(restored_m11: torch.Tensor, clean_m11: torch.Tensor, lpips_module) -> dict[str, torch.Tensor]:
    """ℓ₂ (images in [-1,1]) and LPIPS (module takes [0,1]) between the decoded restoration and the photograph."""
    l2 = F.mse_loss(restored_m11.float(), clean_m11.float())
    lp = lpips_module((restored_m11.float() + 1) / 2, (clean_m11.float() + 1) / 2).mean()
    return {"l2": l2, "lpips": lp}
