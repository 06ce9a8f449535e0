"""Starting points of ``difix-train``: a pretrained Difix (hub id / local HF-layout dir) or an architecture built from
scratch with random weights.

Architectures (module structure and state-dict key names always equal nvidia/difix(_ref); only widths differ):

| name       | UNet widths            | VAE widths          | text encoder        | params (UNet + VAE) |
|------------|------------------------|---------------------|---------------------|---------------------|
| `sd-turbo` | 320, 640, 1280, 1280   | 128, 256, 512, 512  | 23 x 1024 (CLIP-H)  | 866M + 84M          |
| `small`    | 32, 64, 64, 64         | 16, 32, 64, 64      | 2 x 64              | 3.3M + 1.4M         |
| `tiny`     | 8, 16, 32, 32          | 8, 16, 32, 32       | 2 x 32              | tests only          |

From scratch there is no CLIP: the text encoder is random and frozen and the tokenizer is the small offline one of
``difix_ns.testing`` (the prompt is fixed, so the text branch only supplies a constant conditioning vector).
"""
from __future__ import annotations

import copy
from typing import Literal

ARCHITECTURES = ("sd-turbo", "small", "tiny")
Architecture = Literal["sd-turbo", "small", "tiny"]


def architecture_configs(name: str, vocab_size: int) -> dict[str, dict]:
    """Component configs of architecture ``name`` (see the module table)."""
    from difix_ns.models.configs import real_configs, tiny_configs

    if name == "tiny":
        return tiny_configs(vocab_size)
    cfg = copy.deepcopy(real_configs())
    if name == "sd-turbo":
        cfg["text_encoder"]["vocab_size"] = max(vocab_size, cfg["text_encoder"]["vocab_size"])
        return cfg
    if name != "small":
        raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(ARCHITECTURES)}")
    cfg["unet"].update(
        block_out_channels=[32, 64, 64, 64],
        attention_head_dim=[1, 2, 2, 2],  # 32 channels per head
        cross_attention_dim=64,
        norm_num_groups=8,
        sample_size=64,
        _name_or_path="difix-small/unet",
    )
    cfg["vae"].update(
        block_out_channels=[16, 32, 64, 64],
        norm_num_groups=8,
        sample_size=512,
        _name_or_path="difix-small/vae",
    )
    cfg["text_encoder"].update(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        projection_dim=64,
        vocab_size=vocab_size,
        _name_or_path="difix-small/text_encoder",
    )
    return cfg


def build_from_scratch(name: str, reference_mixing: bool = True, seed: int = 0, vae_lora_rank: int = 4):
    """A random-weight ``DifixPipeline`` of architecture ``name`` in the training init of upstream Difix
    (decoder skip convs at 1e-5, LoRA B = 0), so it starts close to a plain autoencoder."""
    import tempfile
    from pathlib import Path

    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from difix_ns.models.autoencoder import DifixAutoencoderKL
    from difix_ns.pipeline_difix import DifixPipeline
    from difix_ns.testing import write_tiny_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        vocab = write_tiny_tokenizer(Path(tmp) / "tokenizer")
        tokenizer = CLIPTokenizer.from_pretrained(str(Path(tmp) / "tokenizer"))
    cfg = architecture_configs(name, vocab)
    cfg["vae"]["lora_rank"] = vae_lora_rank
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(cfg["unet"])
    vae = DifixAutoencoderKL.from_config(cfg["vae"])
    text_encoder = CLIPTextModel(CLIPTextConfig.from_dict(cfg["text_encoder"]))
    scheduler = DDPMScheduler.from_config(cfg["scheduler"])
    pipe = DifixPipeline(vae, text_encoder, tokenizer, unet, scheduler, reference_mixing=reference_mixing)
    pipe.register_to_config(_name_or_path=f"difix-{name}{'_ref' if reference_mixing else ''}")
    return pipe
