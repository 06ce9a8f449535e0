"""`nifi-convert-checkpoint`: the NiFi authors' released files <-> this project's formats, both directions.

    nifi-convert-checkpoint --lora 3dgs-compression-restore.ckpt --lora-out phi_minus.safetensors \
        --embeds default_embeddings.npz --embeds-out prompt_embeds.safetensors
    nifi-convert-checkpoint --lora runs/<exp>/best.pt --lora-out restore.ckpt --embeds runs/<exp>/best.pt \
        --embeds-out default_embeddings.npz

The direction follows the *content* of each input: the official ``.ckpt`` becomes this project's LoRA safetensors
(rank 64 / alpha 64, t0 199, table-min step), and this project's LoRA safetensors or training checkpoint becomes an
official ``.ckpt`` (``{'vae', 'transformer'}``, adapter ``default``) that the official ``inference.py`` loads. The
official ``.npz`` becomes a prompt-embedding safetensors and vice versa. Everything is read and checked before any
file is written; existing outputs are kept unless ``--overwrite``.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import tyro


@dataclass
class ConvertCheckpoint:
    """Convert NiFi restorer weights / prompt embeddings between the official release format and this project's."""

    lora: Optional[Path] = None
    """Input restorer weights: official .ckpt, or this project's phi_minus.safetensors / runs/<exp>/best.pt."""
    lora_out: Optional[Path] = None
    """Output: this project's safetensors (for an official input) or an official .ckpt (for a project input)."""
    embeds: Optional[Path] = None
    """Input prompt embedding: official .npz, or this project's safetensors / a training checkpoint .pt."""
    embeds_out: Optional[Path] = None
    """Output: safetensors (for an official .npz input) or an official .npz (for a project input)."""
    prompt: Optional[str] = None
    """Prompt text recorded in a written safetensors embedding (default: the TSD-SR default prompt)."""
    overwrite: bool = False
    """Replace existing output files (otherwise an existing output is an error and nothing is written)."""

    def main(self) -> dict:
        from nifi_ns.restoration import lora as L
        from nifi_ns.restoration import official as O
        from nifi_ns.restoration.embeds import DEFAULT_PROMPT
        from nifi_ns.restoration.files import load_prompt_embeds, read_lora, read_torch_source
        from nifi_ns.restoration.formats import file_kind

        jobs = [(self.lora, self.lora_out, "--lora"), (self.embeds, self.embeds_out, "--embeds")]
        if not any(src for src, _, _ in jobs):
            raise ValueError("nothing to convert: pass --lora and --lora-out and/or --embeds and --embeds-out")
        for src, dst, flag in jobs:
            if (src is None) != (dst is None):
                raise ValueError(f"{flag} and {flag}-out must be given together")
            if dst is not None and dst.exists() and not self.overwrite:
                raise ValueError(f"{flag}-out '{dst}' already exists (pass --overwrite to replace it)")
            if src is not None and dst is not None and src.resolve() == dst.resolve():
                raise ValueError(f"{flag}-out '{dst}' is the input file")
        # read and convert everything first: a bad input leaves no output behind
        writes, report = [], {}
        if self.lora is not None:
            kind = file_kind(self.lora, "--lora file")
            if kind == "torch" and read_torch_source(self.lora)[0] == "official":
                parts, meta = read_lora(self.lora)
                writes.append(lambda p=parts, m=meta: L.save_lora_file(self.lora_out, p, m))
                report["lora"] = {"from": "official", "to": "safetensors"}
            else:
                parts, meta = read_lora(self.lora)
                payload = O.parts_to_official(parts, meta, self.lora)
                writes.append(lambda p=payload: O.write_official_checkpoint(self.lora_out, p))
                report["lora"] = {"from": "safetensors" if kind == "safetensors" else "training checkpoint",
                                  "to": "official"}
            report["lora"].update({"in": str(self.lora), "out": str(self.lora_out),
                                   "tensors": sum(len(v) for v in parts.values())})
        if self.embeds is not None:
            kind = file_kind(self.embeds, "--embeds file")
            embeds = load_prompt_embeds(self.embeds)
            if kind == "npz":
                prompt = self.prompt or DEFAULT_PROMPT
                writes.append(lambda e=embeds: e.save(self.embeds_out, prompt, "sd3"))
                report["embeds"] = {"from": "official", "to": "safetensors"}
            else:
                if embeds.pooled is None:
                    raise ValueError(f"--embeds '{self.embeds}' has no pooled embedding: not an SD3 embedding, the "
                                     f"official .npz needs one")
                writes.append(lambda e=embeds: O.write_official_npz(self.embeds_out, e))
                report["embeds"] = {"from": kind, "to": "official"}
            report["embeds"].update({"in": str(self.embeds), "out": str(self.embeds_out),
                                     "prompt_embeds": list(embeds.prompt_embeds.shape)})
        for write in writes:
            write()
        return report


def entrypoint(argv=None) -> int:
    args = tyro.cli(ConvertCheckpoint, args=argv)
    from nifi_ns.restoration.lora import LoraMismatchError

    try:
        report = args.main()
    except (ValueError, FileNotFoundError, LoraMismatchError, OSError) as err:
        print(f"nifi-convert-checkpoint: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


def main() -> None:
    sys.exit(entrypoint())


if __name__ == "__main__":
    main()
