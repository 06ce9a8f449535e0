"""Prompt embeddings of the restorer: the CLI that precomputes the default prompt's embedding.

NiFi's released inference conditions the generator on one fixed prompt embedding (``default_embeddings.npz``, built
by the official ``embedding.py`` from the TSD-SR default prompt; reference nifi.md §1.3, §1.6). That file loads as
it is (``prompt_embeds_path``); without it the embedding is computed from :data:`DEFAULT_PROMPT` with the backbone's
own text encoders once, cached, and can be saved to a safetensors file (or the official ``.npz``) so that inference
needs no text encoder at all.

CLI: ``python -m nifi_ns.restoration.prompts --model_path DIR [--backbone sd3|sdturbo] --out emb.safetensors|emb.npz``.
"""
from __future__ import annotations

import argparse
import json

import torch

from nifi_ns.restoration.embeds import DEFAULT_PROMPT, NULL_PROMPT, PromptEmbeds
from nifi_ns.restoration.files import load_prompt_embeds

__all__ = ["DEFAULT_PROMPT", "NULL_PROMPT", "PromptEmbeds", "load_prompt_embeds", "main"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Precompute the restorer's default prompt embedding (no GPU needed).")
    parser.add_argument("--model_path", required=True, help="SD3 / SD-Turbo folder in the diffusers layout, or a hub id")
    parser.add_argument("--backbone", choices=["sd3", "sdturbo"], default="sd3")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--out", required=True, help="output .safetensors, or .npz for the official format")
    args = parser.parse_args(argv)
    from nifi_ns.restoration.backbones import load_backbone

    backbone = load_backbone(args.backbone, args.model_path, device="cpu", dtype=torch.float32, load_denoiser=False)
    embeds = backbone.encode_prompts([args.prompt])
    if args.out.endswith(".npz"):  # the official format (what the authors' embedding.py writes)
        from nifi_ns.restoration.official import write_official_npz

        out = write_official_npz(args.out, embeds)
    else:
        out = embeds.save(args.out, args.prompt, args.backbone)
    print(json.dumps({"out": str(out), "prompt_embeds": list(embeds.prompt_embeds.shape)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
