"""``ImageMetrics``: the five numbers the Difix/NiFi papers report, in one call."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import torch
from torch import Tensor

from difix_ns.metrics.dists import DISTS
from difix_ns.metrics.lpips import LPIPS
from difix_ns.metrics.pixel import psnr, ssim


class ImageMetrics:
    """``ImageMetrics(device)(pred, target) -> {"psnr", "ssim", "lpips", "lpips_vgg", "dists"}`` (batch means).

    ``lpips`` is LPIPS-alex (the number Difix3D and nerfstudio report); the perceptual networks are built on
    first use. ``perceptual`` selects which of ``lpips``, ``lpips_vgg``, ``dists`` are computed (e.g. only
    ``("lpips",)`` where just the AlexNet weights are available); the others are left out of the result.
    """

    PERCEPTUAL = ("lpips", "lpips_vgg", "dists")

    def __init__(self, device: Optional[Union[str, torch.device]] = None,
                 perceptual: Sequence[str] = PERCEPTUAL) -> None:
        unknown = sorted(set(perceptual) - set(self.PERCEPTUAL))
        if unknown:
            raise ValueError(f"unknown perceptual metric(s) {unknown}; choose from {self.PERCEPTUAL}")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.perceptual = tuple(perceptual)
        self._nets: Dict[str, torch.nn.Module] = {}

    def _net(self, name: str) -> torch.nn.Module:
        if name not in self._nets:
            net = {"lpips": lambda: LPIPS("alex"), "lpips_vgg": lambda: LPIPS("vgg"), "dists": DISTS}[name]()
            self._nets[name] = net.to(self.device)
        return self._nets[name]

    @torch.no_grad()
    def per_image(self, pred: Tensor, target: Tensor) -> Dict[str, Tensor]:
        """Per-image values ``{name: Tensor[B]}`` on the CPU."""
        pred = pred.to(self.device, torch.float32).clamp(0, 1)
        target = target.to(self.device, torch.float32).clamp(0, 1)
        out = {"psnr": psnr(pred, target), "ssim": ssim(pred, target)}
        for name in self.perceptual:
            out[name] = self._net(name)(pred, target)
        return {k: v.detach().float().cpu() for k, v in out.items()}

    def __call__(self, pred: Tensor, target: Tensor) -> Dict[str, float]:
        return {k: float(v.mean()) for k, v in self.per_image(pred, target).items()}
