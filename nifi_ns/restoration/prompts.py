"""Prompt embeddings of the restorer: the fixed default prompt, precomputed embedding files, caching.

NiFi's released inference conditions the generator on one fixed prompt embedding (``default_embeddings.npz``, built
from the TSD-SR default prompt; reference nifi.md §1.3, §1.6). The official file is not available offline, so the
embedding is computed from :data:`DEFAULT_PROMPT` with the backbone's own text encoders once, cached, and can be
saved to / loaded from a safetensors file so that inference needs no text encoder at all.

CLI: ``python -m nifi_ns.restoration.prompts --model_path DIR [--backbone sd3|sdturbo] --out emb.safetensors``.
"""
from __future__ import annotations

import argparse
import json
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

    @staticmethod
    def load(path: str | os.PathLike, backbone: str | None = None) -> "PromptEmbeds":
        """Read a file written by :meth:`save`, or the generator embedding of a training checkpoint (``.pt``)."""
        from safetensors import safe_open

        from nifi_ns.restoration import checkpoint as C

        if C.is_checkpoint_path(path):
            payload = C.read_checkpoint(path)
            made_for = payload["restorer"].get("backbone")
            if backbone is not None and made_for != backbone:
                raise ValueError(f"checkpoint '{path}' was made for backbone '{made_for}', not '{backbone}'")
            return C.embeds_from_checkpoint(payload)
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"prompt embedding file '{path}' does not exist")
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            if "prompt_embeds" not in keys:
                raise ValueError(f"prompt embedding file '{path}' has no 'prompt_embeds' tensor (keys: {sorted(keys)})")
            embeds = f.get_tensor("prompt_embeds")
            pooled = f.get_tensor("pooled_prompt_embeds") if "pooled_prompt_embeds" in keys else None
        if backbone is not None and meta.get("backbone", backbone) != backbone:
            raise ValueError(f"prompt embedding file '{path}' was made for backbone '{meta.get('backbone')}', not '{backbone}'")
        if embeds.ndim != 3:
            raise ValueError(f"'prompt_embeds' in '{path}' must be [B, L, C], got {tuple(embeds.shape)}")
        return PromptEmbeds(embeds, pooled)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Precompute the restorer's default prompt embedding (no GPU needed).")
    parser.add_argument("--model_path", required=True, help="SD3 / SD-Turbo folder in the diffusers layout, or a hub id")
    parser.add_argument("--backbone", choices=["sd3", "sdturbo"], default="sd3")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--out", required=True, help="output .safetensors")
    args = parser.parse_args(argv)
    from nifi_ns.restoration.backbones import load_backbone

    backbone = load_backbone(args.backbone, args.model_path, device="cpu", dtype=torch.float32, load_denoiser=False)
    embeds = backbone.encode_prompts([args.prompt])
    out = embeds.save(args.out, args.prompt, args.backbone)
    print(json.dumps({"out": str(out), "prompt_embeds": list(embeds.prompt_embeds.shape)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
