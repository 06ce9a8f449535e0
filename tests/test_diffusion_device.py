"""The one device/dtype rule shared by DifixFixer and NiFiRestorer (``difix_ns.diffusion.device``)."""
from __future__ import annotations

import pytest
import torch

from difix_ns.diffusion.device import DTYPE_NAMES, resolve_device, resolve_dtype


def test_device_default_and_cpu_forces_float32():
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert DTYPE_NAMES == ("float32", "bfloat16", "float16")
    assert [resolve_dtype(n, torch.device("cpu")) for n in DTYPE_NAMES] == [torch.float32] * 3
    assert resolve_dtype("bfloat16", torch.device("cuda")) == torch.bfloat16  # no CUDA needed to name a device
    with pytest.raises(ValueError, match=r"dtype must be one of .*got 'half'"):
        resolve_dtype("half", torch.device("cpu"))


def test_difix_fixer_follows_it():
    from difix_ns.fixer import DifixFixer

    fixer = DifixFixer(device="cpu", dtype="float16")
    assert (fixer.device, fixer.dtype) == (torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match="dtype must be one of"):
        DifixFixer(dtype="half")
