"""`--pipeline.restorer.*`: the optional restorer of the ns-eval `restored` stage (import-light config)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, Optional

from nifi_ns.restoration.config import NiFiRestorerConfig


@dataclass
class NifiRestorerStageConfig:
    """NiFi restorer applied to compressed renders in ns-eval (off unless `enabled`).

    Mirrors the CLI-relevant fields of `nifi_ns.restoration.NiFiRestorerConfig` (which builds the model)."""

    enabled: bool = False
    """Run the `restored` eval stage (adds restored/rate_<r>/* metrics)."""
    backbone: Literal["sd3", "sdturbo"] = "sd3"
    """Restorer backbone: 'sd3' (SD3-medium, as in the paper) or 'sdturbo' (the SD-Turbo option)."""
    model_path: Optional[str] = None
    """Base model: local folder in the diffusers layout or a hub id (None: the backbone's hub id)."""
    lora_path: Optional[str] = None
    """Restorer (φ⁻) LoRA weights: the authors' released `3dgs-compression-restore.ckpt`, this project's safetensors,
    or a training checkpoint `runs/<exp>/best.pt` (its prompt embedding is then used too); recognised by content.
    None runs the bare base model (no restoration skill)."""
    prompt_embeds_path: Optional[str] = None
    """Precomputed prompt embedding: the official `default_embeddings.npz` or safetensors; with it no text encoder is
    loaded."""
    t0: int = 199
    """Intermediate timestep the degraded latent is noised to (SD3: sigma ~ 0.198)."""
    device: Optional[str] = None
    """Restorer device; None picks cuda when available, else cpu."""
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    """Precision on CUDA (CPU always runs float32)."""
    batch_size: int = 4
    """Frames per restorer forward pass."""
    seed: Optional[int] = 0
    """Seed of the t0 noise so restored metrics are reproducible; None draws fresh noise."""

    def restorer_config(self) -> NiFiRestorerConfig:
        shared = {f.name for f in fields(NiFiRestorerConfig)}
        return NiFiRestorerConfig(**{f.name: getattr(self, f.name) for f in fields(self) if f.name in shared})

    def setup(self):
        """Build the restorer (diffusers is imported here, not at config import)."""
        return self.restorer_config().setup()
