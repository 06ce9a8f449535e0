"""Read restorer weights and prompt embeddings from any supported file, recognised by content (``formats.file_kind``).

LoRA (φ⁻/φ⁺) sources:
- this project's LoRA safetensors (``save_lora_file``: component-prefixed PEFT keys + 'nifi' JSON metadata);
- a training checkpoint ``runs/<exp>/{best,latest}.pt`` (``checkpoint.py``; ``adapter`` picks φ⁻ or φ⁺);
- the authors' released ``.ckpt`` (``official.py``: ``{'vae', 'transformer'}`` of the PEFT adapter ``default``).
Prompt embeddings: this project's safetensors, a training checkpoint, or the official ``.npz``.
"""
from __future__ import annotations

import os
from pathlib import Path

from nifi_ns.restoration import checkpoint as C
from nifi_ns.restoration import lora as L
from nifi_ns.restoration import official as O
from nifi_ns.restoration.embeds import PromptEmbeds
from nifi_ns.restoration.formats import file_kind


def read_torch_source(path: str | os.PathLike) -> tuple[str, dict]:
    """Load a ``torch.save`` file and say what it is: ``("training", payload)`` or ``("official", payload)``.

    Anything else raises :class:`checkpoint.CheckpointError` naming the file."""
    payload = C.load_torch_file(path)
    if C.is_training_payload(payload):
        return "training", C.validate_checkpoint(payload, path)
    if O.is_official_payload(payload):
        return "official", payload
    raise C.CheckpointError(
        f"'{path}' is not a NiFi training checkpoint (written by nifi_ns training as runs/<exp>/best.pt or latest.pt) "
        f"nor an official NiFi restorer checkpoint (a dict with 'vae' and 'transformer' LoRA weights)")


def read_lora(path: str | os.PathLike, adapter: str = L.PHI_MINUS) -> tuple[dict, dict]:
    """({component: PEFT state dict}, metadata) of the adapter stored in ``path`` (any supported format)."""
    kind = file_kind(path, "NiFi LoRA file")
    if kind == "safetensors":
        return L.read_lora_file(path)
    if kind == "torch":
        what, payload = read_torch_source(path)
        if what == "training":
            return C.lora_from_checkpoint(payload, adapter, path)
        if adapter != L.PHI_MINUS:
            raise C.CheckpointError(f"official NiFi checkpoint '{path}' holds only the restorer (φ⁻), not '{adapter}'")
        return O.official_to_parts(payload, path)
    raise L.LoraMismatchError(
        f"'{path}' is not a NiFi LoRA file: expected this project's safetensors, a training checkpoint (.pt) or the "
        f"official NiFi .ckpt (torch.save of {{'vae', 'transformer'}})")


def load_prompt_embeds(path: str | os.PathLike, backbone: str | None = None) -> PromptEmbeds:
    """Prompt embedding from this project's safetensors, a training checkpoint, or the official ``.npz``."""
    kind = file_kind(path, "prompt embedding file")
    if kind == "npz":
        if backbone not in (None, "sd3"):
            raise ValueError(f"prompt embedding file '{path}' is the official SD3 .npz format, "
                             f"not for backbone '{backbone}'")
        return O.read_official_npz(path)
    if kind == "torch":
        payload = C.read_checkpoint(path)
        made_for = payload["restorer"].get("backbone")
        if backbone is not None and made_for != backbone:
            raise ValueError(f"checkpoint '{path}' was made for backbone '{made_for}', not '{backbone}'")
        return C.embeds_from_checkpoint(payload)
    if kind != "safetensors":
        raise ValueError(f"prompt embedding file '{path}' is neither safetensors, a NiFi training checkpoint nor the "
                         f"official .npz")
    from safetensors import safe_open

    with safe_open(str(Path(path)), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
        keys = set(f.keys())
        if "prompt_embeds" not in keys:
            raise ValueError(f"prompt embedding file '{path}' has no 'prompt_embeds' tensor (keys: {sorted(keys)})")
        embeds = f.get_tensor("prompt_embeds")
        pooled = f.get_tensor("pooled_prompt_embeds") if "pooled_prompt_embeds" in keys else None
    if backbone is not None and meta.get("backbone", backbone) != backbone:
        raise ValueError(f"prompt embedding file '{path}' was made for backbone '{meta.get('backbone')}', "
                         f"not '{backbone}'")
    if embeds.ndim != 3:
        raise ValueError(f"'prompt_embeds' in '{path}' must be [B, L, C], got {tuple(embeds.shape)}")
    return PromptEmbeds(embeds, pooled)
