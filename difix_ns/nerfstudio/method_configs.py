"""``difix3d`` (nerfacto-based) and ``difix3d-splatfacto`` (splatfacto/gsplat-based) method specifications.

Imported by every ``ns-*`` command through the ``nerfstudio.method_configs`` entry points, so it stays
import-light: nerfstudio and torch only (the Difix fixer imports diffusers on its first fix round).
"""

from __future__ import annotations

from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from difix_ns.nerfstudio.datamanager import Difix3DDataManagerConfig, Difix3DFullImageDatamanagerConfig
from difix_ns.nerfstudio.models import Difix3DNerfactoModelConfig, Difix3DSplatfactoModelConfig
from difix_ns.nerfstudio.pipeline import Difix3DPipelineConfig


def _install_cpu_support() -> None:
    """Let splatfacto run on CPU-only machines (rasterizer, ``.cuda()`` calls, offline LPIPS); no-op with CUDA."""
    try:
        from difix_ns.splat import install_cpu_support
    except ImportError:  # difix_ns.splat.cpu not importable: leave nerfstudio untouched
        return
    install_cpu_support()


_install_cpu_support()


def _nerfacto_optimizers() -> dict:
    # Stock nerfacto groups and schedules, so a plain nerfacto checkpoint's optimizer state loads as-is.
    return {
        "proposal_networks": {
            "optimizer": AdamOptimizerConfig(lr=1e-2, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-4, max_steps=200000),
        },
        "fields": {
            "optimizer": AdamOptimizerConfig(lr=1e-2, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-4, max_steps=200000),
        },
        "camera_opt": {
            "optimizer": AdamOptimizerConfig(lr=1e-3, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-4, max_steps=5000),
        },
    }


def _splatfacto_optimizers() -> dict:
    # Stock splatfacto (training from scratch, like the seed's recipe); the group names must equal the
    # gauss_params keys because the densification strategy edits the optimizer state.
    return {
        "means": {
            "optimizer": AdamOptimizerConfig(lr=1.6e-4, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=1.6e-6, max_steps=30000),
        },
        "features_dc": {"optimizer": AdamOptimizerConfig(lr=0.0025, eps=1e-15), "scheduler": None},
        "features_rest": {"optimizer": AdamOptimizerConfig(lr=0.0025 / 20, eps=1e-15), "scheduler": None},
        "opacities": {"optimizer": AdamOptimizerConfig(lr=0.05, eps=1e-15), "scheduler": None},
        "scales": {"optimizer": AdamOptimizerConfig(lr=0.005, eps=1e-15), "scheduler": None},
        "quats": {"optimizer": AdamOptimizerConfig(lr=0.001, eps=1e-15), "scheduler": None},
        "camera_opt": {
            "optimizer": AdamOptimizerConfig(lr=1e-4, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(
                lr_final=5e-7, max_steps=30000, warmup_steps=1000, lr_pre_warmup=0
            ),
        },
        "bilateral_grid": {
            "optimizer": AdamOptimizerConfig(lr=2e-3, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(
                lr_final=1e-4, max_steps=30000, warmup_steps=1000, lr_pre_warmup=0
            ),
        },
    }


difix3d_method = MethodSpecification(
    config=TrainerConfig(
        method_name="difix3d",
        steps_per_eval_batch=500,
        steps_per_save=2000,
        max_num_iterations=30000,
        mixed_precision=True,
        pipeline=Difix3DPipelineConfig(
            datamanager=Difix3DDataManagerConfig(
                dataparser=NerfstudioDataParserConfig(),
                train_num_rays_per_batch=4096,
                eval_num_rays_per_batch=4096,
                pool_sample_prob=0.4,
            ),
            model=Difix3DNerfactoModelConfig(
                eval_num_rays_per_chunk=1 << 15,
                average_init_density=0.01,
                camera_optimizer=CameraOptimizerConfig(mode="SO3xR3"),
            ),
            fix_every=2000,
            pool_loss_weight=1.0,
            train_loss_weight=1.0,
        ),
        optimizers=_nerfacto_optimizers(),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    ),
    description="Difix3D on nerfacto: progressive training on Difix-fixed novel views (fix rounds every 2000 steps).",
)

difix3d_splatfacto_method = MethodSpecification(
    config=TrainerConfig(
        method_name="difix3d-splatfacto",
        steps_per_eval_image=100,
        steps_per_eval_batch=0,
        steps_per_save=2000,
        steps_per_eval_all_images=1000,
        max_num_iterations=30000,
        mixed_precision=False,
        pipeline=Difix3DPipelineConfig(
            datamanager=Difix3DFullImageDatamanagerConfig(
                dataparser=NerfstudioDataParserConfig(load_3D_points=True),
                cache_images_type="uint8",
                pool_sample_prob=0.3,
            ),
            model=Difix3DSplatfactoModelConfig(),
            fix_every=3000,
            pool_loss_weight=0.3,
            train_loss_weight=1.5,
        ),
        optimizers=_splatfacto_optimizers(),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    ),
    description="Difix3D on splatfacto (gsplat): progressive training on Difix-fixed novel views (every 3000 steps).",
)
