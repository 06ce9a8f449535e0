"""Diffusion backbones of the restorer, both driven with the same rectified-flow maths (``flow.py``).

- ``sd3`` (the paper): diffusers ``SD3Transformer2DModel`` (MMDiT), 16-channel ``AutoencoderKL`` and
  ``FlowMatchEulerDiscreteScheduler`` (shift 3), loaded from a ``stabilityai/stable-diffusion-3-medium-diffusers``
  style folder. The three text encoders (CLIP-L, CLIP-G, T5-XXL) are loaded lazily, only when a prompt has to be
  encoded, through diffusers' own ``StableDiffusion3Pipeline.encode_prompt``.
- ``sdturbo`` (for users without SD3 access): SD-Turbo's ``UNet2DConditionModel`` + 4-channel VAE + DDPM schedule,
  using the Difix core (``difix_ns.diffusion``) for model resolution and prompt caching. Its variance-preserving
  schedule is mapped onto a flow (``flow.vp_sigma_table``) so training and inference code is shared.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import torch

from difix_ns.diffusion.hub import ModelResolutionError, resolve_model_dir
from nifi_ns.restoration import lora as L
from nifi_ns.restoration.embeds import PromptEmbeds
from nifi_ns.restoration.files import read_lora
from nifi_ns.restoration.flow import SigmaTable, flow_sigma_table_sd3, vp_sigma_table


# The ``from_pretrained`` keyword for the weights' dtype: diffusers 0.40 and transformers 4.56 renamed ``torch_dtype``
# to ``dtype`` (the old name warns; diffusers drops it in 1.0); older releases, which this package still installs
# with, know only ``torch_dtype`` and would load in float32, ignoring ``dtype``.
_DTYPE_KEYWORD_SINCE = {"diffusers": (0, 40), "transformers": (4, 56)}


def dtype_keyword(library: str, dtype: torch.dtype | None) -> dict[str, torch.dtype | None]:
    """``{"dtype": dtype}`` or ``{"torch_dtype": dtype}``, as the installed ``library``'s ``from_pretrained`` wants."""
    from importlib.metadata import version

    release = tuple(int(part) for part in re.findall(r"\d+", version(library))[:2])
    return {"dtype" if release >= _DTYPE_KEYWORD_SINCE[library] else "torch_dtype": dtype}


class RestorerBackbone(torch.nn.Module):
    """A frozen latent diffusion model + the restorer's adapters. Subclasses set the model-specific parts."""

    kind: str = ""
    denoiser_name: str = ""  # component prefix used in LoRA files: "transformer" or "unet"
    generator_targets: tuple[str, ...] = ()
    critic_targets: tuple[str, ...] = ()
    pad_multiple: int = 8  # image sizes that need no padding at all (pixel multiple x latent multiple)
    pixel_pad_multiple: int = 8  # input pixels are reflect-padded to this multiple ...
    latent_pad_multiple: int = 1  # ... and the encoded latent to this one
    default_final_sigma: str = "table_min"

    def __init__(self, model_dir: Path, denoiser, vae, table: SigmaTable, device, dtype):
        super().__init__()
        self.model_dir = Path(model_dir)
        self.denoiser = denoiser
        self.vae = vae
        self.table = table
        self.device_ = torch.device(device)
        self.dtype_ = dtype
        self._prompt_cache: dict[str, PromptEmbeds] = {}
        for module in (denoiser, vae):
            if module is not None:
                module.requires_grad_(False)
                module.to(device=self.device_)  # already loaded in `dtype` by from_pretrained

    # ----- latents -------------------------------------------------------------------------------------------
    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    def encode(self, images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """[B,3,H,W] in [-1,1] -> scaled latents [B,C,H/8,W/8] in ``dtype`` (posterior mean, i.e. deterministic).

        Latent = z · scaling_factor, with *no* ``shift_factor``, exactly as the official NiFi restorer.py (SD3's VAE
        config has shift_factor 0.0609; the NiFi LoRAs are trained and run without it). The posterior is cast to
        ``dtype`` before scaling, as there."""
        z = self.vae.encode(images.to(self.device_, self.dtype_)).latent_dist.mode()
        return z.to(dtype) * self.vae.config.scaling_factor

    def decode(self, latents: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Scaled latents -> [B,3,H,W] in about [-1,1], returned in ``dtype`` (z = latents / scaling_factor)."""
        z = latents / self.vae.config.scaling_factor
        return self.vae.decode(z.to(self.dtype_)).sample.to(dtype)

    # ----- prompts -------------------------------------------------------------------------------------------
    def encode_prompts(self, prompts: Sequence[str]) -> PromptEmbeds:
        """Embeddings of ``prompts`` (cached per prompt; text encoders are loaded on first use)."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._prompt_cache]
        if missing:
            with torch.no_grad():
                fresh = self._encode_prompts(missing)
            for i, p in enumerate(missing):
                self._prompt_cache[p] = fresh.index(slice(i, i + 1)).to("cpu", torch.float32)
        return PromptEmbeds.cat([self._prompt_cache[p] for p in prompts]).to(self.device_, self.dtype_)

    def set_prompt_embedding(self, prompt: str, embeds: PromptEmbeds) -> None:
        """Register a precomputed embedding (e.g. loaded from a file) so no text encoder is needed for it."""
        self._prompt_cache[prompt] = embeds.index(slice(0, 1)).to("cpu", torch.float32)

    def release_text_encoders(self) -> None:
        """Drop the text encoders once every needed prompt is cached (frees GBs for SD3's T5)."""
        self._text = None

    # ----- adapters ------------------------------------------------------------------------------------------
    def add_generator_lora(self, rank: int, alpha: float | None = None, vae_targets: Sequence[str] | None = None):
        L.add_lora(self.denoiser, L.PHI_MINUS, self.generator_targets, rank, alpha)
        L.add_lora(self.vae, L.PHI_MINUS, list(vae_targets or L.vae_encoder_targets(self.vae)), rank, alpha)

    def add_critic_lora(self, rank: int, alpha: float | None = None):
        L.add_lora(self.denoiser, L.PHI_PLUS, self.critic_targets, rank, alpha)

    def has_adapter(self, name: str) -> bool:
        return bool(L.adapter_parameters(self.denoiser, name))

    def generator_parameters(self) -> list[torch.nn.Parameter]:
        return L.adapter_parameters(self.denoiser, L.PHI_MINUS) + L.adapter_parameters(self.vae, L.PHI_MINUS)

    def critic_parameters(self) -> list[torch.nn.Parameter]:
        return L.adapter_parameters(self.denoiser, L.PHI_PLUS)

    def generator_lora(self, rank: int, alpha: float, extra: dict | None = None) -> tuple[dict, dict]:
        """φ⁻ weights ``{component: state dict}`` and the metadata that rebuilds the adapter."""
        vae_sd = L.adapter_state_dict(self.vae, L.PHI_MINUS)
        meta = {
            "backbone": self.kind, "adapter": L.PHI_MINUS, "rank": rank, "alpha": alpha,
            "denoiser_targets": list(self.generator_targets),
            "vae_targets": sorted({k.split(".lora_")[0] for k in vae_sd}), **(extra or {}),
        }
        return {self.denoiser_name: L.adapter_state_dict(self.denoiser, L.PHI_MINUS), "vae": vae_sd}, meta

    def critic_lora(self, rank: int, alpha: float, extra: dict | None = None) -> tuple[dict, dict]:
        """φ⁺ weights ``{component: state dict}`` and their metadata."""
        meta = {"backbone": self.kind, "adapter": L.PHI_PLUS, "rank": rank, "alpha": alpha,
                "denoiser_targets": list(self.critic_targets), **(extra or {})}
        return {self.denoiser_name: L.adapter_state_dict(self.denoiser, L.PHI_PLUS)}, meta

    def save_generator_lora(self, path, rank: int, alpha: float, extra: dict | None = None) -> Path:
        return L.save_lora_file(path, *self.generator_lora(rank, alpha, extra))

    def save_critic_lora(self, path, rank: int, alpha: float, extra: dict | None = None) -> Path:
        return L.save_lora_file(path, *self.critic_lora(rank, alpha, extra))

    def load_lora(self, path, adapter: str = L.PHI_MINUS) -> dict:
        """Build the adapter described by a LoRA file's metadata (if absent) and load it strictly.

        ``path`` is a LoRA safetensors file or a training checkpoint ``<exp>/{best,latest}.pt`` (``adapter`` picks
        φ⁻ or φ⁺ from the latter), or the authors' released ``.ckpt`` (recognised by content, see ``files.py``)."""
        parts, meta = read_lora(path, adapter)
        return self.load_lora_parts(parts, meta, path)

    def load_lora_parts(self, parts: dict, meta: dict, path) -> dict:
        """Strictly load adapter weights ``{component: state dict}`` described by ``meta``; ``path`` names the
        source."""
        if meta.get("backbone") != self.kind:
            raise L.LoraMismatchError(f"LoRA file '{path}' is for backbone '{meta.get('backbone')}', not '{self.kind}'")
        name = meta.get("adapter", L.PHI_MINUS)
        if not self.has_adapter(name):
            if name == L.PHI_MINUS:
                self.add_generator_lora(meta["rank"], meta["alpha"], vae_targets=meta.get("vae_targets"))
            else:
                self.add_critic_lora(meta["rank"], meta["alpha"])
        expected = {self.denoiser_name, "vae"} if name == L.PHI_MINUS else {self.denoiser_name}
        if set(parts) != expected:
            raise L.LoraMismatchError(f"LoRA file '{path}' holds components {sorted(parts)}, "
                                      f"expected {sorted(expected)}")
        L.load_adapter_state_dict(self.denoiser, name, parts[self.denoiser_name], str(path))
        if "vae" in parts:
            L.load_adapter_state_dict(self.vae, name, parts["vae"], str(path))
        for p in self.generator_parameters() + self.critic_parameters():
            p.data = p.data.to(self.device_)
        return meta

    # ----- model specific ------------------------------------------------------------------------------------
    def velocity(self, x: torch.Tensor, timesteps: torch.Tensor, embeds: PromptEmbeds) -> torch.Tensor:
        """Flow velocity v ≈ ε - x for flow latents ``x`` at model ``timesteps`` [B] (float32 out)."""
        raise TypeError(f"{type(self).__name__} does not define velocity()")

    def _encode_prompts(self, prompts: list[str]) -> PromptEmbeds:
        raise TypeError(f"{type(self).__name__} does not define prompt encoding")


def _vae_scale(vae) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def _missing_text_encoder_error(model_dir: Path, sub: str, err: Exception) -> ModelResolutionError:
    return ModelResolutionError(
        f"Cannot encode a prompt: text encoder '{sub}' could not be loaded from '{model_dir}' ({type(err).__name__}: "
        f"{err}). Stage the text encoders in that folder, or pass precomputed embeddings (prompt_embeds_path; make "
        f"them once with `python -m nifi_ns.cli.prompt_embeds --model_path <full model> --out emb.safetensors`)."
    )


class SD3Backbone(RestorerBackbone):
    kind = "sd3"
    denoiser_name = "transformer"
    generator_targets = L.SD3_TRANSFORMER_TARGETS
    critic_targets = L.SD3_CRITIC_TARGETS
    pad_multiple = 16  # 8 px per latent cell x patch size 2
    pixel_pad_multiple = 8  # official: reflect-pad pixels to 8, ...
    latent_pad_multiple = 2  # ... then the latent to the patch size 2 (differs from 16 px when H/8 or W/8 is odd)
    default_final_sigma = "table_min"  # official code steps 199 -> smallest table σ (≈ 0.003)

    def __init__(self, model_dir, device, dtype, load_denoiser: bool = True, max_sequence_length: int = 256):
        from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

        transformer = vae = None
        if load_denoiser:
            in_dtype = dtype_keyword("diffusers", dtype)
            transformer = SD3Transformer2DModel.from_pretrained(model_dir, subfolder="transformer", **in_dtype)
            vae = AutoencoderKL.from_pretrained(model_dir, subfolder="vae", **in_dtype)
        scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(model_dir, subfolder="scheduler")
        super().__init__(model_dir, transformer, vae, flow_sigma_table_sd3(scheduler), device, dtype)
        if transformer is not None:  # pixels per latent cell x patch size (16 for SD3)
            self.pixel_pad_multiple = _vae_scale(vae)
            self.latent_pad_multiple = int(transformer.config.patch_size)
            self.pad_multiple = self.pixel_pad_multiple * self.latent_pad_multiple
        self.shift = float(scheduler.config.shift)
        self.max_sequence_length = max_sequence_length
        self._text = None

    def velocity(self, x, timesteps, embeds):
        out = self.denoiser(
            hidden_states=x.to(self.dtype_),
            encoder_hidden_states=embeds.prompt_embeds.to(self.device_, self.dtype_),
            pooled_projections=embeds.pooled.to(self.device_, self.dtype_),
            timestep=timesteps.to(self.device_, torch.float32),
            return_dict=False,
        )[0]
        return out.float()

    def _encode_prompts(self, prompts):
        if self._text is None:
            from diffusers import StableDiffusion3Pipeline

            try:
                self._text = StableDiffusion3Pipeline.from_pretrained(
                    self.model_dir, transformer=None, vae=None, **dtype_keyword("diffusers", self.dtype_)
                ).to(self.device_)
            except (OSError, ValueError) as err:
                raise _missing_text_encoder_error(self.model_dir, "text_encoder / text_encoder_2 / text_encoder_3", err)
        embeds, _, pooled, _ = self._text.encode_prompt(
            prompt=list(prompts), prompt_2=None, prompt_3=None, device=self.device_,
            do_classifier_free_guidance=False, max_sequence_length=self.max_sequence_length,
        )
        return PromptEmbeds(embeds, pooled)


class SDTurboBackbone(RestorerBackbone):
    kind = "sdturbo"
    denoiser_name = "unet"
    generator_targets = L.UNET_TARGETS
    critic_targets = L.UNET_CRITIC_TARGETS
    pad_multiple = 64  # the SD-2.1 UNet downsamples latents 3 more times
    pixel_pad_multiple = 64  # pixels are padded to the whole multiple, latents never
    latent_pad_multiple = 1
    default_final_sigma = "zero"  # x̂ = the UNet's x̂0 prediction, as Difix's one DDPM step

    def __init__(self, model_dir, device, dtype, load_denoiser: bool = True):
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

        unet = vae = None
        if load_denoiser:
            in_dtype = dtype_keyword("diffusers", dtype)
            unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet", **in_dtype)
            vae = AutoencoderKL.from_pretrained(model_dir, subfolder="vae", **in_dtype)
        scheduler = DDPMScheduler.from_pretrained(model_dir, subfolder="scheduler")
        prediction_type = scheduler.config.prediction_type
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"{model_dir}/scheduler: prediction_type '{prediction_type}' is not supported")
        super().__init__(model_dir, unet, vae, vp_sigma_table(scheduler.alphas_cumprod), device, dtype)
        self.prediction_type = prediction_type
        if unet is not None:  # pixels per latent cell x the UNet's own downsampling
            self.pad_multiple = _vae_scale(vae) * 2 ** (len(unet.config.block_out_channels) - 1)
            self.pixel_pad_multiple = self.pad_multiple  # pixels padded to the whole multiple, latents never
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.float().to(self.device_), persistent=False)
        self._text = None

    def velocity(self, x, timesteps, embeds):
        t = timesteps.to(self.device_).round().long()
        ac = self.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        a, b = ac.sqrt(), (1 - ac).sqrt()
        x_vp = x.float() * (a + b)  # flow latent -> DDPM latent at the same noise level
        out = self.denoiser(
            x_vp.to(self.dtype_), t, encoder_hidden_states=embeds.prompt_embeds.to(self.device_, self.dtype_),
            return_dict=False,
        )[0].float()
        if self.prediction_type == "epsilon":
            eps, x0 = out, (x_vp - b * out) / a
        else:
            eps, x0 = b * x_vp + a * out, a * x_vp - b * out
        return eps - x0

    def _encode_prompts(self, prompts):
        if self._text is None:
            from transformers import CLIPTextModel, CLIPTokenizer

            from difix_ns.diffusion.prompt import PromptEmbeddingCache, clip_prompt_encoder

            try:
                tokenizer = CLIPTokenizer.from_pretrained(self.model_dir, subfolder="tokenizer")
                encoder = CLIPTextModel.from_pretrained(
                    self.model_dir, subfolder="text_encoder", **dtype_keyword("transformers", self.dtype_)
                )
            except (OSError, ValueError) as err:
                raise _missing_text_encoder_error(self.model_dir, "tokenizer / text_encoder", err)
            self._text = PromptEmbeddingCache(clip_prompt_encoder(tokenizer, encoder.to(self.device_)))
        return PromptEmbeds(torch.cat([self._text(p, self.device_, self.dtype_) for p in prompts]))


BACKBONES = {"sd3": SD3Backbone, "sdturbo": SDTurboBackbone}


def load_backbone(kind: str, model_path: str | os.PathLike, device="cpu", dtype=torch.float32,
                  **kwargs) -> RestorerBackbone:
    """Resolve ``model_path`` (local folder or hub id, clear offline errors) and build the backbone."""
    if kind not in BACKBONES:
        raise ValueError(f"unknown restorer backbone '{kind}' (choose from {sorted(BACKBONES)})")
    what = "SD3 model" if kind == "sd3" else "SD-Turbo model"
    model_dir = resolve_model_dir(model_path, required_files=("model_index.json", "scheduler/scheduler_config.json"),
                                  what=what)
    return BACKBONES[kind](model_dir, device=device, dtype=dtype, **kwargs)
