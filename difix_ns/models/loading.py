"""Build Difix components locally from their configs and fill them strictly from safetensors (no remote code).

``model_index.json`` of the real checkpoints names custom code (``["autoencoder_kl", "AutoencoderKL"]`` for the VAE
and, in ``nvidia/difix_ref``, ``["unet_2d_condition", "UNet2DConditionModel"]`` for the UNet). Those entries are
read as *descriptions*: the VAE is our ``DifixAutoencoderKL``; a ``unet_2d_condition`` UNet is a stock
``UNet2DConditionModel`` with reference-mixing attention installed. The ``.py`` files are never imported.
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from difix_ns.diffusion.hub import ModelResolutionError
from difix_ns.diffusion.state_dict import load_strict, save_safetensors

# Library names in model_index.json that mark the reference-mixing (multi-view) UNet of nvidia/difix_ref.
REFERENCE_UNET_LIBRARIES = ("unet_2d_condition",)
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
TRANSFORMERS_WEIGHTS = "model.safetensors"
TOKENIZER_FILES = ("vocab.json", "merges.txt")


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelResolutionError(f"missing file '{path}'")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ModelResolutionError(f"'{path}' is not valid JSON: {err}") from err


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _require(path: Path) -> Path:
    if not path.is_file():
        raise ModelResolutionError(f"missing file '{path}'")
    return path


_this_thread = threading.local()
_patch_lock = threading.Lock()
_patch_users = 0
_stock_register_parameter = torch.nn.Module.register_parameter


def _register_parameter(module: torch.nn.Module, name: str, param: Optional[torch.nn.Parameter]) -> None:
    _stock_register_parameter(module, name, param)
    if param is None or not getattr(_this_thread, "depth", 0):
        return
    stored = module._parameters[name]
    if type(stored) is torch.nn.Parameter:
        module._parameters[name] = torch.nn.Parameter(stored.to("meta"), requires_grad=stored.requires_grad)
    else:  # a Parameter subclass keeps its attributes
        kwargs = {**stored.__dict__, "requires_grad": stored.requires_grad}
        module._parameters[name] = type(stored)(stored.to("meta"), **kwargs)


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Within the block, parameters that modules built by THIS thread register go to the meta device; buffers
    (e.g. CLIP position ids) stay real. ``load_strict(assign=True)`` then fills the parameters, so a 3.5 GB UNet is
    never allocated twice, and initialisers run on meta tensors (they draw nothing from the global RNG).

    Other threads are unaffected. accelerate's ``init_empty_weights`` moves every thread's new parameters while it
    runs: a fixer loading in the background of a training run then put the Gaussians that densification registered
    meanwhile on ``meta`` (an H100 run failed with gsplat's "opacities must be a CUDA tensor")."""
    global _patch_users
    with _patch_lock:
        if _patch_users == 0:
            torch.nn.Module.register_parameter = _register_parameter
        _patch_users += 1
    _this_thread.depth = getattr(_this_thread, "depth", 0) + 1
    try:
        yield
    finally:
        _this_thread.depth -= 1
        with _patch_lock:
            _patch_users -= 1
            if _patch_users == 0:
                torch.nn.Module.register_parameter = _stock_register_parameter


def model_index_uses_references(index: dict[str, Any]) -> bool:
    entry = index.get("unet") or [None, None]
    return entry[0] in REFERENCE_UNET_LIBRARIES


def load_vae(folder: Path, dtype: Optional[torch.dtype] = None):
    from difix_ns.models.autoencoder import DifixAutoencoderKL

    config = read_json(folder / "config.json")
    weights = _require(folder / DIFFUSERS_WEIGHTS)
    with parameters_on_meta():
        vae = DifixAutoencoderKL.from_config(config)
    return load_strict(vae, weights, dtype=dtype).eval().requires_grad_(False)


def load_unet(folder: Path, dtype: Optional[torch.dtype] = None):
    from diffusers import UNet2DConditionModel

    config = read_json(folder / "config.json")
    weights = _require(folder / DIFFUSERS_WEIGHTS)
    with parameters_on_meta():
        unet = UNet2DConditionModel.from_config(config)
    return load_strict(unet, weights, dtype=dtype).eval().requires_grad_(False)


def load_text_encoder(folder: Path, dtype: Optional[torch.dtype] = None):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig.from_dict(read_json(folder / "config.json"))
    weights = _require(folder / TRANSFORMERS_WEIGHTS)
    with parameters_on_meta():
        model = CLIPTextModel(config)
    rename = _text_prefix_renamer(model)
    return load_strict(model, weights, dtype=dtype, rename=rename).eval().requires_grad_(False)


TEXT_PREFIX = "text_model."


def _text_prefix_renamer(model):
    """Checkpoints name CLIP text weights ``text_model.*`` (transformers 4 module layout); transformers 5 builds
    ``CLIPTextModel`` without that level. Map the file's names onto whatever this transformers version uses."""
    model_has_prefix = any(k.startswith(TEXT_PREFIX) for k in model.state_dict())

    def rename(state_dict):
        file_has_prefix = any(k.startswith(TEXT_PREFIX) for k in state_dict)
        if file_has_prefix and not model_has_prefix:
            return {k.removeprefix(TEXT_PREFIX): v for k, v in state_dict.items()}
        if model_has_prefix and not file_has_prefix:
            return {TEXT_PREFIX + k: v for k, v in state_dict.items()}
        return state_dict

    return rename


def _add_text_prefix(state_dict):
    return {k if k.startswith(TEXT_PREFIX) else TEXT_PREFIX + k: v for k, v in state_dict.items()}


def load_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    if not (folder / "tokenizer.json").is_file():
        for name in TOKENIZER_FILES:
            _require(folder / name)
    try:
        return CLIPTokenizer.from_pretrained(str(folder))
    except Exception as err:  # transformers raises several error types for unreadable vocab/merges
        raise ModelResolutionError(f"could not read the CLIP tokenizer in '{folder}': {err}") from err


def load_scheduler(folder: Path):
    from diffusers import DDPMScheduler

    config = read_json(folder / "scheduler_config.json")
    return DDPMScheduler.from_config(config)


def save_diffusers_model(model, folder: Path, class_name: str) -> None:
    """config.json (``_class_name`` as the real checkpoints spell it) + diffusion_pytorch_model.safetensors."""
    folder.mkdir(parents=True, exist_ok=True)
    if getattr(model, "lora_merged", False):
        model.unmerge_lora()  # the checkpoint layout stores the adapter unmerged
    config = {k: v for k, v in dict(model.config).items() if not k.startswith("_") or k == "_name_or_path"}
    config["_class_name"] = class_name
    config["_diffusers_version"] = _diffusers_version()
    write_json(folder / "config.json", {k: _jsonable(v) for k, v in config.items()})
    save_safetensors(model, folder / DIFFUSERS_WEIGHTS)


def save_text_encoder(model, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(str(folder / "config.json"))
    save_safetensors(model, folder / TRANSFORMERS_WEIGHTS, rename=_add_text_prefix)  # the real checkpoints' naming


def save_tokenizer(tokenizer, folder: Path) -> None:
    """Writes vocab.json + merges.txt (slow-tokenizer layout of the real checkpoints) plus the tokenizer configs."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(folder))
    if not all((folder / f).is_file() for f in TOKENIZER_FILES):
        tokenizer.backend_tokenizer.model.save(str(folder))
    # The real checkpoints ship the slow-tokenizer files only; CLIPTokenizer rebuilds itself from vocab + merges.
    for extra in ("tokenizer.json", "chat_template.jinja"):
        if (folder / extra).is_file():
            (folder / extra).unlink()
    if not (folder / "special_tokens_map.json").is_file():
        names = ("bos_token", "eos_token", "unk_token", "pad_token")
        special = {n: str(getattr(tokenizer, n)) for n in names if getattr(tokenizer, n, None) is not None}
        write_json(folder / "special_tokens_map.json", special)


def save_scheduler(scheduler, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    scheduler.save_config(str(folder))


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__


def _jsonable(value):
    if isinstance(value, tuple):
        return list(value)
    return value
