"""The NiFi authors' released file formats (ceteke/nifi ``restorer.py`` / ``embedding.py``), read and written as
they are.

- Restorer checkpoint (``3dgs-compression-restore.ckpt``): a ``torch.save`` dict ``{'vae': ..., 'transformer': ...}``
  whose values are module state-dict entries of one PEFT LoRA adapter named ``default``, e.g.
  ``transformer_blocks.0.attn.to_q.lora_A.default.weight`` or ``encoder.conv_in.lora_B.default.weight``. The official
  code builds both adapters with ``r=64, lora_alpha=64`` on fixed target lists (the transformer list is
  :data:`lora.SD3_TRANSFORMER_TARGETS`; the VAE list is every encoder conv / mid-block attention projection plus
  ``quant_conv``, which SD3's VAE does not have) and loads the dict with ``load_state_dict(strict=False)``.
- Prompt embedding (``default_embeddings.npz``): ``numpy.savez`` of ``prompt_embeds`` [1, L, C] and
  ``pooled_prompt_embeds`` [1, P] (float32), SD3's ``encode_prompt`` of the default prompt.

Here both are read strictly (every tensor used, none missing, unknown keys named) and converted to / from this
project's formats: LoRA parts ``{component: PEFT state dict without adapter name}`` + metadata, and
:class:`PromptEmbeds`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from nifi_ns.restoration import lora as L
from nifi_ns.restoration.embeds import PromptEmbeds

OFFICIAL_ADAPTER = "default"
OFFICIAL_RANK = 64
OFFICIAL_ALPHA = 64.0
OFFICIAL_T0 = 199
OFFICIAL_COMPONENTS = ("transformer", "vae")
NPZ_KEYS = ("prompt_embeds", "pooled_prompt_embeds")
_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])\.default\.weight$")


def is_official_payload(payload) -> bool:
    """True for a loaded ``torch.save`` object shaped like the official checkpoint (dict with 'vae'/'transformer')."""
    return isinstance(payload, dict) and set(OFFICIAL_COMPONENTS) <= set(payload) and "format" not in payload


def official_to_parts(payload: dict, source) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """Official checkpoint dict -> (``{'transformer': sd, 'vae': sd}`` in PEFT's portable keys, metadata).

    Raises :class:`lora.LoraMismatchError` naming the file and every key that is not a LoRA tensor of the
    ``default`` adapter, any extra top-level entry, and inconsistent ranks."""
    extra = sorted(set(payload) - set(OFFICIAL_COMPONENTS))
    if extra:
        raise L.LoraMismatchError(f"official NiFi checkpoint '{source}' has unexpected top-level entries {extra} "
                                  f"(expected exactly {list(OFFICIAL_COMPONENTS)})")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    ranks: set[int] = set()
    for component in OFFICIAL_COMPONENTS:
        state = payload[component]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise L.LoraMismatchError(f"official NiFi checkpoint '{source}': '{component}' is not a dict of tensors")
        bad = sorted(k for k in state if not _KEY.match(str(k)))
        if bad:
            raise L.LoraMismatchError(
                f"official NiFi checkpoint '{source}': {len(bad)} unexpected '{component}' key(s) that are not LoRA "
                f"weights of adapter '{OFFICIAL_ADAPTER}' (e.g. {bad[:3]})")
        converted = {}
        for key, value in state.items():
            m = _KEY.match(key)
            converted[f"{m['module']}.lora_{m['ab']}.weight"] = value.detach().float().contiguous()
            if m["ab"] == "A":
                ranks.add(int(value.shape[0]))
        parts[component] = converted
    if ranks != {OFFICIAL_RANK}:
        raise L.LoraMismatchError(f"official NiFi checkpoint '{source}' has LoRA rank(s) {sorted(ranks)}; the official "
                                  f"restorer.py builds rank {OFFICIAL_RANK} (lora_alpha {OFFICIAL_ALPHA:g})")
    meta = {
        "backbone": "sd3", "adapter": L.PHI_MINUS, "rank": OFFICIAL_RANK, "alpha": OFFICIAL_ALPHA,
        "denoiser_targets": list(L.SD3_TRANSFORMER_TARGETS), "vae_targets": None,  # None: every encoder module
        "t0": OFFICIAL_T0, "final_sigma": "table_min", "source": "official",
    }
    return parts, meta


def parts_to_official(parts: dict, meta: dict, source) -> dict[str, dict[str, torch.Tensor]]:
    """This project's φ⁻ LoRA (parts + metadata) -> the official checkpoint dict; refuses what official code can't
    run."""
    problems = []
    if meta.get("backbone") != "sd3":
        problems.append(f"backbone '{meta.get('backbone')}' (official code is SD3 only)")
    if meta.get("adapter", L.PHI_MINUS) != L.PHI_MINUS:
        problems.append(f"adapter '{meta.get('adapter')}' (only the generator φ⁻ is used at inference)")
    if int(meta.get("rank", -1)) != OFFICIAL_RANK or float(meta.get("alpha", -1)) != OFFICIAL_ALPHA:
        problems.append(f"rank {meta.get('rank')} / alpha {meta.get('alpha')} "
                        f"(official: {OFFICIAL_RANK} / {OFFICIAL_ALPHA:g})")
    if int(meta.get("t0", OFFICIAL_T0)) != OFFICIAL_T0 or meta.get("final_sigma") == "zero":
        problems.append(f"t0={meta.get('t0')} final_sigma={meta.get('final_sigma')} "
                        f"(official: t0={OFFICIAL_T0}, table_min)")
    if set(meta.get("denoiser_targets") or L.SD3_TRANSFORMER_TARGETS) != set(L.SD3_TRANSFORMER_TARGETS):
        problems.append(f"transformer targets {meta.get('denoiser_targets')}")
    if set(parts) != set(OFFICIAL_COMPONENTS):
        problems.append(f"components {sorted(parts)} (official: {list(OFFICIAL_COMPONENTS)})")
    if problems:
        raise L.LoraMismatchError(f"'{source}' cannot be written as an official NiFi checkpoint: "
                                  + "; ".join(problems))
    out = {}
    for component in OFFICIAL_COMPONENTS:
        converted = {}
        for key, value in parts[component].items():
            m = re.match(r"^(?P<module>.+)\.lora_(?P<ab>[AB])\.weight$", key)
            if m is None:
                raise L.LoraMismatchError(f"'{source}': '{component}.{key}' is not a LoRA A/B weight")
            converted[f"{m['module']}.lora_{m['ab']}.{OFFICIAL_ADAPTER}.weight"] = (
                value.detach().float().contiguous().cpu())
        out[component] = converted
    return out


def write_official_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """``torch.save`` the official dict atomically (loads with ``torch.load(weights_only=True)``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({k: payload[k] for k in OFFICIAL_COMPONENTS}, tmp)
    tmp.replace(path)
    return path


def read_official_npz(path: str | os.PathLike) -> PromptEmbeds:
    """The official ``default_embeddings.npz`` (``allow_pickle=False``) -> PromptEmbeds (float32, CPU)."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"prompt embedding file '{path}' is not a readable numpy .npz: {err}") from err
    missing = [k for k in NPZ_KEYS if k not in arrays]
    unexpected = sorted(set(arrays) - set(NPZ_KEYS))
    if missing or unexpected:
        raise ValueError(f"prompt embedding file '{path}': missing {missing}, unexpected {unexpected} "
                         f"(the official .npz holds exactly {list(NPZ_KEYS)})")
    embeds, pooled = arrays["prompt_embeds"], arrays["pooled_prompt_embeds"]
    if embeds.ndim != 3 or pooled.ndim != 2 or embeds.shape[0] != pooled.shape[0]:
        raise ValueError(f"prompt embedding file '{path}': prompt_embeds must be [B, L, C] and pooled_prompt_embeds "
                         f"[B, P], got {embeds.shape} and {pooled.shape}")
    if not (np.issubdtype(embeds.dtype, np.floating) and np.issubdtype(pooled.dtype, np.floating)):
        raise ValueError(f"prompt embedding file '{path}': arrays must be floating point, "
                         f"got {embeds.dtype}/{pooled.dtype}")
    return PromptEmbeds(torch.from_numpy(embeds.astype(np.float32)), torch.from_numpy(pooled.astype(np.float32)))


def write_official_npz(path: str | os.PathLike, embeds: PromptEmbeds) -> Path:
    """Write PromptEmbeds as the official ``.npz`` (float32 arrays, exactly the official keys)."""
    import numpy as np

    if embeds.pooled is None:
        raise ValueError(f"cannot write '{path}': the official .npz needs pooled embeddings (SD3), these have none")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:  # a file object keeps numpy from appending ".npz" to the name
        np.savez(f, prompt_embeds=embeds.prompt_embeds.detach().float().cpu().numpy(),
                 pooled_prompt_embeds=embeds.pooled.detach().float().cpu().numpy())
    tmp.replace(path)
    return path
