"""`nifi-splatfacto`: splatfacto training followed by NiFi compression (prune -> fine-tune -> quantize).

Import-light: nerfstudio imports this module for every ``ns-*`` command (entry point ``nifi_splatfacto_method``),
so only nerfstudio config classes are imported here; the codec, metrics and restorer load when first used.
"""
from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.models.splatfacto import SplatfactoModelConfig
from nerfstudio.plugins.types import MethodSpecification

from nifi_ns.nerfstudio.nifi_pipeline import NifiPipelineConfig


def _install_cpu_support() -> None:
    """Let splatfacto (and so nifi-splatfacto) train and render without CUDA; no effect on CUDA machines."""
    try:
        from difix_ns.splat import install_cpu_support
    except ImportError:  # a broken CPU shim must not break every ns-* command; CUDA machines never need it
        return
    install_cpu_support()


_install_cpu_support()


def _adam(lr: float, final: float | None = None, warmup: int = 0) -> dict:
    scheduler = None
    if final is not None:
        scheduler = ExponentialDecaySchedulerConfig(
            lr_final=final, max_steps=30000, warmup_steps=warmup, lr_pre_warmup=0 if warmup else 1e-8
        )
    return {"optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15), "scheduler": scheduler}


def nifi_splatfacto_config() -> TrainerConfig:
    """The `nifi-splatfacto` trainer config: stock splatfacto hyper-parameters plus the NiFi pipeline."""
    return TrainerConfig(
        method_name="nifi-splatfacto",
        steps_per_eval_image=100,
        steps_per_eval_batch=0,
        steps_per_save=2000,
        steps_per_eval_all_images=1000,
        max_num_iterations=30000,
        mixed_precision=False,
        pipeline=NifiPipelineConfig(
            datamanager=FullImageDatamanagerConfig(
                dataparser=NerfstudioDataParserConfig(load_3D_points=True),
                cache_images_type="uint8",
            ),
            model=SplatfactoModelConfig(),
        ),
        optimizers={
            "means": _adam(1.6e-4, final=1.6e-6),
            "features_dc": _adam(0.0025),
            "features_rest": _adam(0.0025 / 20),
            "opacities": _adam(0.05),
            "scales": _adam(0.005),
            "quats": _adam(0.001),
            "camera_opt": _adam(1e-4, final=5e-7, warmup=1000),
            "bilateral_grid": _adam(2e-3, final=1e-4, warmup=1000),
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    )


nifi_splatfacto_method = MethodSpecification(
    config=nifi_splatfacto_config(),
    description="Splatfacto + NiFi rate-controlled compression (containers per rate in <run>/nifi/); "
    "ns-eval adds compressed/ and (with a restorer) restored/ metrics per rate.",
)
