"""Strict safetensors loading with errors that name the offending keys and file.

``torch.nn.Module.load_state_dict(strict=True)`` already refuses mismatches, but its message is hard to act on
for a 686-key UNet; here missing / unexpected / wrongly shaped keys are listed by name together with the file.
Modules may be built on the meta device (``difix_ns.models.loading.parameters_on_meta``) and are then filled with
``assign=True`` so a 3.5 GB UNet is never allocated twice.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping

import torch

_SHOW = 12


class StateDictMismatchError(ValueError):
    """The keys or shapes of a weights file do not match the module built from its config."""


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    more = f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return shown + more


def check_state_dict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise ``StateDictMismatchError`` unless ``state_dict`` has exactly the module's keys and shapes."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = sorted(
        f"{k} (file {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)})"
        for k in set(expected) & set(state_dict)
        if tuple(expected[k].shape) != tuple(state_dict[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} shape mismatch(es): {_listing(wrong_shape)}")
    if problems:
        raise StateDictMismatchError(
            f"Weights in '{source}' do not match {type(module).__name__} built from its config: " + "; ".join(problems)
        )


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weights file '{path}' does not exist.")
    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own error types for truncated / corrupt headers
        raise StateDictMismatchError(f"Weights file '{path}' is not a readable safetensors file: {err}") from err


def load_strict(
    module: torch.nn.Module,
    path: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    assign: bool = True,
    rename: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> torch.nn.Module:
    """Load ``path`` (safetensors) into ``module`` strictly; floating tensors are cast to ``dtype`` first.

    ``rename`` maps the file's key naming to the module's (e.g. a library-version prefix change) before checking.
    """
    state_dict = read_safetensors(path)
    if rename is not None:
        state_dict = rename(state_dict)
    check_state_dict(module, state_dict, str(path))
    if dtype is not None:
        state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    module.load_state_dict(state_dict, strict=True, assign=assign)
    return module


def save_safetensors(
    module: torch.nn.Module,
    path: str | os.PathLike,
    rename: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> None:
    """Save the full state dict (contiguous copies), optionally renamed to a checkpoint's key naming."""
    from safetensors.torch import save_file

    state_dict = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
    if rename is not None:
        state_dict = rename(state_dict)
    save_file(state_dict, str(path), metadata={"format": "pt"})
