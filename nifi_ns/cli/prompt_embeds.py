"""Precompute the NiFi restorer's prompt embedding once, so that inference needs no text encoder.

    python -m nifi_ns.cli.prompt_embeds --model_path DIR [--backbone sd3|sdturbo] [--prompt TEXT] \
        --out emb.safetensors|emb.npz

The backbone's own text encoders embed ``--prompt`` (default: the TSD-SR prompt of NiFi's released inference,
:data:`nifi_ns.restoration.embeds.DEFAULT_PROMPT`) on the CPU; ``.npz`` writes the authors' official format
(``default_embeddings.npz``), anything else this project's safetensors. Prints one JSON line with the output path and
the embedding shape. The flags use the NiFi scripts' underscore spelling (argparse, like ``scripts/train_nifi.py``).
"""
from __future__ import annotations

import argparse
import json
from typing import Optional, Sequence

from nifi_ns.restoration.embeds import DEFAULT_PROMPT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Precompute the restorer's default prompt embedding (no GPU needed).")
    parser.add_argument("--model_path", required=True,
                        help="SD3 / SD-Turbo folder in the diffusers layout, or a hub id")
    parser.add_argument("--backbone", choices=["sd3", "sdturbo"], default="sd3")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--out", required=True, help="output .safetensors, or .npz for the official format")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
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
