"""Make nerfstudio 1.1.5's stock splatfacto (and subclasses) train, render and evaluate without CUDA.

What breaks on a CPU-only machine and what `install_cpu_support` does about it (nothing else is touched):

* ``gsplat.rasterization`` has no CPU kernels -> splatfacto's module-level ``rasterization`` name points at
  `difix_ns.splat.rasterization` (CUDA tensors still go to gsplat, anything else to the PyTorch rasterizer,
  which also fills ``means2d.absgrad`` for ``DefaultStrategy(absgrad=True)``).
* hard-coded ``.cuda()`` in ``SplatfactoModel.populate_modules`` / ``get_outputs`` -> while (and only while) those
  two methods run, a thread-local torch function mode turns ``Tensor.cuda()`` into ``.to(model device)``.
* ``get_viewmat`` is ``torch.compile``'d (needs a C toolchain, slow to warm up on CPU) -> the uncompiled function.
* ``cache_images="cpu"`` calls ``Tensor.pin_memory()``, which raises without an accelerator -> inside
  ``FullImageDatamanager._load_images`` pinning is skipped (plain CPU tensors work the same, just unpinned).
* torchmetrics' LPIPS downloads AlexNet when the model is built -> before the first splatfacto or nerfacto model is
  built, `difix_ns.metrics.install_torchvision_offline_fallback()` serves the real ImageNet weights from the local
  cache when the download cannot happen (a no-op whenever torchvision can download).

On a machine where ``torch.cuda.is_available()`` only the LPIPS fallback is installed (and it changes nothing
while downloads work); everything else is left exactly as nerfstudio ships it. Idempotent and cheap: it only
imports modules nerfstudio's own method registry imports anyway. Installed through
:mod:`difix_ns.nerfstudio_patches` (patches 3 and 4 of its list), which says when.
"""
from __future__ import annotations

import functools
import threading
from typing import Any, Callable, Optional

import torch
from torch.overrides import TorchFunctionMode

_INSTALLED = False
_LOCK = threading.Lock()


class _NoCudaMode(TorchFunctionMode):
    """Redirects ``Tensor.cuda()`` to ``device`` and makes ``Tensor.pin_memory()`` a no-op (thread-local)."""

    def __init__(self, device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.device = device

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cuda:
            return args[0] if self.device is None else args[0].to(self.device)
        if func is torch.Tensor.pin_memory:
            return args[0]
        return func(*args, **kwargs)


def _without_cuda(method: Callable, device_of: Callable[[Any], Optional[torch.device]]) -> Callable:
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with _NoCudaMode(device_of(self)):
            return method(self, *args, **kwargs)

    wrapper._difix_ns_no_cuda = True  # type: ignore[attr-defined]
    return wrapper


def _model_device(model) -> Optional[torch.device]:
    try:
        return model.device
    except (StopIteration, AttributeError):  # no parameters yet (populate_modules): keep tensors where they are
        return None


def _with_offline_lpips(populate_modules: Callable) -> Callable:
    @functools.wraps(populate_modules)
    def wrapper(self, *args, **kwargs):
        from difix_ns.metrics import install_torchvision_offline_fallback

        install_torchvision_offline_fallback()
        return populate_modules(self, *args, **kwargs)

    wrapper._difix_ns_lpips = True  # type: ignore[attr-defined]
    return wrapper


def install_cpu_support() -> bool:
    """Patch nerfstudio so splatfacto runs without CUDA; returns True if the CPU patches are (now) active.

    Safe to call many times and from the plugin's method-config modules (it runs for every ``ns-*`` command).
    """
    global _INSTALLED
    with _LOCK:
        if _INSTALLED:
            return not torch.cuda.is_available()
        from nerfstudio.data.datamanagers import full_images_datamanager
        from nerfstudio.models import splatfacto

        from nerfstudio.models import nerfacto

        model_cls = splatfacto.SplatfactoModel
        # Stock nerfacto builds the same torchmetrics LPIPS: plain `ns-train nerfacto` runs (which difix3d can continue
        # with `--load-checkpoint`) must train and load offline too.
        for cls in (model_cls, nerfacto.NerfactoModel):
            if not getattr(cls.populate_modules, "_difix_ns_lpips", False):
                cls.populate_modules = _with_offline_lpips(cls.populate_modules)
        if torch.cuda.is_available():
            _INSTALLED = True
            return False

        from difix_ns.splat.rendering import rasterization

        splatfacto.rasterization = rasterization
        compiled = splatfacto.get_viewmat
        splatfacto.get_viewmat = getattr(compiled, "_torchdynamo_orig_callable", compiled)
        for name in ("populate_modules", "get_outputs"):
            method = getattr(model_cls, name)
            if not getattr(method, "_difix_ns_no_cuda", False):
                setattr(model_cls, name, _without_cuda(method, _model_device))
        dm_cls = full_images_datamanager.FullImageDatamanager
        if not getattr(dm_cls._load_images, "_difix_ns_no_cuda", False):
            dm_cls._load_images = _without_cuda(dm_cls._load_images, lambda dm: None)
        _INSTALLED = True
        return True
