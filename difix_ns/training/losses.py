"""Difix training losses (difix3d.md §2.2): L2 + LPIPS over every view (the degraded view and, with references, the
reference view, whose target is itself), plus a VGG16 Gram (style) loss after a warm-up.

Images are [B,V,3,H,W] in [-1, 1]. Per-view weights: view 0 (the degraded input) has weight 1, reference views
``ref_weight`` (upstream: 1, i.e. the reference is reconstructed as well).
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of torchvision's VGG16 ``features`` and their weights.
GRAM_LAYERS = (3, 8, 15, 22, 29)
GRAM_WEIGHTS = (1 / 2.6, 1 / 4.8, 1 / 3.7, 1 / 5.6, 10 / 1.5)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class GramLoss(nn.Module):
    """Style loss on ImageNet VGG16 features of one random square crop shared by prediction and target.

    Gram matrices are per image (F Fᵀ / (c·h·w)); the loss is the weighted mean squared Gram difference."""

    def __init__(self, crop: int = 400):
        super().__init__()
        from difix_ns.metrics.weights import imagenet_features

        features = imagenet_features("vgg16")
        self.features = features[: GRAM_LAYERS[-1] + 1].eval().requires_grad_(False)
        self.crop = crop
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @staticmethod
    def _gram(f: Tensor) -> Tensor:
        b, c, h, w = f.shape
        f = f.reshape(b, c, h * w)
        return f @ f.transpose(1, 2) / (c * h * w)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """pred, target [N,3,H,W] in [0, 1]."""
        h, w = pred.shape[-2:]
        size = min(self.crop, h, w)
        top = int(torch.randint(0, h - size + 1, ()).item())
        left = int(torch.randint(0, w - size + 1, ()).item())
        x = torch.cat([pred, target])[..., top : top + size, left : left + size].float()
        x = (x - self.mean) / self.std
        loss = x.new_zeros(())
        layer_weight = dict(zip(GRAM_LAYERS, GRAM_WEIGHTS))
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in layer_weight:
                fp, ft = x.chunk(2)
                loss = loss + layer_weight[i] * F.mse_loss(self._gram(fp), self._gram(ft))
        return loss


class DifixLoss(nn.Module):
    """``l2 * MSE + lpips * LPIPS(net) (+ gram * Gram once step >= gram_warmup)``, view-weighted."""

    def __init__(
        self,
        l2: float = 1.0,
        lpips: float = 1.0,
        lpips_net: Literal["vgg", "alex"] = "vgg",
        gram: float = 0.0,
        gram_warmup: int = 2000,
        gram_crop: int = 400,
        ref_weight: float = 1.0,
    ):
        super().__init__()
        self.w_l2, self.w_lpips, self.w_gram = l2, lpips, gram
        self.gram_warmup = gram_warmup
        self.ref_weight = ref_weight
        self.lpips: Optional[nn.Module] = None
        if lpips > 0:
            from difix_ns.metrics.lpips import LPIPS

            self.lpips = LPIPS(lpips_net)
        self.gram: Optional[GramLoss] = GramLoss(gram_crop) if gram > 0 else None

    def forward(self, pred: Tensor, target: Tensor, step: int) -> dict[str, Tensor]:
        b, v = pred.shape[:2]
        weights = torch.full((v,), self.ref_weight, device=pred.device, dtype=torch.float32)
        weights[0] = 1.0
        weights = weights / weights.sum()
        p = pred.float().flatten(0, 1)
        t = target.float().flatten(0, 1)

        def per_view(x: Tensor) -> Tensor:  # [b*v] -> the view-weighted mean over the batch
            return (x.view(b, v).mean(0) * weights).sum()

        terms: dict[str, Tensor] = {}
        terms["l2"] = per_view((p - t).pow(2).flatten(1).mean(1))
        total = self.w_l2 * terms["l2"]
        if self.lpips is not None:
            terms["lpips"] = per_view(self.lpips((p + 1) / 2, (t + 1) / 2))
            total = total + self.w_lpips * terms["lpips"]
        if self.gram is not None and step >= self.gram_warmup:
            terms["gram"] = self.gram((p + 1) / 2, (t + 1) / 2)
            total = total + self.w_gram * terms["gram"]
        terms["loss"] = total
        return terms
