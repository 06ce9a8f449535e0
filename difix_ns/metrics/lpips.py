"""LPIPS v0.1 (Zhang et al. 2018) with the real ImageNet AlexNet / VGG16 backbones.

Same computation as the official ``lpips`` package: inputs in [0, 1] are mapped to [-1, 1], shifted/scaled by
the LPIPS scaling layer, unit-normalised along channels at five ReLU taps, squared differences weighted by the
learned 1x1 heads (shipped in the ``lpips`` wheel), averaged spatially and summed over taps.
"""
from __future__ import annotations

from typing import List, Literal

import torch
from torch import Tensor, nn

from difix_ns.metrics._packaged import load_first
from difix_ns.metrics.weights import imagenet_features

# Exclusive end index (inside torchvision ``features``) of each of the five ReLU taps.
_TAPS = {"alex": (2, 5, 8, 10, 12), "vgg": (4, 9, 16, 23, 30)}
_ARCH = {"alex": "alexnet", "vgg": "vgg16"}


def check_image_pair(pred: Tensor, target: Tensor, name: str) -> None:
    if pred.ndim != 4 or pred.shape[1] != 3 or pred.shape != target.shape:
        raise ValueError(f"{name} expects two [B,3,H,W] tensors of equal shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")


class LPIPS(nn.Module):
    """``LPIPS(net)(pred, target) -> Tensor[B]``; images ``[B,3,H,W]`` in [0, 1]. Lower is more similar."""

    def __init__(self, net: Literal["alex", "vgg"] = "alex") -> None:
        super().__init__()
        if net not in _TAPS:
            raise ValueError(f"LPIPS net must be 'alex' or 'vgg', got {net!r}")
        self.net_name = net
        features = imagenet_features(_ARCH[net])
        bounds = (0,) + _TAPS[net]
        self.slices = nn.ModuleList(features[a:b] for a, b in zip(bounds[:-1], bounds[1:]))
        heads = load_first([("lpips", f"weights/v0.1/{net}.pth"),
                            ("torchmetrics", f"functional/image/lpips_models/{net}.pth")])
        widths = [heads[f"lin{k}.model.1.weight"].shape[1] for k in range(5)]
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in widths)
        for k, head in enumerate(self.heads):
            head.weight.data.copy_(heads[f"lin{k}.model.1.weight"])
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.eval().requires_grad_(False)

    def _taps(self, x: Tensor) -> List[Tensor]:
        h = ((x * 2 - 1) - self.shift) / self.scale
        out = []
        for block in self.slices:
            h = block(h)
            out.append(h / (h.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        check_image_pair(pred, target, "LPIPS")
        dtype = self.shift.dtype
        total = 0
        for head, fp, ft in zip(self.heads, self._taps(pred.to(dtype)), self._taps(target.to(dtype))):
            total = total + head((fp - ft) ** 2).mean(dim=(2, 3))  # [B,1]
        return total.flatten()
