"""NVIDIA Fixer (``nvidia/Fixer``): a one-step render fixer on the Cosmos-Predict2 0.6B DiT, no reference views.

``CosmosFixerPipeline`` is the model behind ``DifixFixer`` when the model folder holds the Fixer layout (see
``difix_ns.fixers.cosmos_files``); it exposes the same ``restore(x, refs, prompt=, timestep=)`` as
``DifixPipeline`` with ``reference_mixing = False``.

The forward pass follows NVIDIA's inference (nv-tlabs/Fixer with cosmos-predict2's text2image pipeline):

1. the caller resizes the render to the 1024x576 working size (``working_size``) and maps it to [-1, 1];
2. the TorchScript encoder gives the latent ``z`` (16 channels, 1/8 size; a tuple output keeps its first item),
   normalised with the file's per-channel ``mean_std``;
3. one rectified-flow step at ``timestep`` (default 250): sigma = timestep / 1000, t = sigma / (1 + sigma), and
   ``x0 = (1 - t) * z - t * DiT((1 - t) * z, t)``; the text embedding is all zeros, so cross-attention
   contributes exactly nothing and is skipped;
4. de-normalise, decode with the TorchScript decoder; the caller maps back to [0, 1] and the input size.

The DiT runs as diffusers' ``CosmosTransformer3DModel`` after renaming NVIDIA's keys; the query/key RMSNorm
epsilon is set to NVIDIA's 1e-6 (diffusers' default is 1e-5) and the rotary embedding is evaluated as NVIDIA's
code does (bfloat16-held frequency exponents, ``NvidiaRope3D``). Its weights are rounded to bfloat16 as in NVIDIA's
code (which copies the float32 fine-tune into bfloat16 parameters), also when computing in float32.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import torch

from difix_ns.fixers import cosmos_files as files

logger = logging.getLogger(__name__)

DEFAULT_TIMESTEP = 250
WORKING_SIZE = (576, 1024)  # (height, width) NVIDIA resizes every input to
DIT_PARAM_DTYPE = torch.bfloat16  # precision NVIDIA's inference holds the DiT weights in


class ZeroContextAttnProcessor:
    """Cross-attention against an all-zero text embedding. Keys and values are projections (no bias) of zeros,
    RMS-normalised zeros stay zero, so every attention output is exactly zero; nothing is computed."""

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 **kwargs) -> torch.Tensor:
        return torch.zeros_like(hidden_states)


class NvidiaRope3D(torch.nn.Module):
    """3D rotary embedding of Cosmos-Predict2 as NVIDIA's inference evaluates it.

    Per axis (t, h, w; head-dim split ``d_h = d_w = head_dim // 6 * 2``, ``d_t = head_dim - 2 d_h``) the
    frequencies are ``theta ** -(2k / d)`` with ``theta = 10000 * ratio ** (d / (d - 2))`` (NTK scaling by the
    extrapolation ratio, ``rope_scale`` = (t, h, w)); angles are position x frequency, laid out as [t, h, w] twice.
    NVIDIA keeps the exponents ``2k / d`` in buffers that its pipeline casts to bfloat16 with the DiT, so they are
    rounded to bfloat16 here too (an unrounded 0.2 instead of bf16's 0.2002 shifts high-position phases by ~1%).
    Returns (cos, sin) [T*H*W, head_dim] in float32, the form diffusers' Cosmos attention applies.
    """

    def __init__(self, head_dim: int, patch_size, rope_scale) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.patch_size = tuple(patch_size)
        self.rope_scale = tuple(float(r) for r in rope_scale)

    def _angles(self, dim: int, ratio: float, length: int, device) -> torch.Tensor:
        exponents = (torch.arange(0, dim, 2, device=device)[: dim // 2].float() / dim).to(torch.bfloat16).float()
        theta = 10000.0 * ratio ** (dim / (dim - 2))
        positions = torch.arange(length, device=device, dtype=torch.float32)
        return positions[:, None] * (1.0 / theta**exponents)[None, :]

    def forward(self, hidden_states: torch.Tensor, fps=None) -> tuple[torch.Tensor, torch.Tensor]:
        _, _, frames, height, width = hidden_states.shape
        t, h, w = frames // self.patch_size[0], height // self.patch_size[1], width // self.patch_size[2]
        dim_hw = self.head_dim // 6 * 2
        dim_t = self.head_dim - 2 * dim_hw
        device = hidden_states.device
        at = self._angles(dim_t, self.rope_scale[0], t, device)[:, None, None, :].expand(t, h, w, -1)
        ah = self._angles(dim_hw, self.rope_scale[1], h, device)[None, :, None, :].expand(t, h, w, -1)
        aw = self._angles(dim_hw, self.rope_scale[2], w, device)[None, None, :, :].expand(t, h, w, -1)
        angles = torch.cat([at, ah, aw, at, ah, aw], dim=-1).reshape(t * h * w, -1)
        return torch.cos(angles), torch.sin(angles)


def build_transformer(config: dict, device: Optional[torch.device | str] = None, dtype=None):
    """A ``CosmosTransformer3DModel`` wired like NVIDIA's DiT (qk-norm epsilon 1e-6, NVIDIA's RoPE evaluation,
    cross-attention skipped)."""
    from diffusers import CosmosTransformer3DModel

    with torch.device(device or "cpu"):
        model = CosmosTransformer3DModel(**config)
    model.rope = NvidiaRope3D(config["attention_head_dim"], config["patch_size"], config["rope_scale"])
    for block in model.transformer_blocks:
        block.attn1.norm_q.eps = 1e-6
        block.attn1.norm_k.eps = 1e-6
        block.attn2.set_processor(ZeroContextAttnProcessor())
    if dtype is not None:
        model = model.to(dtype)
    return model.eval().requires_grad_(False)


class CosmosFixerPipeline(torch.nn.Module):
    """Encoder, DiT, decoder and latent statistics of a Fixer model; ``restore`` runs the one-step fix."""

    reference_mixing = False
    default_timestep = DEFAULT_TIMESTEP
    working_size = WORKING_SIZE

    def __init__(self, transformer: torch.nn.Module, encoder: torch.nn.Module, decoder: torch.nn.Module,
                 latent_mean: torch.Tensor, latent_std: torch.Tensor, name: str = "fixer") -> None:
        super().__init__()
        self.transformer = transformer
        self.encoder = encoder
        self.decoder = decoder
        self.register_buffer("latent_mean", latent_mean.reshape(1, -1, 1, 1).float(), persistent=False)
        self.register_buffer("latent_std", latent_std.reshape(1, -1, 1, 1).float(), persistent=False)
        self.name = name
        self._warned_refs = False

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, torch_dtype: Optional[torch.dtype] = None):
        """Load the three files of a Fixer-layout folder (safe unpickler, strict keys) on CPU."""
        folder = Path(folder)
        dit_path, tok_path, overlay_path = (folder / name for name in files.FIXER_FILES)
        base = files.safe_load(dit_path)
        tokenizer = files.safe_load(tok_path)
        overlay = files.safe_load(overlay_path)
        if not isinstance(base, dict):
            raise files.FixerLoadError(f"{dit_path}: expected a state dict, got {type(base).__name__}")
        if not isinstance(tokenizer, dict) or not {"encoder", "decoder", "mean_std"} <= set(tokenizer):
            got = sorted(tokenizer) if isinstance(tokenizer, dict) else type(tokenizer).__name__
            raise files.FixerLoadError(f"{tok_path}: expected keys encoder, decoder, mean_std; got {got}")

        state = files.convert_dit_state_dict(base, "net.", str(dit_path))
        overlay_dit, overlay_encoder, overlay_decoder = files.split_overlay(overlay, str(overlay_path))
        state.update(files.convert_dit_state_dict(overlay_dit, "dit.", f"{overlay_path} (state_dict_unet)"))
        # NVIDIA keeps the DiT parameters in bfloat16 (the base file's dtype and Text2ImagePipeline's default) and
        # copies the float32 fine-tune into them, i.e. rounds it to bfloat16; float32 runs here do the same.
        state = {k: v.to(DIT_PARAM_DTYPE) if v.is_floating_point() else v for k, v in state.items()}
        config = files.dit_config_from_state(state, str(dit_path))
        transformer = build_transformer(config)
        files.strict_load(transformer, state, f"{dit_path} + {overlay_path}", files.nvidia_names(config["num_layers"]))

        encoder = files.load_scripted(tokenizer["encoder"], "encoder", str(tok_path))
        decoder = files.load_scripted(tokenizer["decoder"], "decoder", str(tok_path))
        files.strict_load(encoder, overlay_encoder, f"{overlay_path} (tokenizer encoder)")
        files.strict_load(decoder, overlay_decoder, f"{overlay_path} (tokenizer decoder)")
        mean, std = files.latent_mean_std(tokenizer["mean_std"], str(tok_path))
        pipe = cls(transformer, encoder.eval(), decoder.eval(), mean, std, name=str(folder))
        if torch_dtype is not None:
            pipe = pipe.to(dtype=torch_dtype)
        return pipe

    @property
    def model_dtype(self) -> torch.dtype:
        return self.transformer.proj_out.weight.dtype

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] in [-1,1] -> normalised latent [B,16,H/8,W/8] in the model dtype."""
        latent = self.encoder(x.to(self.model_dtype))
        if isinstance(latent, (tuple, list)):
            latent = latent[0]
        mean, std = self.latent_mean.to(latent.dtype), self.latent_std.to(latent.dtype)
        return (latent - mean) / std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latent -> image [B,3,8h,8w] (about [-1,1], not clamped)."""
        mean, std = self.latent_mean.to(z.dtype), self.latent_std.to(z.dtype)
        return self.decoder(z * std + mean)

    def flow_time(self, timestep: int, device=None) -> torch.Tensor:
        """t = sigma / (1 + sigma) with sigma = timestep / 1000, computed in the model dtype as NVIDIA does."""
        sigma = torch.tensor(float(timestep), dtype=self.model_dtype, device=device) / 1000
        return sigma / (sigma + 1)

    def denoise(self, z: torch.Tensor, timestep: int = DEFAULT_TIMESTEP) -> torch.Tensor:
        """One rectified-flow step from the clean-image latent: x0 = (1 - t) z - t DiT((1 - t) z, t) (float32)."""
        batch, _, height, width = z.shape
        t = self.flow_time(timestep, z.device)
        xt = (z * (1 - t)).to(self.model_dtype)[:, :, None]  # [B, C, T=1, h, w]
        text = torch.zeros(batch, 1, self.transformer.config.text_embed_dim, dtype=self.model_dtype, device=z.device)
        padding = torch.zeros(1, 1, height, width, dtype=self.model_dtype, device=z.device)
        net = self.transformer(hidden_states=xt, timestep=t.expand(batch), encoder_hidden_states=text,
                               padding_mask=padding, return_dict=False)[0]
        # NVIDIA: c_skip * x_t in the latent's dtype, plus c_out * (DiT output in float32), summed in float32.
        return ((1 - t) * z).float() + (-t).float() * net[:, :, 0].float()

    @torch.no_grad()
    def restore(self, x: torch.Tensor, refs: Optional[torch.Tensor] = None, prompt: Optional[str] = None,
                timestep: Optional[int] = None) -> torch.Tensor:
        """x [B,3,H,W] in [-1,1] (H, W multiples of 8; 576x1024 is what Fixer was trained at) -> [B,3,H,W].

        ``refs`` and ``prompt`` are accepted for the ``DifixPipeline`` interface; Fixer uses neither.
        """
        if refs is not None and not self._warned_refs:
            logger.warning("Fixer model %s takes no reference views; references are ignored.", self.name)
            self._warned_refs = True
        if x.shape[-2] % files.SPATIAL_COMPRESSION or x.shape[-1] % files.SPATIAL_COMPRESSION:
            raise ValueError(f"Fixer input sides must be multiples of 8, got {tuple(x.shape[-2:])}")
        steps = self.default_timestep if timestep is None else int(timestep)
        z = self.encode(x)
        x0 = self.denoise(z, steps)
        return self.decode(x0.to(self.model_dtype)).float()
