"""Random-weight Fixer models in the exact ``nvidia/Fixer`` file layout, for offline tests and benchmarks.

``save_tiny_fixer(path)`` writes the three files (a few MB) with NVIDIA's key names and containers:

* ``base/model_fast_tokenizer.pt``: a tiny DiT (2 heads x 32, 2 layers) as ``net.*`` with bf16 parameters, the
  RoPE buffers, the training counters and transformer-engine style ``_extra_state`` entries (uint8 tensors);
* ``base/tokenizer_fast.pth``: a tiny scripted encoder/decoder with the real interface (3 -> 16 latent channels,
  /8 and x8, the encoder returns a tuple) as TorchScript archive bytes, plus ``mean_std``;
* ``pretrained/pretrained_fixer.pkl``: a perturbed float32 overlay (``state_dict_unet`` with ``dit.*`` and
  ``tokenizer.*``, ``state_dict_vae`` with ``encoder.*``/``decoder.*``), as NVIDIA's training script saves it.

Weights come from a seeded CPU ``torch.Generator``, so the same seed gives the same files. Random weights prove
plumbing and numerical parity, not quality.
"""
from __future__ import annotations

import io
import math
import pickle
import warnings
from pathlib import Path
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from difix_ns.fixers import cosmos_files as files

TINY_DIT = dict(heads=2, head_dim=32, layers=2, adaln_lora_dim=16, text_dim=1024, mlp_ratio=4)
REAL_DIT = dict(heads=20, head_dim=64, layers=20, adaln_lora_dim=256, text_dim=1024, mlp_ratio=4)


class TinyImageEncoder(nn.Module):
    """[B,3,H,W] -> ([B,16,H/8,W/8], scalar): three stride-2 convolutions."""

    def __init__(self, width: int = 8, latent_channels: int = files.LATENT_CHANNELS) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, width, 3, padding=1)
        self.down = nn.ModuleList([nn.Conv2d(width, width, 4, stride=2, padding=1) for _ in range(3)])
        self.conv_out = nn.Conv2d(width, latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = self.conv_in(x)
        for layer in self.down:
            h = F.silu(layer(h))
        z = self.conv_out(h)
        return z, z.mean()


class TinyImageDecoder(nn.Module):
    """[B,16,h,w] -> [B,3,8h,8w]: three nearest x2 upsamplings, each followed by a convolution."""

    def __init__(self, width: int = 8, latent_channels: int = files.LATENT_CHANNELS) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(latent_channels, width, 3, padding=1)
        self.up = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1) for _ in range(3)])
        self.conv_out = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for layer in self.up:
            h = F.silu(layer(F.interpolate(h, scale_factor=2.0, mode="nearest")))
        return self.conv_out(h)


def nvidia_dit_keys(layers: int) -> list[str]:
    """Every key of NVIDIA's MiniTrainDIT state dict (without ``net.``) for a 0.6B-style configuration."""
    keys = ["x_embedder.proj.1.weight", "pos_embedder.seq", "pos_embedder.dim_spatial_range",
            "pos_embedder.dim_temporal_range", "t_embedder.1.linear_1.weight", "t_embedder.1.linear_2.weight"]
    for i in range(layers):
        b = f"blocks.{i}"
        for attn in ("self_attn", "cross_attn"):
            keys += [f"{b}.{attn}.{p}.weight" for p in ("q_proj", "q_norm", "k_proj", "k_norm", "v_proj",
                                                         "output_proj")]
            keys.append(f"{b}.{attn}.attn_op._extra_state")
        keys += [f"{b}.mlp.layer1.weight", f"{b}.mlp.layer2.weight"]
        for part in ("self_attn", "cross_attn", "mlp"):
            keys += [f"{b}.adaln_modulation_{part}.1.weight", f"{b}.adaln_modulation_{part}.2.weight"]
    keys += ["final_layer.adaln_modulation.1.weight", "final_layer.adaln_modulation.2.weight",
             "final_layer.linear.weight", "t_embedding_norm.weight", "accum_video_sample_counter",
             "accum_image_sample_counter", "accum_iteration", "accum_train_in_hours"]
    return keys


def dit_config(sizes: dict) -> dict:
    return dict(in_channels=files.LATENT_CHANNELS, out_channels=files.LATENT_CHANNELS,
                num_attention_heads=sizes["heads"], attention_head_dim=sizes["head_dim"], num_layers=sizes["layers"],
                mlp_ratio=float(sizes["mlp_ratio"]), text_embed_dim=sizes["text_dim"],
                adaln_lora_dim=sizes["adaln_lora_dim"], max_size=files.MAX_SIZE, patch_size=files.PATCH_SIZE,
                rope_scale=files.ROPE_SCALE, concat_padding_mask=True, extra_pos_embed_type=None)


def _extra_state() -> torch.Tensor:
    return torch.frombuffer(bytearray(pickle.dumps(None)), dtype=torch.uint8).clone()


def _random_value(key: str, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    if key.endswith(("q_norm.weight", "k_norm.weight")):  # sharp attention, so positions (RoPE) matter
        return 2.5 + 0.25 * torch.randn(shape, generator=gen)
    if key.endswith("norm.weight"):
        return 1 + 0.1 * torch.randn(shape, generator=gen)
    fan_in = shape[-1] if len(shape) > 1 else 1
    return torch.randn(shape, generator=gen) / math.sqrt(fan_in)


def nvidia_dit_state(sizes: dict, gen: torch.Generator, param_dtype=torch.bfloat16) -> dict[str, torch.Tensor]:
    """Random NVIDIA-named DiT state dict (``net.*``) with the shapes of ``sizes``."""
    from difix_ns.fixers.cosmos_fixer import build_transformer

    config = dit_config(sizes)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in build_transformer(config, device="meta").state_dict().items()}
    head_dim = sizes["head_dim"]
    dim_h = head_dim // 6 * 2
    dim_t = head_dim - 2 * dim_h
    seq_len = max(m // p for m, p in zip(files.MAX_SIZE, files.PATCH_SIZE))
    state: dict[str, torch.Tensor] = {}
    for key in nvidia_dit_keys(sizes["layers"]):
        if key.endswith("._extra_state"):
            value = _extra_state()
        elif key == "pos_embedder.seq":
            value = torch.arange(seq_len, dtype=torch.float32)
        elif key == "pos_embedder.dim_spatial_range":
            value = torch.arange(0, dim_h, 2)[: dim_h // 2].float() / dim_h
        elif key == "pos_embedder.dim_temporal_range":
            value = torch.arange(0, dim_t, 2)[: dim_t // 2].float() / dim_t
        elif key.startswith("accum_"):
            value = torch.tensor(0.0) if key == "accum_train_in_hours" else torch.tensor(0, dtype=torch.int64)
        else:
            value = _random_value(key, shapes[files.rename_dit_key(key)], gen).to(param_dtype)
        state[f"net.{key}"] = value
    return state


def _scripted_bytes(module: nn.Module) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # torch >= 2.9 flags TorchScript as deprecated; NVIDIA's format uses it
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(module.eval()), buffer)
    return buffer.getvalue()


def _randomize(module: nn.Module, gen: torch.Generator, scale: float = 1.0) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            fan_in = p[0].numel() if p.ndim > 1 else 1
            p.copy_(scale * torch.randn(p.shape, generator=gen) / math.sqrt(fan_in) if p.ndim > 1
                    else 0.05 * torch.randn(p.shape, generator=gen))


def _perturbed(state: dict[str, torch.Tensor], gen: torch.Generator, amount: float) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if value.is_floating_point() and not key.endswith(("pos_embedder.seq", "_range", "accum_train_in_hours")):
            noise = amount * value.float().std().nan_to_num(1.0) * torch.randn(value.shape, generator=gen)
            out[key] = value.float() + noise
        else:
            out[key] = value.clone()
    return out


def save_tiny_fixer(path, seed: int = 0, sizes: Optional[dict] = None) -> Path:
    """Write a tiny random-weight Fixer in the ``nvidia/Fixer`` layout to ``path``; returns the path."""
    path = Path(path)
    sizes = dict(TINY_DIT if sizes is None else sizes)
    gen = torch.Generator().manual_seed(seed)
    base = nvidia_dit_state(sizes, gen)

    encoder, decoder = TinyImageEncoder(), TinyImageDecoder()
    _randomize(encoder, gen)
    _randomize(decoder, gen, scale=1.6)  # outputs of order 0.5 rather than 0.05
    mean = 0.3 * torch.randn(files.LATENT_CHANNELS, generator=gen)
    std = 0.5 + torch.rand(files.LATENT_CHANNELS, generator=gen)
    tokenizer = {"encoder": _scripted_bytes(encoder), "decoder": _scripted_bytes(decoder), "mean_std": (mean, std)}

    # The fine-tune: the whole pipeline state (float32, as saved after mixed-precision training), perturbed.
    dit = _perturbed({"dit." + k[len("net."):]: v for k, v in base.items()}, gen, 0.1)
    enc_state = _perturbed({f"encoder.{k}": v for k, v in encoder.state_dict().items()}, gen, 0.1)
    dec_state = _perturbed({f"decoder.{k}": v for k, v in decoder.state_dict().items()}, gen, 0.1)
    unet = dict(dit)
    unet.update({f"tokenizer.{k}": v.clone() for k, v in {**enc_state, **dec_state}.items()})
    overlay = {"state_dict_unet": unet, "state_dict_vae": {**enc_state, **dec_state}}

    for name, obj in ((files.DIT_FILE, base), (files.TOKENIZER_FILE, tokenizer), (files.OVERLAY_FILE, overlay)):
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj, path / name)
    return path


class StandInTokenizer(nn.Module):
    """Eager image tokenizer of a realistic size for timing only (NVIDIA's TorchScript tokenizer is not public
    outside the weights): diffusers' AutoencoderKL with SD-VAE widths (128, 256, 512, 512) and 16 latent
    channels, /8. ``encoder`` / ``decoder`` follow the Fixer tokenizer interface."""

    def __init__(self) -> None:
        super().__init__()
        from diffusers import AutoencoderKL

        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=files.LATENT_CHANNELS,
                            block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
        self.encoder = _StandInEncoder(vae)
        self.decoder = _StandInDecoder(vae)


class _StandInEncoder(nn.Module):
    def __init__(self, vae) -> None:
        super().__init__()
        self.encoder, self.quant_conv = vae.encoder, vae.quant_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(x))[:, : files.LATENT_CHANNELS]


class _StandInDecoder(nn.Module):
    def __init__(self, vae) -> None:
        super().__init__()
        self.decoder, self.post_quant_conv = vae.decoder, vae.post_quant_conv

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))


def build_fixer_pipeline(size: str = "real", device: Optional[str] = None, dtype: torch.dtype = torch.float32,
                         seed: int = 0):
    """A random-weight ``CosmosFixerPipeline`` in memory. ``size="real"``: the 0.6B DiT (20 heads x 64, 20 layers)
    with the ``StandInTokenizer``; ``size="tiny"``: the tiny DiT and the tiny tokenizer (eager)."""
    from difix_ns.fixers.cosmos_fixer import CosmosFixerPipeline, build_transformer

    torch.manual_seed(seed)
    sizes = REAL_DIT if size == "real" else TINY_DIT
    transformer = build_transformer(dit_config(sizes), device=device)
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            if p.ndim > 1:
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[-1]))
    if size == "real":
        with torch.device(device or "cpu"):
            tok = StandInTokenizer()
        encoder, decoder = tok.encoder, tok.decoder
    else:
        encoder, decoder = TinyImageEncoder().to(device), TinyImageDecoder().to(device)
    mean = torch.zeros(files.LATENT_CHANNELS, device=device)
    std = torch.ones(files.LATENT_CHANNELS, device=device)
    pipe = CosmosFixerPipeline(transformer, encoder.eval().requires_grad_(False),
                               decoder.eval().requires_grad_(False), mean, std, name=f"random-{size}-fixer")
    return pipe.to(device=device, dtype=dtype)


def parity_image(height: int, width: int) -> torch.Tensor:
    """A deterministic smooth test image [1,3,H,W] in [0,1] (sinusoids and a ramp; no RNG involved)."""
    y = torch.linspace(0, 1, height, dtype=torch.float64)[:, None]
    x = torch.linspace(0, 1, width, dtype=torch.float64)[None, :]
    r = 0.5 + 0.4 * torch.sin(2 * math.pi * (3 * x + 2 * y))
    g = 0.5 + 0.4 * torch.cos(2 * math.pi * (5 * x * y + y))
    b = (0.2 + 0.6 * x * (1 - y)).expand(height, width)
    return torch.stack([r, g, b])[None].float()
