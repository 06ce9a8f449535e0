"""Locate small weight files shipped inside installed packages without importing those packages.

Importing ``lpips`` or ``torchmetrics.functional.image`` pulls in torchvision; only their data files are needed.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Dict, Sequence

import torch


def package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (needed for {relative})")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {package!r} package")
    return path


def load_first(candidates: Sequence[tuple]) -> Dict[str, torch.Tensor]:
    """Load the first ``(package, relative_path)`` that exists, as a plain tensor state dict."""
    errors = []
    for package, relative in candidates:
        try:
            path = package_file(package, relative)
        except FileNotFoundError as err:
            errors.append(str(err))
            continue
        return torch.load(path, map_location="cpu", weights_only=True)
    raise FileNotFoundError("; ".join(errors))
