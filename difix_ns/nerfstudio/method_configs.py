"""``difix3d`` (nerfacto-based) and ``difix3d-splatfacto`` (splatfacto/gsplat-based) method specifications.

Imported by every ``ns-*`` command through the ``nerfstudio.method_configs`` entry points, so it stays
import-light: nerfstudio and torch only (the Difix fixer imports diffusers on its first fix round).
"""

from __future__ import annotations

from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from difix_ns.nerfstudio.datamanager import Difix3DDataManagerConfig, Difix3DFullImageDatamanagerConfig
from difix_ns.nerfstudio.device import auto_machine
from difix_ns.nerfstudio.models import Difix3DNerfactoModelConfig, Difix3DSplatfactoModelConfig
from difix_ns.nerfstudio.pipeline import Difix3DPipelineConfig
from difix_ns.nerfstudio_stock import nerfacto_optimizers, splatfacto_trainer_settings
from difix_ns.nerfstudio_patches import install_for_method_configs


install_for_method_configs()  # CPU splatfacto, offline LPIPS, stock ns-render help (see difix_ns.nerfstudio_patches)


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
        optimizers=nerfacto_optimizers(),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
        machine=auto_machine(),
    ),
    description="Difix3D on nerfacto: progressive training on Difix-fixed novel views (fix rounds every 2000 steps).",
)

difix3d_splatfacto_method = MethodSpecification(
    config=TrainerConfig(
        method_name="difix3d-splatfacto",
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
        **splatfacto_trainer_settings(),
    ),
    description="Difix3D on splatfacto (gsplat): progressive training on Difix-fixed novel views (every 3000 steps).",
)
