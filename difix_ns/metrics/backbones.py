"""ImageNet AlexNet / VGG16 ``features`` stacks in torchvision's exact module layout.

Built here (instead of through ``torchvision.models``) so the metrics also work where torchvision cannot be
imported (CPU-only torch wheels); the index of every layer matches torchvision, so a torchvision
``features.*`` state dict loads strictly.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

from torch import nn

# Conv layer index inside ``features`` -> (in_channels, out_channels, kernel, stride, padding).
ALEXNET_CONVS: Dict[int, Tuple[int, int, int, int, int]] = {
    0: (3, 64, 11, 4, 2),
    3: (64, 192, 5, 1, 2),
    6: (192, 384, 3, 1, 1),
    8: (384, 256, 3, 1, 1),
    10: (256, 256, 3, 1, 1),
}
# VGG16 ("configuration D"): channel widths, "M" = 2x2 max-pool.
_VGG16_PLAN: List[object] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def alexnet_features() -> nn.Sequential:
    """``torchvision.models.alexnet().features`` (13 modules, conv indices 0, 3, 6, 8, 10)."""
    layers: List[nn.Module] = []
    for idx in range(13):
        if idx in ALEXNET_CONVS:
            cin, cout, k, s, p = ALEXNET_CONVS[idx]
            layers.append(nn.Conv2d(cin, cout, k, stride=s, padding=p))
        elif idx in (2, 5, 12):
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
        else:
            layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


def vgg16_features() -> nn.Sequential:
    """``torchvision.models.vgg16().features`` (31 modules, 13 convs)."""
    layers: List[nn.Module] = []
    cin = 3
    for item in _VGG16_PLAN:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(cin, int(item), 3, padding=1), nn.ReLU(inplace=False)]
            cin = int(item)
    return nn.Sequential(*layers)


def conv_indices(arch: str) -> List[int]:
    """Indices of the conv layers inside ``features`` (the keys ``features.{i}.weight`` / ``.bias``)."""
    net = build_features(arch)
    return [i for i, m in enumerate(net) if isinstance(m, nn.Conv2d)]


def build_features(arch: str) -> nn.Sequential:
    if arch == "alexnet":
        return alexnet_features()
    if arch == "vgg16":
        return vgg16_features()
    raise ValueError(f"unknown backbone {arch!r}; expected 'alexnet' or 'vgg16'")
