"""Where and in which precision a diffusion model runs: the one device/dtype rule of every fixer and restorer.

- ``resolve_device(None)`` is ``cuda`` when a CUDA device is visible, else ``cpu``; a given name is used as is.
- ``resolve_dtype(name, device)`` maps a dtype name (``DTYPE_NAMES``) to the torch dtype on CUDA; the CPU always
  runs float32 (bf16/fp16 kernels there are slow and round differently).

Used by ``difix_ns.fixer.DifixFixer``, ``nifi_ns.restoration.NiFiRestorer`` and ``difix_ns.nerfstudio.device``.
"""
from __future__ import annotations

from typing import Optional, Union

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""The dtype names configs accept, mapped to torch dtypes."""
DTYPE_NAMES = tuple(DTYPES)


def default_device_type() -> str:
    """``"cuda"`` when a CUDA device is visible, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: Optional[Union[str, torch.device]] = None) -> torch.device:
    """``device`` as a ``torch.device``; None picks the device that exists (see :func:`default_device_type`)."""
    return torch.device(device or default_device_type())


def check_dtype_name(name: str) -> None:
    """Raise a ValueError naming the accepted names when ``name`` is not one of ``DTYPE_NAMES``."""
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The compute dtype for ``name`` on ``device``: the named dtype on CUDA, float32 elsewhere."""
    check_dtype_name(name)
    return DTYPES[name] if device.type == "cuda" else torch.float32
