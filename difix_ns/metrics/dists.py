"""DISTS (Ding et al. 2020): structure + texture similarity of VGG16 features, with the real ImageNet backbone.

Max-pools are replaced by Hanning-window L2 pooling, the features of six stages (including the ImageNet-normalised
input) are compared by their global means (texture) and covariances (structure), weighted by the learned
alpha/beta (shipped in the ``torchmetrics`` / ``DISTS_pytorch`` wheels).
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from difix_ns.metrics._packaged import load_first
from difix_ns.metrics.lpips import check_image_pair
from difix_ns.metrics.weights import imagenet_features

_STAGE_BOUNDS = ((0, 4), (5, 9), (10, 16), (17, 23), (24, 30))  # VGG16 features, max-pools 4/9/16/23 dropped
_WIDTHS = (3, 64, 128, 256, 512, 512)


class L2Pool(nn.Module):
    """sqrt(blur(x^2)) with a 3x3 Hanning kernel, stride 2: an alias-free replacement for max-pooling."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        w = torch.hann_window(5, periodic=False, dtype=torch.float64)[1:-1]
        k = (w[:, None] * w[None, :]) / (w[:, None] * w[None, :]).sum()
        self.register_buffer("kernel", k.float().expand(channels, 1, 3, 3).contiguous(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        y = F.conv2d(x * x, self.kernel, stride=2, padding=1, groups=x.shape[1])
        return (y + 1e-12).sqrt()


class DISTS(nn.Module):
    """``DISTS()(pred, target) -> Tensor[B]``; images ``[B,3,H,W]`` in [0, 1]. Lower is more similar."""

    def __init__(self) -> None:
        super().__init__()
        vgg = imagenet_features("vgg16")
        stages = []
        for i, (a, b) in enumerate(_STAGE_BOUNDS):
            layers = [vgg[a:b]] if i == 0 else [L2Pool(_WIDTHS[i]), vgg[a:b]]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        weights = load_first([("torchmetrics", "functional/image/dists_models/weights.pt"),
                              ("DISTS_pytorch", "weights.pt")])
        total = weights["alpha"].sum() + weights["beta"].sum()
        self.register_buffer("alpha", (weights["alpha"] / total).flatten().float(), persistent=False)
        self.register_buffer("beta", (weights["beta"] / total).flatten().float(), persistent=False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.eval().requires_grad_(False)

    def _features(self, x: Tensor) -> List[Tensor]:
        h = (x - self.mean) / self.std
        feats = [x]  # stage 0 is the raw [0,1] image, as in the official code
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        return feats

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        check_image_pair(pred, target, "DISTS")
        pred, target = pred.to(self.mean.dtype), target.to(self.mean.dtype)
        c = 1e-6
        alphas, betas = self.alpha.split(_WIDTHS), self.beta.split(_WIDTHS)
        score = 0
        for fx, fy, a, b in zip(self._features(pred), self._features(target), alphas, betas):
            mx, my = fx.mean(dim=(2, 3)), fy.mean(dim=(2, 3))  # [B,C]
            vx = (fx - mx[..., None, None]).pow(2).mean(dim=(2, 3))
            vy = (fy - my[..., None, None]).pow(2).mean(dim=(2, 3))
            cov = (fx * fy).mean(dim=(2, 3)) - mx * my
            texture = (2 * mx * my + c) / (mx**2 + my**2 + c)
            structure = (2 * cov + c) / (vx + vy + c)
            score = score + (texture * a).sum(dim=1) + (structure * b).sum(dim=1)
        return 1 - score
