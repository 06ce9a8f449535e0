"""PEFT LoRA adapters of the NiFi restorer: φ⁻ (generator) and φ⁺ (critic, training only).

Target lists follow the official NiFi ``restorer.py`` / TSD-SR ``train.py`` (reference nifi.md §1.3):
- φ⁻ on the SD3 transformer: attention q/k/v/out, the context-stream projections, ``proj`` (feed-forward and patch
  embedding), ``linear`` (AdaLN modulation) and ``proj_out``;
- φ⁻ on the VAE *encoder*: every encoder conv, the mid-block attention q/k/v/out, ``conv_out`` and ``quant_conv``
  (SD3's VAE has no ``quant_conv``: 31 modules there, 32 on VAEs that have one); the decoder stays frozen;
- φ⁺ on the transformer attention projections only.
Both adapters live on the *same* denoiser: the frozen base is the teacher, ``phi_plus`` the critic. Switching is done
with :func:`active_adapter`, which never touches ``requires_grad`` (PEFT's own ``set_adapter`` / ``disable_adapters``
do), so gradients of one step can only reach the adapter that took part in its forward pass.
"""
from __future__ import annotations

import json
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Sequence

import torch

PHI_MINUS = "phi_minus"
PHI_PLUS = "phi_plus"

SD3_TRANSFORMER_TARGETS: tuple[str, ...] = (
    "to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "proj", "linear", "proj_out",
)
SD3_CRITIC_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj")
# SD-Turbo option (UNet): attention and transformer-block projections for φ⁻, attention only for φ⁺.
UNET_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2")
UNET_CRITIC_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")


def vae_encoder_targets(vae: torch.nn.Module) -> list[str]:
    """Full module names of every conv / attention projection of the VAE encoder, plus ``quant_conv`` if present."""
    names = [
        f"encoder.{name}"
        for name, module in vae.encoder.named_modules()
        if isinstance(getattr(module, "base_layer", module), (torch.nn.Conv2d, torch.nn.Linear))
        and "lora_" not in name and not name.endswith("base_layer")  # skip PEFT internals of an adapted VAE
    ]
    if isinstance(getattr(vae, "quant_conv", None), torch.nn.Conv2d):
        names.append("quant_conv")
    return names


def matched_modules(model: torch.nn.Module, targets: Iterable[str]) -> list[str]:
    """Module names PEFT would adapt for a list of target suffixes (exact name or ``.<target>`` suffix)."""
    targets = list(targets)
    return [
        name
        for name, module in model.named_modules()
        # a layer that already carries another adapter is a PEFT wrapper holding the original as `base_layer`
        if isinstance(getattr(module, "base_layer", module), (torch.nn.Linear, torch.nn.Conv2d))
        and any(name == t or name.endswith("." + t) for t in targets)
    ]


def lora_config(targets: Sequence[str], rank: int, alpha: float | None = None):
    from peft import LoraConfig

    # Gaussian init of A, zero B: an untrained adapter leaves the base model unchanged.
    return LoraConfig(
        r=int(rank), lora_alpha=float(alpha if alpha is not None else rank), init_lora_weights="gaussian",
        target_modules=list(targets),
    )


def add_lora(model, name: str, targets: Sequence[str], rank: int, alpha: float | None = None) -> None:
    """Inject a named adapter (diffusers ``PeftAdapterMixin.add_adapter``), keep every adapter weight float32."""
    if not matched_modules(model, targets):
        raise ValueError(f"none of the LoRA targets {list(targets)} exists in {type(model).__name__}")
    with warnings.catch_warnings():
        # Two adapters on one model (phi_minus, phi_plus) is the design; PEFT warns at the second one that
        # "multiple adapters" need care. Only that message is silenced, and only here.
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute", category=UserWarning)
        model.add_adapter(lora_config(targets, rank, alpha), adapter_name=name)
    for p in adapter_parameters(model, name):
        p.data = p.data.float()
    # PEFT's add/set_adapter freezes every *other* adapter of the model; both stay trainable here and
    # `active_adapter` decides which one takes part in a forward pass (hence which one receives gradients).
    for n, p in model.named_parameters():
        if "lora_" in n:
            p.requires_grad_(True)


def adapter_parameters(model: torch.nn.Module, name: str) -> list[torch.nn.Parameter]:
    marker = f".{name}."
    return [p for n, p in model.named_parameters() if "lora_" in n and marker in n + "."]


def _tuner_layers(model: torch.nn.Module):
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


@contextmanager
def active_adapter(model: torch.nn.Module, name: str | None):
    """Run ``model`` with only adapter ``name`` active (``None``: the frozen base). Restores the previous state."""
    layers = _tuner_layers(model)
    saved = [(m._active_adapter, m._disable_adapters) for m in layers]
    for m in layers:
        if name is None:
            m._disable_adapters = True
        else:
            m._active_adapter = [name]
            m._disable_adapters = False
    try:
        yield model
    finally:
        for m, (act, dis) in zip(layers, saved):
            m._active_adapter, m._disable_adapters = act, dis


def adapter_state_dict(model: torch.nn.Module, name: str) -> dict[str, torch.Tensor]:
    """Adapter weights with the adapter name stripped from the keys (PEFT's portable format)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().float().contiguous().cpu()
            for k, v in get_peft_model_state_dict(model, adapter_name=name).items()}


class LoraMismatchError(ValueError):
    """A LoRA weights file does not match the adapters built from its own metadata."""


def load_adapter_state_dict(model: torch.nn.Module, name: str, state: dict[str, torch.Tensor], source: str) -> None:
    """Strictly load ``state`` into adapter ``name``; every key and shape must match."""
    from peft import set_peft_model_state_dict

    expected = adapter_state_dict(model, name)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        raise LoraMismatchError(
            f"LoRA weights in '{source}' do not match adapter '{name}' of {type(model).__name__}: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
            f"{len(shapes)} shape mismatches (e.g. {shapes[:3]})"
        )
    set_peft_model_state_dict(model, state, adapter_name=name)


def save_lora_file(path: str | os.PathLike, parts: dict[str, dict[str, torch.Tensor]], metadata: dict) -> Path:
    """One safetensors file, keys prefixed by component (``transformer.``/``unet.``/``vae.``), JSON metadata."""
    from safetensors.torch import save_file

    flat = {f"{component}.{k}": v for component, sd in parts.items() for k, v in sd.items()}
    meta = {"format": "pt", "nifi": json.dumps(metadata, sort_keys=True)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(flat, str(path), metadata=meta)
    return path


def read_lora_file(path: str | os.PathLike) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """Inverse of :func:`save_lora_file`: ({component: state dict}, metadata); clear errors for foreign files.

    Only this project's safetensors; ``files.read_lora`` also reads training checkpoints and the official .ckpt."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NiFi LoRA file '{path}' does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw_meta = (f.metadata() or {}).get("nifi")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error classes for corrupt headers
        raise LoraMismatchError(f"'{path}' is not a readable safetensors file: {err}") from err
    if raw_meta is None:
        raise LoraMismatchError(f"'{path}' has no 'nifi' metadata: it was not written by nifi_ns (save_lora_file)")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        component, _, rest = key.partition(".")
        parts.setdefault(component, {})[rest] = value
    return parts, json.loads(raw_meta)
