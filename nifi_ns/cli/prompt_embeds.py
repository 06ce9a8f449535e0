"""Precompute the NiFi restorer's prompt embedding once, so that inference needs no text encoder.

    python -m nifi_ns.cli.prompt_embeds --model_path DIR [--backbone sd3|sdturbo] [--prompt TEXT] \
        --out emb.safetensors|emb.npz

The backbone's own text encoders embed ``--prompt`` (default: the TSD-SR prompt of NiFi's released inference,
:data:`nifi_ns.restoration.embeds.DEFAULT_PROMPT`) on the CPU; ``.npz`` writes the authors' official format
(``default_embeddings.npz``), anything else this project's safetensors. Prints one JSON line with the output path and
the embedding shape. The flags use the NiFi scripts' underscore spelling (a tyro dataclass, like
``scripts/train_nifi.py``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

from difix_ns.cli.tyro_style import parse
from nifi_ns.restoration.embeds import DEFAULT_PROMPT


@dataclass(kw_only=True)
class PromptEmbedsConfig:
    """Options of ``python -m nifi_ns.cli.prompt_embeds``."""

    model_path: str
    """SD3 / SD-Turbo folder in the diffusers layout, or a hub id."""
    backbone: Literal["sd3", "sdturbo"] = "sd3"
    """Backbone kind of --model_path."""
    prompt: str = DEFAULT_PROMPT
    """Text to embed (default: the TSD-SR prompt of NiFi's released inference)."""
    out: str
    """Output .safetensors, or .npz for the official format."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse(PromptEmbedsConfig, argv,
                 description="Precompute the restorer's default prompt embedding (no GPU needed).")
    import torch

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
