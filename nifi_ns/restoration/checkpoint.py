"""Single-file training checkpoints ``runs/<exp>/{latest,best}.pt`` (the file names ``scripts/train_nifi.py`` and
``scripts/eval_nifi.py --ckpt`` use).

One ``torch.save`` dict that loads with ``torch.load(weights_only=True)``: everything needed to restore with the
trained generator (φ⁻ LoRA, its metadata, the base model and t0, the generator prompt's embedding) and to resume
training (φ⁺ LoRA, both optimiser states, step, RNG states). ``load_restorer("runs/<exp>/best.pt")`` uses it directly;
the ``best/`` / ``latest/`` folders next to it hold the same restorer as safetensors for tools that want those files.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch

from nifi_ns.restoration.embeds import PromptEmbeds

CHECKPOINT_FORMAT = "nifi_ns.restorer_checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A ``.pt`` file is not a NiFi training checkpoint, or lacks a part that was asked for."""


def write_checkpoint(
    path: str | os.PathLike,
    restorer: dict,
    loras: dict[str, tuple[dict, dict]],
    prompt_embeds: PromptEmbeds,
    training_state: Optional[dict] = None,
) -> Path:
    """Atomically write ``path``; ``loras`` maps adapter name -> ({component: state dict}, metadata)."""
    payload = {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "restorer": dict(restorer),
        "loras": {name: {"meta": meta, "parts": parts} for name, (parts, meta) in loras.items()},
        "prompt_embeds": {"prompt_embeds": prompt_embeds.prompt_embeds.detach().float().cpu().contiguous(),
                          "pooled": None if prompt_embeds.pooled is None
                          else prompt_embeds.pooled.detach().float().cpu().contiguous()},
        "training_state": training_state,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_torch_file(path: str | os.PathLike):
    """``torch.load(weights_only=True)`` on the CPU (memory-mapped when possible); clear errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NiFi checkpoint '{path}' does not exist")
    try:
        if path.name.endswith(".safetensors"):  # torch.load would read a path with this suffix as safetensors
            with open(path, "rb") as f:
                return torch.load(f, map_location="cpu", weights_only=True)
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:  # legacy (non-zip) torch files cannot be memory-mapped
            if "mmap" not in str(err):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several classes for foreign / truncated files
        raise CheckpointError(f"'{path}' is not a readable torch checkpoint: {err}") from err


def is_training_payload(payload) -> bool:
    return isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT


def validate_checkpoint(payload, path) -> dict:
    """Check a loaded object is a training checkpoint of a supported version; returns it."""
    if not is_training_payload(payload):
        raise CheckpointError(f"'{path}' is not a NiFi training checkpoint (written by nifi_ns training as "
                              f"runs/<exp>/best.pt or latest.pt)")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"'{path}': checkpoint version {payload.get('version')} is not supported "
                              f"(this nifi_ns reads version {CHECKPOINT_VERSION})")
    return payload


def is_training_checkpoint(path: str | os.PathLike) -> bool:
    """True if ``path`` is a file holding a NiFi training checkpoint (decided by content, not by name)."""
    from nifi_ns.restoration.formats import file_kind

    if not Path(path).is_file() or file_kind(path) != "torch":
        return False
    try:
        return is_training_payload(load_torch_file(path))
    except CheckpointError:
        return False


is_checkpoint_path = is_training_checkpoint  # former name


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a training checkpoint (``weights_only=True``); clear errors naming the file."""
    return validate_checkpoint(load_torch_file(path), path)


def lora_from_checkpoint(payload: dict, adapter: str, path) -> tuple[dict, dict]:
    entry = payload["loras"].get(adapter)
    if entry is None:
        raise CheckpointError(f"checkpoint '{path}' holds no '{adapter}' adapter (has {sorted(payload['loras'])})")
    return entry["parts"], entry["meta"]


def embeds_from_checkpoint(payload: dict) -> PromptEmbeds:
    emb = payload["prompt_embeds"]
    return PromptEmbeds(emb["prompt_embeds"], emb["pooled"])
