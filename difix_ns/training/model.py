"""The trainable Difix forward (upstream ``Difix.forward``, difix3d.md §1.2) and export to the HF layout.

Training differs from inference (``DifixPipeline.restore``) in two upstream details: the latent is *sampled* from
the VAE posterior, and every view is decoded (each with its own encoder skips) so the reference view is supervised
too. Evaluation uses the posterior mode, exactly like inference.
"""
from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Literal, Optional

import torch
from torch import nn

from difix_ns.models.reference_attention import has_reference_attention, reference_views

UNET_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


class DifixTrainModel(nn.Module):
    """``model(x [B,V,3,H,W] in [-1,1]) -> [B,V,3,H,W]``: one denoising step at ``timestep`` for every view."""

    def __init__(self, pipe, timestep: int = 199, prompt: str = "remove degradation"):
        super().__init__()
        self.unet = pipe.unet
        self.vae = pipe.vae
        with torch.no_grad():
            emb = pipe.prompt_embeddings(prompt).detach().float().clone()
        self.register_buffer("prompt_embeds", emb, persistent=False)
        abar = pipe.scheduler.alphas_cumprod[int(timestep)].float()
        self.register_buffer("abar", abar.clone(), persistent=False)
        self.timestep = int(timestep)
        self.prediction_type = pipe.scheduler.config.prediction_type
        self.scaling = float(self.vae.config.scaling_factor)
        self.reference_mixing = has_reference_attention(self.unet)

    def forward(self, x: torch.Tensor, sample: bool = True) -> torch.Tensor:
        b, v = x.shape[:2]
        if v > 1 and not self.reference_mixing:
            raise ValueError("this model has no reference mixing; pass one view per sample")
        flat = x.flatten(0, 1)
        posterior, skips = self.vae.encode_with_skips(flat)
        z = (posterior.sample() if sample else posterior.mode()) * self.scaling
        emb = self.prompt_embeds.to(z.dtype).expand(z.shape[0], -1, -1)
        t = torch.full((z.shape[0],), self.timestep, device=z.device, dtype=torch.long)
        with reference_views(self.unet, v):
            out = self.unet(z, t, encoder_hidden_states=emb, return_dict=False)[0]
        abar = self.abar
        if self.prediction_type == "epsilon":
            z0 = (z.float() - (1 - abar).sqrt() * out.float()) / abar.sqrt()
        elif self.prediction_type == "v_prediction":
            z0 = abar.sqrt() * z.float() - (1 - abar).sqrt() * out.float()
        else:
            z0 = out.float()
        y = self.vae.decode_with_skips(z0.to(z.dtype) / self.scaling, skips)
        return y.reshape(b, v, *y.shape[1:])


def add_unet_lora(unet: nn.Module, rank: int, alpha: Optional[float] = None) -> None:
    """PEFT LoRA on the UNet's attention projections; the base UNet is frozen."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    cfg = LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian",
                     target_modules=list(UNET_LORA_TARGETS))
    unet.add_adapter(cfg)


def select_trainable(model: DifixTrainModel, mode: Literal["upstream", "all"], unet_lora_rank: int) -> list:
    """Set requires_grad and return the trainable parameters.

    upstream: the whole UNet (or only its LoRA when ``unet_lora_rank`` > 0), the decoder skip convs and the
    ``vae_skip`` LoRA; the rest of the VAE is frozen. all: UNet (or its LoRA) and the whole VAE (training from
    scratch: a random frozen encoder would be useless)."""
    vae = model.vae
    if unet_lora_rank > 0:
        add_unet_lora(model.unet, unet_lora_rank)
    else:
        model.unet.requires_grad_(True)
    if mode == "all":
        vae.requires_grad_(True)
    else:
        vae.requires_grad_(False)
        for name, p in vae.named_parameters():
            if "skip_conv" in name or ("lora" in name and "vae_skip" in name):
                p.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def plain_unet(unet: nn.Module) -> nn.Module:
    """A copy of ``unet`` with any PEFT LoRA merged into the base weights and removed (the real checkpoints store a
    plain UNet)."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:
        return unet
    if not any(isinstance(m, BaseTunerLayer) for m in unet.modules()):
        return unet
    out = copy.deepcopy(unet)
    for name, module in list(out.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = out.get_submodule(parent_name) if parent_name else out
            setattr(parent, child, module.get_base_layer())
    for attr in ("_hf_peft_config_loaded", "peft_config"):
        if hasattr(out, attr):
            try:
                delattr(out, attr)
            except AttributeError:
                pass
    return out


def export_pipeline(pipe, out_dir: Path, dtype: Optional[torch.dtype] = None, name: Optional[str] = None) -> Path:
    """Write ``pipe`` (whose UNet/VAE may carry training LoRA) in the real HF layout, atomically replacing
    ``out_dir``. ``dtype`` converts the written weights (e.g. bfloat16 for a small download)."""
    from difix_ns.pipeline_difix import DifixPipeline

    out_dir = Path(out_dir)
    unet = plain_unet(pipe.unet)
    vae = pipe.vae
    if dtype is not None:
        unet = copy.deepcopy(unet).to(dtype) if unet is pipe.unet else unet.to(dtype)
        vae = copy.deepcopy(vae).to(dtype)
    export = DifixPipeline.__new__(DifixPipeline)
    DifixPipeline.__init__(
        export, vae=vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=unet,
        scheduler=pipe.scheduler, reference_mixing=pipe.reference_mixing,
    )
    export.register_to_config(_name_or_path=name or out_dir.name)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    old = out_dir.with_name(f".{out_dir.name}.old")
    for d in (tmp, old):
        if d.exists():
            shutil.rmtree(d)
    export.save_pretrained(tmp)
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old.exists():
        shutil.rmtree(old)
    return out_dir
