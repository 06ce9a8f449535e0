"""Image pre/post-processing shared by every single-step diffusion restorer (Difix, NiFi).

SD-style VAEs downsample by 8, so inputs are resized to the largest multiple of 8 that fits (as diffusers'
``VaeImageProcessor`` does), processed, and resized back to the caller's size. PIL inputs use LANCZOS (what the
upstream pipeline and examples use); tensors use antialiased bilinear interpolation so the path stays on the GPU.
PIL <-> tensor conversion (``to_rgb``, ``pil_to_tensor``, ``tensor_to_pil``) lives in ``difix_ns.io`` and is
re-exported here for the pipeline code that imports it from this module.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from difix_ns.io import pil_to_tensor, tensor_to_pil, to_rgb  # the one home of PIL <-> tensor conversion

__all__ = ["floor_to_multiple", "check_min_size", "to_rgb", "pil_to_tensor", "tensor_to_pil", "resize_pil",
           "resize_tensor", "prepare_views_pil", "restore_size_pil", "MIN_IMAGE_SIDE", "VAE_MULTIPLE"]

MIN_IMAGE_SIDE = 64
VAE_MULTIPLE = 8


def floor_to_multiple(height: int, width: int, multiple: int = VAE_MULTIPLE) -> tuple[int, int]:
    """Largest (H, W) <= the input whose sides are multiples of ``multiple``."""
    return (height // multiple) * multiple, (width // multiple) * multiple


def check_min_size(height: int, width: int, what: str = "image", min_side: int = MIN_IMAGE_SIDE) -> None:
    if height < min_side or width < min_side:
        raise ValueError(f"{what} is {width}x{height} pixels; Difix needs at least {min_side} pixels per side.")


def resize_pil(image: Image.Image, size_hw: tuple[int, int]) -> Image.Image:
    height, width = size_hw
    if image.size == (width, height):
        return image
    return image.resize((width, height), Image.LANCZOS)


def resize_tensor(images: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of [..., C, H, W]; a no-op when the size already matches."""
    if tuple(images.shape[-2:]) == tuple(size_hw):
        return images
    lead = images.shape[:-3]
    flat = images.reshape(-1, *images.shape[-3:])
    out = F.interpolate(flat.float(), size=size_hw, mode="bilinear", align_corners=False, antialias=True)
    return out.to(images.dtype).reshape(*lead, images.shape[-3], *size_hw)


def prepare_views_pil(
    image: Image.Image, refs: Sequence[Image.Image] = ()
) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, int]]:
    """One render + its references -> ([3,h8,w8], [V,3,h8,w8] | None, original (H, W)), all in [0, 1].

    References are resized to the *render's* floored size: upstream concatenates the two in one batch, so a
    reference of a slightly different size (e.g. 540 vs 539 rows) would otherwise break the batch.
    """
    image = to_rgb(image)
    width, height = image.size
    check_min_size(height, width)
    size8 = floor_to_multiple(height, width)
    x = pil_to_tensor(resize_pil(image, size8))
    if not refs:
        return x, None, (height, width)
    r = torch.stack([pil_to_tensor(resize_pil(to_rgb(ref), size8)) for ref in refs])
    return x, r, (height, width)


def restore_size_pil(image: torch.Tensor, size_hw: tuple[int, int]) -> Image.Image:
    """[3, h8, w8] in [0, 1] -> PIL at the caller's original size (LANCZOS)."""
    return resize_pil(tensor_to_pil(image), size_hw)
