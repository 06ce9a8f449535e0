"""Component configs: the real SD-Turbo-sized Difix (bundled JSON, reconstructed in difix_checkpoint.md) and a tiny
variant with the *same module structure and key names* but small widths, for offline tests.
"""
from __future__ import annotations

import copy
import json
from importlib import resources

REAL_CONFIG_FILES = {
    "unet": "unet_config.json",
    "vae": "vae_config.json",
    "scheduler": "scheduler_config.json",
    "text_encoder": "text_encoder_config.json",
}


def real_configs() -> dict[str, dict]:
    """Configs of nvidia/difix(_ref): SD-Turbo UNet (865.9M params), SD VAE + skips + LoRA, DDPM, 23-layer CLIP."""
    root = resources.files("difix_ns.models") / "configs"
    return {name: json.loads((root / fname).read_text()) for name, fname in REAL_CONFIG_FILES.items()}


def tiny_configs(vocab_size: int) -> dict[str, dict]:
    """Same block types, layer counts, attention layout and LoRA targets as the real model; tiny channel widths."""
    cfg = copy.deepcopy(real_configs())
    cfg["unet"].update(
        block_out_channels=[8, 16, 32, 32],  # keeps the real 1:2:4:4 ratio, so the same conv_shortcuts exist
        attention_head_dim=[1, 2, 4, 4],  # 8 channels per head
        cross_attention_dim=32,
        norm_num_groups=4,
        sample_size=8,
        _name_or_path="tiny-difix/unet",
    )
    cfg["vae"].update(
        block_out_channels=[8, 16, 32, 32],  # real is 128:256:512:512
        norm_num_groups=4,
        sample_size=64,
        _name_or_path="tiny-difix/vae",
    )
    cfg["text_encoder"].update(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        projection_dim=32,
        vocab_size=vocab_size,
        _name_or_path="tiny-difix/text_encoder",
    )
    return cfg
