"""Tiny random-weight restorer backbones saved in the real diffusers layouts (tests, CPU smoke runs).

``make_tiny_sd3(path)`` writes what ``stabilityai/stable-diffusion-3-medium-diffusers`` holds: ``model_index.json``,
``transformer/``, ``vae/`` (16 latent channels, SD3 scaling/shift factors), ``scheduler/`` (flow matching, shift 3),
``text_encoder/`` + ``text_encoder_2/`` (CLIP with projection), ``text_encoder_3/`` (T5) and the three tokenizers;
``make_tiny_sdturbo(path)`` writes the SD-Turbo layout (UNet, 4-channel VAE, DDPM schedule of sd-turbo, CLIP).
Everything is loaded back through the same ``from_pretrained`` path as the real models; nothing touches a hub.
Random weights prove plumbing, never quality.

CLI: ``python -m nifi_ns.cli.make_tiny_backbone --backbone sd3 --out tiny_sd3``.
"""
from __future__ import annotations

import json
import string
from pathlib import Path

import torch

from difix_ns.diffusion.random_weights import mark_random_weights

_CHARS = string.ascii_lowercase + string.digits + ",.!-'"
SD3_VAE_SCALING, SD3_VAE_SHIFT = 1.5305, 0.0609  # SD3-medium's VAE config values


def _clip_tokenizer():
    from transformers import CLIPTokenizer

    vocab = {c: i for i, c in enumerate(_CHARS)}
    vocab.update({c + "</w>": len(_CHARS) + i for i, c in enumerate(_CHARS)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _t5_tokenizer():
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.5)]
    pieces += [("\u2581" + c, -1.0) for c in _CHARS] + [(c, -2.0) for c in _CHARS]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=256)


def _clip_text(cls, tokenizer, hidden: int = 16, projection: int = 16):
    from transformers import CLIPTextConfig

    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=projection,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return cls(config).eval()


def _tiny_vae(latent_channels: int, scaling: float, shift: float | None, sd3_layout: bool = False):
    from diffusers import AutoencoderKL

    # 4 resolution levels like the real VAEs: 8 pixels per latent cell. `sd3_layout`: 2 resnets per block and the
    # channel changes of SD3's VAE (128, 256, 512, 512 -> conv_shortcut in down_blocks.1 and .2), so the encoder has
    # exactly the module names of the official NiFi VAE target list.
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(4, 8, 16, 16) if sd3_layout else (8, 8, 16, 16), layers_per_block=2 if sd3_layout else 1,
        norm_num_groups=4, sample_size=64,
        scaling_factor=scaling, shift_factor=shift, use_quant_conv=shift is None, use_post_quant_conv=shift is None,
    )


def make_tiny_sd3(path: str | Path, seed: int = 0, sd3_vae_layout: bool = False) -> Path:
    """Write a tiny random SD3 pipeline folder (about 1 MB) and return its path.

    ``sd3_vae_layout`` gives the VAE encoder SD3-medium's module names (see ``_tiny_vae``)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    tok, tok3 = _clip_tokenizer(), _t5_tokenizer()
    # CLIP-L + CLIP-G hidden sizes (16 + 16) pad into the T5 width (32) = joint_attention_dim, as 768+1280 -> 4096.
    transformer = SD3Transformer2DModel(
        sample_size=32, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=32, caption_projection_dim=16, pooled_projection_dim=32,
        pos_embed_max_size=32,
    )
    t5 = T5EncoderModel(T5Config(vocab_size=len(tok3), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                 decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)).eval()
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, vae=_tiny_vae(16, SD3_VAE_SCALING, SD3_VAE_SHIFT, sd3_vae_layout),
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        text_encoder=_clip_text(CLIPTextModelWithProjection, tok), tokenizer=tok,
        text_encoder_2=_clip_text(CLIPTextModelWithProjection, tok), tokenizer_2=_clip_tokenizer(),
        text_encoder_3=t5, tokenizer_3=tok3,
    )
    path = Path(path)
    pipe.save_pretrained(path)
    mark_random_weights(path)
    return path


def make_tiny_sdturbo(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny random SD-Turbo-layout folder (UNet + VAE + sd-turbo's DDPM schedule + CLIP)."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    path = Path(path)
    tok = _clip_tokenizer()
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4, use_linear_projection=True,
    )
    # sd-turbo's schedule (scaled-linear betas 0.00085 -> 0.012, epsilon prediction), as in the Difix core config.
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", prediction_type="epsilon", timestep_spacing="trailing")
    components = {
        "unet": unet, "vae": _tiny_vae(4, 0.18215, None), "scheduler": scheduler,
        "text_encoder": _clip_text(CLIPTextModel, tok), "tokenizer": tok,
    }
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1"}
    for name, component in components.items():
        component.save_pretrained(path / name)
        library = "transformers" if name.startswith(("text_encoder", "tokenizer")) else "diffusers"
        index[name] = [library, type(component).__name__]
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    mark_random_weights(path)
    return path



def fingerprint(tensors: dict) -> str:
    """sha256 of float32 tensors in sorted key order (nested dicts are walked): identifies generated weights."""
    import hashlib

    h = hashlib.sha256()

    def walk(prefix, value):
        if isinstance(value, dict):
            for k in sorted(value):
                walk(f"{prefix}{k}/", value[k])
        else:
            h.update(prefix.encode())
            h.update(torch.as_tensor(value).detach().float().contiguous().cpu().numpy().tobytes())

    walk("", tensors)
    return h.hexdigest()


def make_official_restorer_files(out: str | Path, seed: int = 0, lora_b_std: float = 0.02) -> dict:
    """A tiny SD3 (SD3-medium module names) plus a random restorer in the authors' released formats.

    Writes ``out/tiny_sd3/``, ``out/restorer.ckpt`` (official ``{'vae', 'transformer'}`` dict, adapter ``default``,
    rank 64, every A and B drawn from a seeded generator, so every LoRA changes the output) and
    ``out/embeddings.npz`` (official keys, random values). Returns the paths and a fingerprint of each part.
    Random weights: plumbing and parity only, never quality.
    """
    import numpy as np

    from nifi_ns.restoration import official as O
    from nifi_ns.restoration.backbones import SD3Backbone

    out = Path(out)
    model = make_tiny_sd3(out / "tiny_sd3", seed=seed, sd3_vae_layout=True)
    backbone = SD3Backbone(model, device="cpu", dtype=torch.float32)
    backbone.add_generator_lora(O.OFFICIAL_RANK, O.OFFICIAL_ALPHA)
    parts, meta = backbone.generator_lora(O.OFFICIAL_RANK, O.OFFICIAL_ALPHA, {"t0": O.OFFICIAL_T0})
    g = torch.Generator().manual_seed(seed + 1)
    filled = {}
    for component in sorted(parts):
        filled[component] = {}
        for key in sorted(parts[component]):
            shape = parts[component][key].shape
            fan_in = int(np.prod(shape[1:])) if ".lora_A." in key else O.OFFICIAL_RANK
            std = fan_in ** -0.5 if ".lora_A." in key else lora_b_std
            filled[component][key] = torch.randn(shape, generator=g) * std
    ckpt = O.write_official_checkpoint(out / "restorer.ckpt", O.parts_to_official(filled, meta, "generated"))
    text = backbone.denoiser.config
    embeds = torch.randn(1, 12, int(text.joint_attention_dim), generator=g)
    pooled = torch.randn(1, int(text.pooled_projection_dim), generator=g)
    from nifi_ns.restoration.embeds import PromptEmbeds

    npz = O.write_official_npz(out / "embeddings.npz", PromptEmbeds(embeds, pooled))
    weights = {name: {k: v for k, v in module.state_dict().items() if "lora_" not in k}
               for name, module in (("transformer", backbone.denoiser), ("vae", backbone.vae))}
    return {
        "model": model, "ckpt": ckpt, "npz": npz,
        "fingerprints": {"model": fingerprint(weights), "ckpt": fingerprint(filled),
                         "npz": fingerprint({"prompt_embeds": embeds, "pooled_prompt_embeds": pooled})},
    }

MAKERS = {"sd3": make_tiny_sd3, "sdturbo": make_tiny_sdturbo}
