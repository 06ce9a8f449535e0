"""Stock nerfstudio settings shared by the methods of both packages (``difix3d*`` in ``difix_ns.nerfstudio``,
``nifi-splatfacto`` in ``nifi_ns.nerfstudio``): nerfacto / splatfacto optimizer groups, splatfacto's trainer
settings, and the CPU support switch their method configs call. It sits outside either method package so neither
imports the other's nerfstudio integration for it.

nerfstudio's own tables live in ``nerfstudio.configs.method_configs``, which imports the plugins' entry points
while it is itself being imported, so a plugin cannot read them from there (circular import). These copies keep the
stock group names and schedules, so plain nerfacto / splatfacto checkpoints (optimizer state included) load as-is.
"""

from __future__ import annotations

from typing import Optional

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig

from difix_ns.nerfstudio.device import auto_machine


def _adam(lr: float, final: Optional[float] = None, max_steps: int = 30000, warmup: int = 0) -> dict:
    scheduler = None
    if final is not None:
        scheduler = ExponentialDecaySchedulerConfig(
            lr_final=final, max_steps=max_steps, warmup_steps=warmup, lr_pre_warmup=0 if warmup else 1e-8
        )
    return {"optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15), "scheduler": scheduler}


def nerfacto_optimizers() -> dict:
    return {
        "proposal_networks": _adam(1e-2, final=1e-4, max_steps=200000),
        "fields": _adam(1e-2, final=1e-4, max_steps=200000),
        "camera_opt": _adam(1e-3, final=1e-4, max_steps=5000),
    }


def splatfacto_optimizers() -> dict:
    # The group names must equal splatfacto's gauss_params keys: the densification strategy edits their state.
    return {
        "means": _adam(1.6e-4, final=1.6e-6),
        "features_dc": _adam(0.0025),
        "features_rest": _adam(0.0025 / 20),
        "opacities": _adam(0.05),
        "scales": _adam(0.005),
        "quats": _adam(0.001),
        "camera_opt": _adam(1e-4, final=5e-7, warmup=1000),
        "bilateral_grid": _adam(2e-3, final=1e-4, warmup=1000),
    }


def splatfacto_trainer_settings() -> dict:
    """Stock splatfacto ``TrainerConfig`` fields (everything but ``method_name`` and ``pipeline``)."""
    return dict(
        steps_per_eval_image=100,
        steps_per_eval_batch=0,
        steps_per_save=2000,
        steps_per_eval_all_images=1000,
        max_num_iterations=30000,
        mixed_precision=False,
        optimizers=splatfacto_optimizers(),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
        machine=auto_machine(),
    )
