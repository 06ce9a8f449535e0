"""The seed API, reference views and the batched fixer on tiny random-weight models (CPU).

Random weights prove plumbing (sizes, batching, reference conditioning, determinism), not restoration quality.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from difix_ns import DifixFixer, DifixFixerConfig, DifixPipeline
from difix_ns.testing import save_tiny_difix


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("difix_tiny_pipe")
    return {"ref": save_tiny_difix(root / "ref", True), "plain": save_tiny_difix(root / "plain", False)}


@pytest.fixture(scope="module")
def ref_pipe(tiny_dirs):
    return DifixPipeline.from_pretrained(str(tiny_dirs["ref"]), trust_remote_code=True).to("cpu")


def _noise_image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _seed_call(pipe, image, ref=None):
    return pipe(
        prompt="remove degradation",
        image=image,
        ref_image=ref,
        num_inference_steps=1,
        timesteps=[199],
        guidance_scale=0.0,
    ).images[0]


def test_seed_api_odd_size_with_and_without_reference(ref_pipe):
    image = _noise_image(963, 541, 0)
    ref = _noise_image(960, 540, 1)  # a slightly different size: resized to the render's size
    with_ref = _seed_call(ref_pipe, image, ref)
    without = _seed_call(ref_pipe, image)
    assert isinstance(with_ref, Image.Image) and with_ref.size == (963, 541) and with_ref.mode == "RGB"
    assert without.size == (963, 541)
    assert np.abs(np.asarray(with_ref, float) - np.asarray(without, float)).mean() > 0.01


def test_seed_api_on_the_plain_difix_layout(tiny_dirs):
    # The seed guide's first form: nvidia/difix (no reference mixing), no ref_image. A ref passed anyway is ignored.
    pipe = DifixPipeline.from_pretrained(str(tiny_dirs["plain"]), trust_remote_code=True).to("cpu")
    image = _noise_image(131, 77, 20)
    out = _seed_call(pipe, image)
    assert out.size == (131, 77) and out.mode == "RGB"
    assert np.array_equal(np.asarray(out), np.asarray(_seed_call(pipe, image, _noise_image(131, 77, 21))))


def test_reference_changes_output_and_repeats_are_bit_identical(ref_pipe):
    image, ref_a, ref_b = _noise_image(96, 72, 2), _noise_image(96, 72, 3), _noise_image(96, 72, 4)
    first = np.asarray(_seed_call(ref_pipe, image, ref_a))
    again = np.asarray(_seed_call(ref_pipe, image, ref_a))
    other = np.asarray(_seed_call(ref_pipe, image, ref_b))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    r = torch.rand(1, 1, 3, 64, 64) * 2 - 1
    assert torch.equal(ref_pipe.restore(x, r), ref_pipe.restore(x.clone(), r.clone()))


@pytest.mark.parametrize("num_refs", [0, 1, 3])
def test_any_number_of_reference_views(ref_pipe, num_refs):
    torch.manual_seed(num_refs)
    x = torch.rand(2, 3, 64, 80) * 2 - 1
    refs = torch.rand(2, num_refs, 3, 64, 80) * 2 - 1
    out = ref_pipe.restore(x, refs)
    assert out.shape == (2, 3, 64, 80) and torch.isfinite(out).all()
    assert out.min() >= -1 and out.max() <= 1
    if num_refs:
        assert not torch.allclose(out, ref_pipe.restore(x, None))
    # PIL path: a list of V references for one image.
    pil_refs = [_noise_image(80, 64, 10 + i) for i in range(num_refs)]
    assert _seed_call(ref_pipe, _noise_image(80, 64, 9), pil_refs or None).size == (80, 64)


def test_batch_layout_matches_single_sample_runs(ref_pipe):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    refs = torch.rand(2, 2, 3, 64, 64) * 2 - 1
    batched = ref_pipe.restore(x, refs)
    single = torch.cat([ref_pipe.restore(x[i : i + 1], refs[i : i + 1]) for i in range(2)])
    assert torch.allclose(batched, single, atol=1e-4)


def test_list_of_images_keeps_each_size(ref_pipe):
    images = [_noise_image(100, 70, 5), _noise_image(64, 64, 6), _noise_image(100, 70, 7)]
    refs = [_noise_image(100, 70, 8), _noise_image(64, 64, 9), [_noise_image(90, 60, 10)]]
    out = ref_pipe(image=images, ref_image=refs, num_inference_steps=1, timesteps=[199], guidance_scale=0.0).images
    assert [o.size for o in out] == [(100, 70), (64, 64), (100, 70)]
    alone = _seed_call(ref_pipe, images[2], refs[2][0])
    assert np.abs(np.asarray(alone, float) - np.asarray(out[2], float)).max() <= 1


def test_rgba_and_grayscale_inputs_are_converted(ref_pipe):
    rgba = _noise_image(72, 64, 11).convert("RGBA")
    gray = _noise_image(72, 64, 12).convert("L")
    out = _seed_call(ref_pipe, rgba, gray)
    assert out.mode == "RGB" and out.size == (72, 64)


def test_fixer_wraps_a_built_pipeline(tiny_dirs, ref_pipe):
    fixer = DifixFixer.from_pipeline(ref_pipe, model_name=str(tiny_dirs["ref"]))
    images = torch.rand(1, 3, 64, 64)
    expected = (ref_pipe.restore(images * 2 - 1) + 1) / 2
    assert torch.allclose(fixer.fix(images), expected.clamp(0, 1), atol=1e-6)


def test_bad_inputs_give_clear_errors(ref_pipe):
    with pytest.raises(ValueError, match="at least 64"):
        _seed_call(ref_pipe, _noise_image(50, 80, 0))
    with pytest.raises(ValueError, match="single-step"):
        ref_pipe(image=_noise_image(64, 64, 0), num_inference_steps=1, timesteps=[199, 99])
    with pytest.raises(ValueError, match="2 images but 1 ref_image"):
        ref_pipe(image=[_noise_image(64, 64, 0)] * 2, ref_image=[_noise_image(64, 64, 1)])
    with pytest.raises(ValueError, match="classifier-free guidance"):
        ref_pipe(image=_noise_image(64, 64, 0), guidance_scale=7.5)


def test_fixer_batched_tensor_api(tiny_dirs):
    fixer = DifixFixer(DifixFixerConfig(model_name=str(tiny_dirs["ref"]), batch_size=2))
    assert fixer.uses_references and fixer.dtype == torch.float32  # CPU always runs float32
    torch.manual_seed(0)
    images, refs = torch.rand(3, 3, 67, 90), torch.rand(3, 2, 3, 70, 90)
    out = fixer.fix(images, refs)
    assert out.shape == images.shape and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    one_by_one = torch.cat([fixer.fix(images[i : i + 1], refs[i : i + 1]) for i in range(3)])
    assert torch.allclose(out, one_by_one, atol=1e-4)
    assert not torch.allclose(out, fixer.fix(images))
    with pytest.raises(ValueError, match="counts must match"):
        fixer.fix(images, refs[:2])
    with pytest.raises(ValueError, match="at least 64"):
        fixer.fix(torch.rand(1, 3, 32, 90))
    with pytest.raises(TypeError, match="unknown DifixFixer option"):
        DifixFixer(model_nme="x")


def test_plain_model_ignores_references_with_one_warning(tiny_dirs, caplog):
    fixer = DifixFixer(model_name=str(tiny_dirs["plain"]))
    images, refs = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 3, 64, 64)
    with caplog.at_level(logging.WARNING):
        with_refs = fixer.fix(images, refs)
        fixer.fix(images, refs)
    assert not fixer.uses_references
    assert torch.equal(with_refs, fixer.fix(images))
    assert sum("no reference mixing" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize(
    "keyword",
    [{"dtype": torch.bfloat16}, {"torch_dtype": torch.bfloat16}, {"dtype": "bfloat16"}],
    ids=["dtype", "torch_dtype", "dtype-name"],
)
def test_bfloat16_weights(tiny_dirs, keyword):
    # diffusers >= 0.40 spells the keyword ``dtype``; scripts written for older releases say ``torch_dtype``
    pipe = DifixPipeline.from_pretrained(tiny_dirs["ref"], **keyword)
    assert pipe.unet.dtype == torch.bfloat16 and pipe.vae.dtype == torch.bfloat16
    assert pipe.text_encoder.dtype == torch.bfloat16
    out = pipe.restore(torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 1, 3, 64, 64) * 2 - 1)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_dtype_keywords_that_disagree_or_name_no_dtype_are_refused(tiny_dirs):
    with pytest.raises(ValueError, match="disagree"):
        DifixPipeline.from_pretrained(tiny_dirs["ref"], dtype=torch.bfloat16, torch_dtype=torch.float32)
    with pytest.raises(ValueError, match="dtype 'bf16' is not a torch dtype name"):
        DifixPipeline.from_pretrained(tiny_dirs["ref"], dtype="bf16")
    both = DifixPipeline.from_pretrained(tiny_dirs["ref"], dtype=torch.bfloat16, torch_dtype="bfloat16")
    assert both.unet.dtype == torch.bfloat16


def test_prompt_embedding_is_cached(ref_pipe):
    calls = []
    original = ref_pipe.text_encoder.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    ref_pipe._prompt_cache.clear()
    ref_pipe.text_encoder.forward = counting
    try:
        for _ in range(3):
            ref_pipe.restore(torch.rand(1, 3, 64, 64) * 2 - 1)
    finally:
        del ref_pipe.text_encoder.forward
    assert len(calls) == 1


def test_fixer_module_is_import_light():
    code = (
        "import sys, difix_ns, difix_ns.fixer; "
        "heavy = [m for m in ('diffusers', 'transformers', 'peft') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_make_tiny_model_console_script(tmp_path, monkeypatch):
    from difix_ns.cli.make_tiny_model import entrypoint

    monkeypatch.setattr(sys, "argv", ["difix-make-tiny-model", str(tmp_path / "plain"), "--no-reference-mixing"])
    entrypoint()
    index = json.loads((tmp_path / "plain" / "model_index.json").read_text())
    assert index["unet"][0] == "diffusers"
    assert not DifixPipeline.from_pretrained(tmp_path / "plain").reference_mixing
