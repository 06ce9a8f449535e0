"""`nifi-splatfacto`: splatfacto training followed by NiFi compression (prune -> fine-tune -> quantize).

Import-light: nerfstudio imports this module for every ``ns-*`` command (entry point ``nifi_splatfacto_method``),
so only nerfstudio config classes are imported here; the codec, metrics and restorer load when first used.
"""
from __future__ import annotations

from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.models.splatfacto import SplatfactoModelConfig
from nerfstudio.plugins.types import MethodSpecification

from difix_ns.nerfstudio_stock import splatfacto_trainer_settings
from nifi_ns.nerfstudio.nifi_pipeline import NifiPipelineConfig
from nifi_ns.nerfstudio_patches import install_for_method_configs


install_for_method_configs()  # CPU splatfacto, offline LPIPS, ns-eval --pipeline.restorer.* (see nerfstudio_patches)


def nifi_splatfacto_config() -> TrainerConfig:
    """The `nifi-splatfacto` trainer config: stock splatfacto hyper-parameters plus the NiFi pipeline."""
    return TrainerConfig(
        method_name="nifi-splatfacto",
        pipeline=NifiPipelineConfig(
            datamanager=FullImageDatamanagerConfig(
                dataparser=NerfstudioDataParserConfig(load_3D_points=True),
                cache_images_type="uint8",
            ),
            model=SplatfactoModelConfig(),
        ),
        **splatfacto_trainer_settings(),
    )


nifi_splatfacto_method = MethodSpecification(
    config=nifi_splatfacto_config(),
    description="Splatfacto + NiFi rate-controlled compression (containers per rate in <run>/nifi/); "
    "ns-eval adds compressed/ and (with a restorer) restored/ metrics per rate.",
)
