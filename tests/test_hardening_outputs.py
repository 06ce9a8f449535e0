"""Seed API float outputs are not quantized; non-finite model outputs are an error, not a black image.

Tiny random-weight model (plumbing, not quality).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from difix_ns import DifixPipeline
from difix_ns.pipeline_difix import NonFiniteOutputError
from difix_ns.testing import save_tiny_difix


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    path = save_tiny_difix(tmp_path_factory.mktemp("tiny") / "ref", True)
    return DifixPipeline.from_pretrained(str(path)).to("cpu")


def _image(width: int, height: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_np_and_pt_outputs_are_float32_unquantized(pipe):
    image = _image(72, 64)
    out_pt = pipe(image=image, output_type="pt").images
    out_np = DifixPipeline._format(list(out_pt), "np")[0]  # "np" is the same float tensor as [H,W,3]
    out_pil = pipe(image=image, output_type="pil").images[0]
    assert out_np.dtype == np.float32 and out_np.shape == (64, 72, 3)
    assert out_pt.dtype == torch.float32 and tuple(out_pt.shape) == (1, 3, 64, 72)
    assert 0 <= out_np.min() and out_np.max() <= 1
    np.testing.assert_array_equal(out_np, out_pt[0].permute(1, 2, 0).numpy())
    scaled = out_np * 255
    assert np.abs(scaled - np.round(scaled)).max() > 1e-3  # not on the 1/255 grid
    assert isinstance(out_pil, Image.Image) and out_pil.size == (72, 64)  # "pil" unchanged
    assert np.abs(np.asarray(out_pil, np.float32) - scaled).max() <= 1.0 + 1e-3


def test_nan_weights_raise_instead_of_a_black_image(pipe):
    image = _image(64, 64)
    saved = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    try:
        with torch.no_grad():
            for p in pipe.unet.parameters():
                p.fill_(float("nan"))
        with pytest.raises(NonFiniteOutputError, match="non-finite"):
            pipe(image=image)
    finally:
        pipe.unet.load_state_dict(saved)
