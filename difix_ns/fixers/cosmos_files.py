"""The ``nvidia/Fixer`` file layout: detection, safe loading and the key renames onto diffusers' Cosmos DiT.

Three files, no config (sizes follow from tensor shapes):

* ``base/model_fast_tokenizer.pt``  the Cosmos-Predict2 0.6B DiT state dict, keys ``net.*`` (parameters, the
  RoPE buffers, training counters and transformer-engine ``_extra_state`` entries);
* ``base/tokenizer_fast.pth``       ``{"encoder": bytes, "decoder": bytes, "mean_std": ...}``: the image
  tokenizer's encoder and decoder as TorchScript archives plus the per-channel latent mean and std;
* ``pretrained/pretrained_fixer.pkl`` the fine-tune overlaid on the base: ``state_dict_unet`` (``dit.*`` and
  ``tokenizer.*``) and ``state_dict_vae`` (``encoder.*``/``decoder.*``); other entries (optimiser, discriminator)
  are ignored.

Every file goes through ``torch.load(weights_only=True)``. The tokenizer archives are TorchScript, i.e. code:
``torch.jit.load`` runs the serialized TorchScript program from NVIDIA's file (TorchScript cannot import Python
modules or call arbitrary Python, but it is still a program from the file, so only load files you trust).
"""
from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from difix_ns.diffusion.hub import looks_like_hub_id, resolve_model_dir

DIT_FILE = "base/model_fast_tokenizer.pt"
TOKENIZER_FILE = "base/tokenizer_fast.pth"
OVERLAY_FILE = "pretrained/pretrained_fixer.pkl"
FIXER_FILES = (DIT_FILE, TOKENIZER_FILE, OVERLAY_FILE)

# Architecture facts of the Cosmos-Predict2 0.6B text2image DiT that are not recorded in the tensors.
PATCH_SIZE = (1, 2, 2)
MAX_SIZE = (128, 240, 240)  # frames, height, width in latent pixels
ROPE_SCALE = (1.0, 4.0, 4.0)  # temporal, height, width NTK extrapolation ratios
LATENT_CHANNELS = 16
SPATIAL_COMPRESSION = 8

# Buffers of NVIDIA's DiT that carry no weights: recomputed by diffusers (RoPE) or training bookkeeping.
_DROPPED_SUFFIXES = (
    "._extra_state",
    "pos_embedder.seq",
    "pos_embedder.dim_spatial_range",
    "pos_embedder.dim_temporal_range",
)
_DROPPED_NAMES = ("accum_video_sample_counter", "accum_image_sample_counter", "accum_iteration",
                  "accum_train_in_hours")

_TOP_LEVEL = {
    "x_embedder.proj.1.weight": "patch_embed.proj.weight",
    "t_embedder.1.linear_1.weight": "time_embed.t_embedder.linear_1.weight",
    "t_embedder.1.linear_2.weight": "time_embed.t_embedder.linear_2.weight",
    "t_embedding_norm.weight": "time_embed.norm.weight",
    "final_layer.adaln_modulation.1.weight": "norm_out.linear_1.weight",
    "final_layer.adaln_modulation.2.weight": "norm_out.linear_2.weight",
    "final_layer.linear.weight": "proj_out.weight",
}
_ATTENTION = {"self_attn": "attn1", "cross_attn": "attn2"}
_ATTENTION_PARTS = {"q_proj": "to_q", "k_proj": "to_k", "v_proj": "to_v", "output_proj": "to_out.0",
                    "q_norm": "norm_q", "k_norm": "norm_k"}
_MODULATION = {"self_attn": "norm1", "cross_attn": "norm2", "mlp": "norm3"}
_MLP = {"layer1": "ff.net.0.proj", "layer2": "ff.net.2"}
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)\.weight$")


class FixerLoadError(ValueError):
    """A Fixer file is missing, unreadable with the safe unpickler, or does not match the architecture."""


def is_fixer_dir(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds the three ``nvidia/Fixer`` files."""
    folder = Path(folder)
    return folder.is_dir() and all((folder / name).is_file() for name in FIXER_FILES)


def locate_fixer_model(name: str | os.PathLike) -> Optional[Path]:
    """The local folder of a Fixer-layout model, or None when ``name`` is not one (e.g. a Difix model).

    Local folders are recognised by their files. Hub ids are looked up through the Hugging Face cache
    (``HF_HUB_OFFLINE=1`` uses the cache only) fetching only the three Fixer files; a Difix repository yields no
    Fixer files and therefore None. Hub errors raise ``ModelResolutionError`` with the same wording as Difix's.
    """
    text = os.fspath(name)
    local = Path(text).expanduser()
    if local.exists() or not looks_like_hub_id(text):
        return local if is_fixer_dir(local) else None
    folder = resolve_model_dir(text, required_files=(), allow_patterns=FIXER_FILES, what="model")
    return folder if is_fixer_dir(folder) else None


def safe_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` on CPU; errors name the file."""
    if not path.is_file():
        raise FixerLoadError(f"Fixer file '{path}' does not exist")
    # Older transformer-engine releases serialise ``_extra_state`` as an io.BytesIO; nothing else is allowed.
    with torch.serialization.safe_globals([io.BytesIO]):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # UnpicklingError for disallowed globals, RuntimeError for corrupt archives
            raise FixerLoadError(f"cannot load Fixer file '{path}' with torch.load(weights_only=True): {err}") from err


def _rename_block_key(index: str, rest: str) -> Optional[str]:
    parts = rest.split(".")
    if len(parts) == 2 and parts[0] in _ATTENTION and parts[1] in _ATTENTION_PARTS:
        return f"transformer_blocks.{index}.{_ATTENTION[parts[0]]}.{_ATTENTION_PARTS[parts[1]]}.weight"
    if len(parts) == 2 and parts[0] == "mlp" and parts[1] in _MLP:
        return f"transformer_blocks.{index}.{_MLP[parts[1]]}.weight"
    if len(parts) == 2 and parts[0].startswith("adaln_modulation_") and parts[1] in ("1", "2"):
        target = _MODULATION.get(parts[0].removeprefix("adaln_modulation_"))
        if target is not None:
            return f"transformer_blocks.{index}.{target}.linear_{parts[1]}.weight"
    return None


def is_dropped_key(key: str) -> bool:
    """NVIDIA DiT entries without weights (RoPE tables, training counters, transformer-engine extra state)."""
    return key.endswith(_DROPPED_SUFFIXES) or key in _DROPPED_NAMES


def rename_dit_key(key: str) -> Optional[str]:
    """NVIDIA MiniTrainDIT key (without the ``net.`` prefix) -> diffusers ``CosmosTransformer3DModel`` key, or
    None for a key with no counterpart."""
    if key in _TOP_LEVEL:
        return _TOP_LEVEL[key]
    match = _BLOCK_KEY.match(key)
    return _rename_block_key(match.group(1), match.group(2)) if match else None


def convert_dit_state_dict(state: Mapping[str, Any], prefix: str, source: str) -> dict[str, torch.Tensor]:
    """Strip ``prefix``, drop the weightless entries and rename the rest; unknown keys raise naming them."""
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    foreign = sorted(k for k in state if not k.startswith(prefix))
    if foreign:
        raise FixerLoadError(f"{source}: keys without the '{prefix}' prefix: {', '.join(foreign[:10])}")
    for key, value in state.items():
        short = key[len(prefix):]
        if is_dropped_key(short):
            continue
        new = rename_dit_key(short)
        if new is None or not isinstance(value, torch.Tensor):
            unknown.append(key)
            continue
        converted[new] = value
    if unknown:
        raise FixerLoadError(f"{source}: unexpected key(s) {', '.join(sorted(unknown)[:10])}"
                             f"{' ...' if len(unknown) > 10 else ''} (no counterpart in the Cosmos DiT)")
    return converted


def dit_config_from_state(state: Mapping[str, torch.Tensor], source: str) -> dict:
    """``CosmosTransformer3DModel`` config of a converted (diffusers-named) DiT state dict, from tensor shapes."""
    try:
        hidden, patch_in = state["patch_embed.proj.weight"].shape
        head_dim = state["transformer_blocks.0.attn1.norm_q.weight"].shape[0]
        adaln_lora_dim = state["transformer_blocks.0.norm1.linear_1.weight"].shape[0]
        text_dim = state["transformer_blocks.0.attn2.to_k.weight"].shape[1]
        ff_dim = state["transformer_blocks.0.ff.net.0.proj.weight"].shape[0]
        out_dim = state["proj_out.weight"].shape[0]
    except KeyError as err:
        raise FixerLoadError(f"{source}: missing DiT weight {err.args[0]}") from None
    patch_volume = PATCH_SIZE[0] * PATCH_SIZE[1] * PATCH_SIZE[2]
    num_layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks."))
    if hidden % head_dim or patch_in % patch_volume or out_dim % patch_volume:
        raise FixerLoadError(f"{source}: inconsistent DiT shapes (hidden {hidden}, head dim {head_dim})")
    return dict(
        in_channels=patch_in // patch_volume - 1,  # the padding-mask channel is concatenated to the latent
        out_channels=out_dim // patch_volume,
        num_attention_heads=hidden // head_dim,
        attention_head_dim=head_dim,
        num_layers=num_layers,
        mlp_ratio=ff_dim / hidden,
        text_embed_dim=text_dim,
        adaln_lora_dim=adaln_lora_dim,
        max_size=MAX_SIZE,
        patch_size=PATCH_SIZE,
        rope_scale=ROPE_SCALE,
        concat_padding_mask=True,
        extra_pos_embed_type=None,
    )


def nvidia_names(layers: int) -> dict[str, str]:
    """diffusers key -> NVIDIA key (``net.`` + MiniTrainDIT name) for the weights of a ``layers``-block DiT."""
    keys = list(_TOP_LEVEL)
    for i in range(layers):
        for attn in _ATTENTION:
            keys += [f"blocks.{i}.{attn}.{part}.weight" for part in _ATTENTION_PARTS]
        keys += [f"blocks.{i}.mlp.{part}.weight" for part in _MLP]
        keys += [f"blocks.{i}.adaln_modulation_{part}.{j}.weight" for part in _MODULATION for j in ("1", "2")]
    return {rename_dit_key(k): f"net.{k}" for k in keys}


def strict_load(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str,
                names: Optional[Mapping[str, str]] = None) -> None:
    """``load_state_dict(strict=True)`` with an error naming the missing and unexpected keys (``names`` adds the
    file's own name of a missing key)."""
    expected = set(module.state_dict())
    missing = sorted(expected - set(state))
    if names:
        missing = [f"{k} ({names[k]})" if k in names else k for k in missing]
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        lines = []
        if missing:
            lines.append(f"missing key(s): {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
        if unexpected:
            lines.append(f"unexpected key(s): {', '.join(unexpected[:10])}{' ...' if len(unexpected) > 10 else ''}")
        raise FixerLoadError(f"{source}: " + "; ".join(lines))
    try:
        module.load_state_dict(dict(state), strict=True)
    except RuntimeError as err:  # shape mismatches
        raise FixerLoadError(f"{source}: {err}") from None


def load_scripted(blob: Any, what: str, source: str) -> torch.jit.ScriptModule:
    """A TorchScript archive held as bytes inside the tokenizer dict -> ScriptModule on CPU."""
    if isinstance(blob, io.BytesIO):
        blob = blob.getvalue()
    if not isinstance(blob, (bytes, bytearray)):
        raise FixerLoadError(f"{source}: '{what}' should hold TorchScript archive bytes, got {type(blob).__name__}")
    try:
        with warnings.catch_warnings():  # torch >= 2.9 flags TorchScript as deprecated; the file format is what it is
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(io.BytesIO(bytes(blob)), map_location="cpu")
    except Exception as err:
        raise FixerLoadError(f"{source}: '{what}' is not a loadable TorchScript archive: {err}") from err


def latent_mean_std(value: Any, source: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean_std`` (a pair of tensors or a [2, C] tensor) -> two float32 tensors [1, C, 1, 1]."""
    try:
        mean, std = value[0], value[1]
    except Exception:
        raise FixerLoadError(f"{source}: 'mean_std' should hold the latent mean and std") from None
    if not (isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor)):
        raise FixerLoadError(f"{source}: 'mean_std' entries must be tensors")
    if mean.numel() != LATENT_CHANNELS or std.numel() != LATENT_CHANNELS:
        raise FixerLoadError(f"{source}: 'mean_std' must hold {LATENT_CHANNELS} values each, "
                             f"got {mean.numel()} and {std.numel()}")
    return mean.float().reshape(1, -1, 1, 1), std.float().reshape(1, -1, 1, 1)


def split_overlay(overlay: Any, source: str) -> tuple[dict, dict, dict]:
    """The fine-tune pickle -> (DiT state ``net``-less keys, encoder state, decoder state).

    ``state_dict_unet`` holds the whole inference pipeline (``dit.*`` and ``tokenizer.encoder.*``/``.decoder.*``);
    ``state_dict_vae`` the tokenizer again (``encoder.*``/``decoder.*``). NVIDIA loads the VAE part last, so it
    wins where both name the same tensor.
    """
    if not isinstance(overlay, Mapping) or "state_dict_unet" not in overlay or "state_dict_vae" not in overlay:
        keys = sorted(overlay) if isinstance(overlay, Mapping) else type(overlay).__name__
        raise FixerLoadError(f"{source}: expected a dict with 'state_dict_unet' and 'state_dict_vae', got {keys}")
    unet, vae = overlay["state_dict_unet"], overlay["state_dict_vae"]
    dit = {k: v for k, v in unet.items() if k.startswith("dit.")}
    encoder: dict = {}
    decoder: dict = {}
    stray = []
    for key, value in unet.items():
        if key.startswith("dit."):
            continue
        if key.startswith("tokenizer.encoder."):
            encoder[key[len("tokenizer.encoder."):]] = value
        elif key.startswith("tokenizer.decoder."):
            decoder[key[len("tokenizer.decoder."):]] = value
        else:
            stray.append(f"state_dict_unet/{key}")
    for key, value in vae.items():
        if key.startswith("encoder."):
            encoder[key[len("encoder."):]] = value
        elif key.startswith("decoder."):
            decoder[key[len("decoder."):]] = value
        else:
            stray.append(f"state_dict_vae/{key}")
    if stray:
        raise FixerLoadError(f"{source}: unexpected key(s) {', '.join(sorted(stray)[:10])}")
    return dit, encoder, decoder
