"""difix-fix / difix-enhance-video / difix-demo and the seed-compatible scripts, on a tiny saved Difix model.

The tiny model has random weights: these tests check plumbing (files, sizes, counts, errors), not quality.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from difix_ns.cli import enhance_video, fix_images
from difix_ns.io import video_info, write_video
from conftest import SHARED_DATA as DATA, FOX_IMAGES_4 as FOX

ROOT = Path(__file__).parents[1]
EXAMPLES = DATA / "difix_examples"
pytestmark = pytest.mark.skipif(not (EXAMPLES.is_dir() and FOX.is_dir()), reason=f"shared data not found at {DATA}")


@pytest.fixture(scope="module")
def tiny_ref(tmp_path_factory) -> Path:
    from difix_ns.testing import save_tiny_difix

    return save_tiny_difix(tmp_path_factory.mktemp("models") / "tiny_difix_ref", reference_mixing=True)


@pytest.fixture(scope="module")
def fox(tmp_path_factory) -> dict:
    """Small fox frames (96x160), three 'renders', three 'training images' and a 6-frame 24 fps mp4."""
    root = tmp_path_factory.mktemp("fox")
    files = sorted(FOX.glob("*.jpg"))
    frames = [np.array(Image.open(p).convert("RGB").resize((96, 160))) for p in files[:6]]
    (root / "renders").mkdir()
    (root / "train").mkdir()
    for i, f in enumerate(frames[:3]):
        Image.fromarray(f).save(root / "renders" / f"{i:04d}.png")
    for p in files[20:23]:
        Image.open(p).convert("RGB").resize((96, 160)).save(root / "train" / (p.stem + ".png"))
    write_video(root / "render.mp4", frames, fps=24)
    return {"root": root, "renders": root / "renders", "train": root / "train", "video": root / "render.mp4"}


def run_cli(main, args, capsys) -> tuple:
    with pytest.raises(SystemExit) as info:
        main(args)
        raise SystemExit(0)
    err = capsys.readouterr().err
    return info.value.code or 0, " ".join(err.split())  # rich may wrap; compare on collapsed whitespace


def test_seed_inference_command_runs_as_written(tiny_ref, tmp_path):
    out = tmp_path / "final_enhanced"
    cmd = [sys.executable, "scripts/inference_difix.py", "--model_name", str(tiny_ref),
           "--input_image", str(EXAMPLES / "example_input.png"), "--ref_image", str(EXAMPLES / "example_ref.png"),
           "--prompt", "remove degradation", "--output_dir", str(out), "--timestep", "199"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in out.iterdir()] == ["example_input.png"]
    assert Image.open(out / "example_input.png").size == (960, 540)


def test_folder_with_reference_folder_and_video(tiny_ref, fox, tmp_path, capsys):
    out = tmp_path / "fixed"
    code, err = run_cli(fix_images.main, ["--input_image", str(fox["renders"]), "--ref_image", str(fox["train"]),
                                          "--output_dir", str(out), "--model_name", str(tiny_ref), "--video",
                                          "--batch_size", "2"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["0000.png", "0001.png", "0002.png", "output.mp4"]
    assert Image.open(out / "0001.png").size == (96, 160)
    fps, count, size = video_info(out / "output.mp4")
    assert (fps, count, size) == (30.0, 3, (96, 160))
    # References matter: a different reference set changes the output of a reference-mixing model.
    out2 = tmp_path / "fixed_similar"
    code, err = run_cli(fix_images.main, ["--input_image", str(fox["renders"] / "0001.png"), "--ref_image",
                                          str(fox["renders"] / "0002.png"), "--output_dir", str(out2),
                                          "--model_name", str(tiny_ref)], capsys)
    assert code == 0, err
    assert not np.array_equal(np.array(Image.open(out / "0001.png")), np.array(Image.open(out2 / "0001.png")))


def test_seed_difix3d_plus_command_with_fewer_references_than_renders(tiny_ref, fox, tmp_path, capsys):
    # The Difix3D guide's command pairs a folder of trajectory renders with the (fewer) training photos, as written.
    train2 = tmp_path / "train2"
    train2.mkdir()
    for p in sorted(fox["train"].iterdir())[:2]:
        shutil.copy(p, train2 / p.name)
    seed_flags = ["--model_name", str(tiny_ref), "--input_image", str(fox["renders"]), "--ref_image", str(train2),
                  "--prompt", "remove degradation", "--timestep", "199"]
    code, err = run_cli(fix_images.main, seed_flags + ["--output_dir", str(tmp_path / "auto")], capsys)
    assert code == 0, err
    assert "2 images for 3 inputs" in err and "most similar reference" in err
    code, err = run_cli(fix_images.main, seed_flags + ["--output_dir", str(tmp_path / "similar"),
                                                       "--ref_match", "similar"], capsys)
    assert code == 0, err
    for name in ("0000.png", "0001.png", "0002.png"):
        auto = np.array(Image.open(tmp_path / "auto" / name))
        assert auto.shape == (160, 96, 3) and np.array_equal(auto, np.array(Image.open(tmp_path / "similar" / name)))


def test_plain_model_ignores_a_reference_folder(fox, tmp_path, capsys):
    from difix_ns.testing import save_tiny_difix

    plain = save_tiny_difix(tmp_path / "tiny_difix", reference_mixing=False)
    out = tmp_path / "o"
    code, err = run_cli(fix_images.main, ["--input_image", str(fox["renders"] / "0000.png"), "--ref_image",
                                          str(fox["train"]), "--ref_match", "similar", "--output_dir", str(out),
                                          "--model_name", str(plain)], capsys)
    assert code == 0, err
    assert "no reference mixing" in err and sorted(p.name for p in out.iterdir()) == ["0000.png"]


def test_console_scripts_are_installed_with_the_seed_flags():
    bindir = Path(sys.executable).parent
    for name, flags in [("difix-fix", ["--input_image", "--ref_image", "--output_dir", "--model_name", "--prompt",
                                       "--timestep", "--video"]),
                        ("difix-enhance-video", ["--input", "--output", "--use-ref", "--ref-images"]),
                        ("difix-demo", ["--output_dir", "--model_name"])]:
        script = bindir / name
        if not script.exists():
            pytest.skip(f"{script} not found: the package is not pip-installed in this interpreter's environment")
        proc = subprocess.run([str(script), "--help"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert all(flag in proc.stdout for flag in flags), proc.stdout


def test_processing_size_and_similar_matching(tiny_ref, fox, tmp_path, capsys):
    refs = fox["root"] / "two_refs"
    refs.mkdir()
    for name in ("0000.png", "0002.png"):
        shutil.copy(fox["train"] / sorted(os.listdir(fox["train"]))[0], refs / name)
    code, err = run_cli(fix_images.main, ["--input_image", str(fox["renders"]), "--ref_image", str(refs),
                                          "--ref_match", "similar", "--output_dir", str(tmp_path / "o"),
                                          "--model_name", str(tiny_ref), "--height", "0", "--width", "64"], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "o" / "0002.png").size == (96, 160)  # processed at 64x107, written back
    code, err = run_cli(fix_images.main, ["--input_image", str(fox["renders"]), "--output_dir", str(tmp_path / "n"),
                                          "--model_name", str(tiny_ref), "--height", "64"], capsys)
    _assert_failed_cleanly(code, err, "38x64 processing size", tmp_path / "n")


def _assert_failed_cleanly(code, err, needle, out: Path):
    assert code == 2, err
    assert err.startswith("error:") and needle in err, err
    assert not out.exists(), f"partial output left in {out}"


def test_bad_inputs_fail_cleanly(tiny_ref, fox, tmp_path, capsys):
    out = tmp_path / "never"
    base = ["--output_dir", str(out), "--model_name", str(tiny_ref)]
    (tmp_path / "text.png").write_text("hello")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "tiny.png")
    cases = [
        (["--input_image", str(tmp_path / "missing.png")], "missing.png"),
        (["--input_image", str(tmp_path / "text.png")], "not an image"),
        (["--input_image", str(tmp_path / "tiny.png")], "smaller than the 64 px minimum"),
        (["--input_image", str(fox["renders"]), "--ref_image", str(EXAMPLES), "--ref_match", "order"],
         "has 2 images but --input_image has 3"),
        (["--input_image", str(fox["renders"]), "--ref_image", str(tmp_path / "text.png")], "text.png"),
    ]
    for extra, needle in cases:
        code, err = run_cli(fix_images.main, extra + base, capsys)
        _assert_failed_cleanly(code, err, needle, out)


def test_corrupt_input_mid_run_leaves_nothing(tiny_ref, fox, tmp_path, capsys):
    inputs = tmp_path / "in"
    shutil.copytree(fox["renders"], inputs)
    data = (inputs / "0002.png").read_bytes()
    (inputs / "0002.png").write_bytes(data[: len(data) // 2])  # header fine, pixels truncated
    out = tmp_path / "out"
    out.mkdir()
    (out / "0000.png").write_text("pre-existing file")
    code, err = run_cli(fix_images.main, ["--input_image", str(inputs), "--output_dir", str(out), "--model_name",
                                          str(tiny_ref), "--batch_size", "1", "--overwrite"], capsys)
    assert code == 2 and "corrupt or truncated" in err and "0002.png" in err, err
    assert [p.name for p in out.iterdir()] == ["0000.png"]
    assert (out / "0000.png").read_text() == "pre-existing file"


def test_bad_models_fail_cleanly(tiny_ref, fox, tmp_path, capsys, monkeypatch):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken_model"
    shutil.copytree(tiny_ref, broken)
    weights = broken / "vae" / "diffusion_pytorch_model.safetensors"
    sd = load_file(weights)
    key = next(k for k in sorted(sd) if "skip_conv_1" in k)
    sd[key.replace("skip_conv_1", "skip_conv_renamed")] = sd.pop(key)
    save_file(sd, weights)
    out = tmp_path / "never"
    args = ["--input_image", str(fox["renders"]), "--output_dir", str(out)]
    code, err = run_cli(fix_images.main, args + ["--model_name", str(broken)], capsys)
    _assert_failed_cleanly(code, err, "skip_conv", out)
    assert str(broken) in err
    code, err = run_cli(fix_images.main, args + ["--model_name", str(tmp_path / "no_such_model")], capsys)
    _assert_failed_cleanly(code, err, "no_such_model", out)
    # An unreachable hub id: offline mode, and an id no cache can hold, so the test never reaches a hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, err = run_cli(fix_images.main, args + ["--model_name", "difix-ns-tests/no-such-model"], capsys)
    _assert_failed_cleanly(code, err, "--model_name difix-ns-tests/no-such-model", out)
    assert "HF_HUB_OFFLINE" in err
    never = tmp_path / "never_video" / "o.mp4"
    code, err = run_cli(enhance_video.main, ["--input", str(fox["video"]), "--output", str(never), "--model_name",
                                             "difix-ns-tests/no-such-model"], capsys)
    _assert_failed_cleanly(code, err, "difix-ns-tests/no-such-model", never.parent)


def test_enhance_video_keeps_frames_and_fps(tiny_ref, fox, tmp_path, capsys):
    out = tmp_path / "v" / "enhanced.mp4"
    code, err = run_cli(enhance_video.main, ["--input", str(fox["video"]), "--output", str(out), "--use-ref",
                                             "--ref-images", str(fox["train"]), "--model_name", str(tiny_ref),
                                             "--batch_size", "4"], capsys)
    assert code == 0, err
    assert video_info(out) == video_info(fox["video"]) == (24.0, 6, (96, 160))
    assert sorted(p.name for p in out.parent.iterdir()) == ["enhanced.mp4"]


def test_enhance_video_seed_script_and_errors(tiny_ref, fox, tmp_path, capsys):
    out = tmp_path / "enh.mp4"
    proc = subprocess.run([sys.executable, "scripts/enhance_existing_video.py", "--input", str(fox["video"]),
                           "--output", str(out), "--use-ref", "--ref-images", str(fox["train"]),
                           "--model_name", str(tiny_ref)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert video_info(out)[:2] == (24.0, 6)
    (tmp_path / "fake.mp4").write_text("not a video")
    never = tmp_path / "never" / "o.mp4"
    for extra, needle in [
        (["--input", str(tmp_path / "fake.mp4")], "fake.mp4"),
        (["--input", str(tmp_path / "missing.mp4")], "missing.mp4"),
        (["--input", str(fox["video"]), "--use-ref"], "--use-ref needs --ref-images"),
        (["--input", str(fox["video"]), "--use-ref", "--ref-images", str(tmp_path / "nothing")], "nothing"),
    ]:
        code, err = run_cli(enhance_video.main, extra + ["--output", str(never), "--model_name", str(tiny_ref)],
                            capsys)
        _assert_failed_cleanly(code, err, needle, never.parent)


def test_reference_choice_is_most_similar_downsampled_image(fox):
    from difix_ns.cli.common import most_similar, thumbnail
    from difix_ns.io import load_image_tensor

    refs = [load_image_tensor(p) for p in sorted(fox["train"].iterdir())]
    keys = torch.stack([thumbnail(r) for r in refs])
    # A slightly brighter, noisier copy of reference k still picks reference k.
    g = torch.Generator().manual_seed(0)
    queries = torch.stack([thumbnail((r * 1.1 + 0.03 * torch.randn(r.shape, generator=g)).clamp(0, 1)) for r in refs])
    assert most_similar(queries, keys) == list(range(len(refs)))
    assert most_similar(queries.flip(0), keys) == list(range(len(refs)))[::-1]
