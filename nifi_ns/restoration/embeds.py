"""Prompt conditioning of the restorer: the fixed default prompt and the :class:`PromptEmbeds` container (torch only).

Reading embedding files of any supported format is ``files.load_prompt_embeds``; the CLI that computes them is
``prompts.py``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

# The TSD-SR / SUPIR default positive prompt that NiFi's prompt.py starts from ("Cinematic, High Contrast, ...").
DEFAULT_PROMPT = (
    "Cinematic, High Contrast, highly detailed, taken using a Canon EOS R camera, hyper detailed photo - realistic "
    "maximum detail, 32k, Color Grading, ultra HD, extreme meticulous detailing, skin pore detailing, hyper "
    "sharpness, perfect without deformations."
)
NULL_PROMPT = ""


@dataclass
class PromptEmbeds:
    """Text conditioning of one or more prompts: SD3 uses both tensors, the SD-Turbo option only the first."""

    prompt_embeds: torch.Tensor  # [B, L, C]
    pooled: torch.Tensor | None = None  # [B, P] (SD3 pooled CLIP-L + CLIP-G) or None

    @property
    def batch(self) -> int:
        return int(self.prompt_embeds.shape[0])

    def to(self, device=None, dtype=None) -> "PromptEmbeds":
        pooled = None if self.pooled is None else self.pooled.to(device=device, dtype=dtype)
        return PromptEmbeds(self.prompt_embeds.to(device=device, dtype=dtype), pooled)

    def expand(self, batch: int) -> "PromptEmbeds":
        """Repeat a single embedding ``batch`` times (views are cheap, no copy)."""
        if self.batch == batch:
            return self
        if self.batch != 1:
            raise ValueError(f"cannot expand prompt embeddings of batch {self.batch} to {batch}")
        pooled = None if self.pooled is None else self.pooled.expand(batch, -1)
        return PromptEmbeds(self.prompt_embeds.expand(batch, -1, -1), pooled)

    @staticmethod
    def cat(items: list["PromptEmbeds"]) -> "PromptEmbeds":
        pooled = None if items[0].pooled is None else torch.cat([i.pooled for i in items])
        return PromptEmbeds(torch.cat([i.prompt_embeds for i in items]), pooled)

    def index(self, idx) -> "PromptEmbeds":
        return PromptEmbeds(self.prompt_embeds[idx], None if self.pooled is None else self.pooled[idx])

    def save(self, path: str | os.PathLike, prompt: str, backbone: str) -> Path:
        from safetensors.torch import save_file

        tensors = {"prompt_embeds": self.prompt_embeds.detach().float().contiguous().cpu()}
        if self.pooled is not None:
            tensors["pooled_prompt_embeds"] = self.pooled.detach().float().contiguous().cpu()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata={"format": "pt", "prompt": prompt, "backbone": backbone})
        return path
