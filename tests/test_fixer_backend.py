"""NVIDIA Fixer backend: loading the nvidia/Fixer layout, parity with NVIDIA's inference code, and the tools.

``tests/fixtures/fixer_parity`` holds what NVIDIA's own inference (nv-tlabs/Fixer @ b39dfca with cosmos-predict2
1.0.9, transformer-engine/megatron replaced by plain-torch equivalents, "cuda" strings patched to "cpu", float32)
produced from the tiny seed-0 Fixer written by ``save_tiny_fixer``: the 576x1024 working-resolution output (every
8th pixel and 8x8 means) and an end-to-end PNG at the input size (see provenance.json). The tiny model has random
weights: these tests check numerics and plumbing, not quality.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from difix_ns.diffusion.images import pil_to_tensor
from difix_ns.fixers import cosmos_files as files
from difix_ns.fixers.cosmos_fixer import CosmosFixerPipeline
from difix_ns.fixers.cosmos_testing import parity_image, save_tiny_fixer
from test_difix3d_train import fox_small  # noqa: F401  (the shared six-frame fox fixture)
from conftest import FOX

FIXTURES = Path(__file__).parent / "fixtures" / "fixer_parity"
# float32 here vs NVIDIA's float32 run differ by ~1e-6; a wrong timestep or RoPE scaling moves outputs by >= 5e-4.
PARITY_TOL = 2e-5
DETECT = 5e-4


@pytest.fixture(scope="module")
def tiny_fixer(tmp_path_factory) -> Path:
    return save_tiny_fixer(tmp_path_factory.mktemp("fixer") / "tiny_fixer", seed=0)


@pytest.fixture(scope="module")
def working_output(tiny_fixer):
    """Our float32 output at the working resolution for the parity image, and the pipeline."""
    pipe = CosmosFixerPipeline.from_pretrained(tiny_fixer)
    x = parity_image(576, 1024) * 2 - 1
    return pipe, x, pipe.restore(x)


def _fingerprint(obj) -> float:
    if isinstance(obj, torch.Tensor):
        return float(obj.double().abs().sum()) if obj.is_floating_point() else 0.0
    if isinstance(obj, dict):
        return sum(_fingerprint(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_fingerprint(v) for v in obj)
    return 0.0


def _distance(y: torch.Tensor) -> float:
    """Largest difference to NVIDIA's output over the stored samples (strided pixels and 8x8 means)."""
    ref = np.load(FIXTURES / "nvidia_working_t250.npz")
    strided = (y[..., ::8, ::8] - torch.from_numpy(ref["strided"])).abs().max()
    pooled = (F.avg_pool2d(y, 8) - torch.from_numpy(ref["pooled"])).abs().max()
    return float(max(strided, pooled))


def test_tiny_files_are_the_ones_the_fixtures_were_made_from(tiny_fixer):
    provenance = json.loads((FIXTURES / "provenance.json").read_text())
    for name, value in provenance["tiny_fixer_seed0_fingerprint"].items():
        got = _fingerprint(files.safe_load(tiny_fixer / name))
        assert got == pytest.approx(value, rel=1e-9), f"{name}: tiny-model generation changed; regenerate fixtures"


def test_matches_nvidia_at_working_resolution_and_detects_wrong_timestep_or_rope(working_output):
    pipe, x, y = working_output
    assert y.shape == (1, 3, 576, 1024) and y.dtype == torch.float32
    assert _distance(y) < PARITY_TOL
    assert _distance(pipe.restore(x, timestep=200)) >= DETECT  # Difix's 199-ish instead of Fixer's 250
    rope = pipe.transformer.rope
    assert rope.rope_scale == (1.0, 4.0, 4.0)
    rope.rope_scale = (1.0, 3.0, 3.0)  # the 2B Video2World scaling instead of the 0.6B text2image one
    try:
        assert _distance(pipe.restore(x)) >= DETECT
    finally:
        rope.rope_scale = (1.0, 4.0, 4.0)


def test_difix_fixer_end_to_end_at_input_size_matches_nvidia(tiny_fixer, caplog):
    from difix_ns.fixer import DifixFixer
    from difix_ns.fixers import ImageFixer

    fixer = DifixFixer(model_name=str(tiny_fixer), device="cpu")
    assert isinstance(fixer, ImageFixer) and fixer.uses_references is False
    image = pil_to_tensor(Image.open(FIXTURES / "e2e_input.png"))[None]  # 96x160
    refs = torch.rand(1, 2, 3, 96, 160)
    with caplog.at_level(logging.WARNING):
        out = fixer.fix(image, refs)
    assert sum("references are ignored" in r.getMessage() for r in caplog.records) == 1
    assert out.shape == image.shape and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    # NVIDIA writes uint8 via ToPILImage (truncation) after the same resizes (PIL bilinear there).
    ours = torch.floor(out[0] * 255)
    theirs = pil_to_tensor(Image.open(FIXTURES / "nvidia_e2e_t250.png")) * 255
    diff = (ours - theirs).abs()
    assert diff.max() <= 1.0 + 1e-4 and diff.mean() < 0.2, (float(diff.max()), float(diff.mean()))


def _copy(tiny_fixer: Path, dst: Path) -> Path:
    for name in files.FIXER_FILES:
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        (dst / name).write_bytes((tiny_fixer / name).read_bytes())
    return dst


def test_renamed_or_missing_keys_fail_naming_them(tiny_fixer, tmp_path):
    bad = _copy(tiny_fixer, tmp_path / "renamed")
    base = torch.load(bad / files.DIT_FILE, weights_only=True)
    base["net.blocks.1.self_attn.q_proj_renamed.weight"] = base.pop("net.blocks.1.self_attn.q_proj.weight")
    torch.save(base, bad / files.DIT_FILE)
    with pytest.raises(files.FixerLoadError, match="net.blocks.1.self_attn.q_proj_renamed.weight"):
        CosmosFixerPipeline.from_pretrained(bad)

    gone = _copy(tiny_fixer, tmp_path / "missing")
    base = torch.load(gone / files.DIT_FILE, weights_only=True)
    overlay = torch.load(gone / files.OVERLAY_FILE, weights_only=True)
    del base["net.blocks.0.mlp.layer2.weight"], overlay["state_dict_unet"]["dit.blocks.0.mlp.layer2.weight"]
    torch.save(base, gone / files.DIT_FILE)
    torch.save(overlay, gone / files.OVERLAY_FILE)
    with pytest.raises(files.FixerLoadError, match=r"missing key.*net\.blocks\.0\.mlp\.layer2\.weight"):
        CosmosFixerPipeline.from_pretrained(gone)

    stray = _copy(tiny_fixer, tmp_path / "stray")
    overlay = torch.load(stray / files.OVERLAY_FILE, weights_only=True)
    overlay["state_dict_vae"]["encoder.extra_conv.weight"] = torch.zeros(1)
    torch.save(overlay, stray / files.OVERLAY_FILE)
    with pytest.raises(files.FixerLoadError, match=r"tokenizer encoder.*unexpected key.*extra_conv\.weight"):
        CosmosFixerPipeline.from_pretrained(stray)


def test_unsafe_pickle_is_refused_by_the_safe_unpickler(tiny_fixer, tmp_path):
    bad = _copy(tiny_fixer, tmp_path / "unsafe")
    torch.save({"encoder": b"", "decoder": b"", "mean_std": Path("x")}, bad / files.TOKENIZER_FILE)
    with pytest.raises(files.FixerLoadError, match=r"tokenizer_fast\.pth.*weights_only=True"):
        CosmosFixerPipeline.from_pretrained(bad)


def test_layout_detection_is_by_files(tiny_fixer, tmp_path, monkeypatch):
    from difix_ns.diffusion.hub import ModelResolutionError

    assert files.locate_fixer_model(str(tiny_fixer)) == tiny_fixer
    partial = tmp_path / "partial"
    _copy(tiny_fixer, partial)
    (partial / files.OVERLAY_FILE).unlink()
    assert files.locate_fixer_model(str(partial)) is None  # then it is treated as a Difix folder
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelResolutionError, match="nvidia/Fixer") as err:
        files.locate_fixer_model("nvidia/Fixer")
    assert "HF_HUB_OFFLINE" in str(err.value)


def test_make_tiny_model_kind_fixer(tmp_path, monkeypatch, capsys):
    from difix_ns.cli import make_tiny_model

    monkeypatch.setattr("sys.argv", ["difix-make-tiny-model", str(tmp_path / "tiny"), "--kind", "fixer"])
    make_tiny_model.entrypoint()
    assert "Fixer" in capsys.readouterr().out and files.is_fixer_dir(tmp_path / "tiny")


def test_difix_fix_cli_with_a_fixer_folder(tiny_fixer, tmp_path, capsys):
    from difix_ns.cli import fix_images

    (tmp_path / "in").mkdir()
    Image.open(FIXTURES / "e2e_input.png").save(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        fix_images.main(["--input_image", str(tmp_path / "in"), "--ref_image", str(tmp_path / "in"),
                         "--output_dir", str(out), "--model_name", str(tiny_fixer)])
        raise SystemExit(0)
    err = " ".join(capsys.readouterr().err.split())
    assert (info.value.code or 0) == 0, err
    assert "no reference mixing" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.png"] and Image.open(out / "a.png").size == (160, 96)
    expected = np.array(Image.open(FIXTURES / "nvidia_e2e_t250.png"), dtype=np.int16)
    assert np.abs(np.array(Image.open(out / "a.png"), dtype=np.int16) - expected).max() <= 2


@pytest.mark.slow
@pytest.mark.skipif(not (FOX / "transforms.json").exists(), reason=f"fox data not found at {FOX}")
def test_difix3d_splatfacto_fix_round_with_the_tiny_fixer(tmp_path, tiny_fixer, fox_small):  # noqa: F811 (fixture)
    from test_difix3d_train import COMMON, DATA_ARGS, SPLAT, ns_train  # the shared ns-train pattern

    out = tmp_path / "out"
    trainer = ns_train(["difix3d-splatfacto", "--data", str(fox_small), "--output-dir", str(out),
                        "--experiment-name", "fox", "--timestamp", "fixer", "--pipeline.fixer.model-name",
                        str(tiny_fixer), "--max-num-iterations", "3", "--pipeline.fix-steps", "2", *COMMON, *SPLAT,
                        *DATA_ARGS])
    pipeline = trainer.pipeline
    assert pipeline.config.fixer.model_name == str(tiny_fixer)
    fixer = pipeline._lazy_fixer.fixer
    assert type(fixer.pipeline).__name__ == "CosmosFixerPipeline" and not fixer.uses_references
    assert pipeline.completed_rounds == [2] and len(pipeline.datamanager.novel_pool) == 2
    round_dir = out / "fox" / "difix3d-splatfacto" / "fixer" / "difix_rounds" / f"step_{2:09d}"
    fixed = sorted((round_dir / "fixed").glob("*.png"))
    renders = [np.array(Image.open(p)) for p in sorted((round_dir / "render").glob("*.png"))]
    assert len(fixed) == 2 and np.array(Image.open(fixed[0])).shape == renders[0].shape
