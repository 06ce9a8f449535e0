"""The restorer's settings as a plain dataclass: the one declaration of every NiFi restorer field (import-light:
no diffusers / transformers / peft).

``config.NiFiRestorerConfig`` is this dataclass plus ``setup()``; ``nifi_ns.nerfstudio.restorer_config`` derives the
``--pipeline.restorer.*`` stage config from it; the training YAML's ``model`` / ``diffusion`` keys map onto it in
``nifi_ns.training.config.NiFiTrainingConfig.restorer_settings``. The model (``restorer.py``) depends only on this
module, so configuration and model do not import each other.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal, Optional

from nifi_ns.restoration.embeds import DEFAULT_PROMPT

SD3_HUB_ID = "stabilityai/stable-diffusion-3-medium-diffusers"
SDTURBO_HUB_ID = "stabilityai/sd-turbo"
# The NiFi README names `stabilityai/stable-diffusion-3-medium`; that repository holds single-file checkpoints
# (sd3_medium*.safetensors, many GB each) and no diffusers layout, so its id loads the same weights' diffusers copy.
HUB_ALIASES = {"stabilityai/stable-diffusion-3-medium": SD3_HUB_ID}


@dataclass
class NiFiRestorerSettings:
    """One-step NiFi restorer: encode, noise to t0, one Euler step with the φ⁻ LoRA, decode."""

    backbone: Literal["sd3", "sdturbo"] = "sd3"
    """'sd3' is the paper's SD3-medium MMDiT; 'sdturbo' is the SD-Turbo option built on the Difix core."""
    model_path: Optional[str] = None
    """Base model: local folder in the diffusers layout or a hub id (None: SD3-medium-diffusers / sd-turbo;
    'stabilityai/stable-diffusion-3-medium' means its diffusers copy)."""
    lora_path: Optional[str] = None
    """φ⁻ LoRA weights: the authors' released .ckpt, or a file written by nifi training (phi_minus.safetensors or a
    runs/<exp>/best.pt checkpoint); recognised by content. None runs the bare base model (no restoration skill)."""
    prompt: str = DEFAULT_PROMPT
    """The fixed generator prompt (the TSD-SR default prompt NiFi's embeddings are built from)."""
    prompt_embeds_path: Optional[str] = None
    """Precomputed embedding of `prompt`: the official default_embeddings.npz, a safetensors file, or a training
    checkpoint .pt; with it no text encoder is loaded."""
    t0: int = 199
    """Intermediate timestep: the transformer is conditioned on it and σ is the training-table entry nearest to it
    (SD3: σ ≈ 0.198), as the official code does."""
    final_sigma: Optional[Literal["table_min", "zero"]] = None
    """Euler step target: 'table_min' (official SD3 code, σ≈0.003) or 'zero' (x̂0); None picks the backbone default."""
    device: Optional[str] = None
    """None -> 'cuda' if available else 'cpu'."""
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    """Weights / activations dtype on CUDA (the paper uses bf16); CPU always runs float32."""
    batch_size: int = 4
    """Frames restored per forward pass."""
    seed: Optional[int] = 0
    """Seed of the t0 noise (deterministic output); None draws fresh noise each call, as the official code does."""
    extra: dict = field(default_factory=dict)
    """Backbone keyword arguments (e.g. max_sequence_length for SD3's T5)."""

    def resolved_model_path(self) -> str:
        if self.model_path:
            alias = HUB_ALIASES.get(self.model_path.rstrip("/"))
            return alias if alias and not os.path.isdir(self.model_path) else self.model_path  # a local folder wins
        return SD3_HUB_ID if self.backbone == "sd3" else SDTURBO_HUB_ID
