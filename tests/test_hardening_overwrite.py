"""Writing CLIs and scripts refuse to replace an existing output (message naming it) unless --overwrite is given.

The refusals come before any model is loaded or any work is done; a nonexistent model name proves the ordering.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script
import yaml
from PIL import Image

from difix_ns.cli import enhance_video, fix_images
from difix_ns.io import write_video


def _run(main, argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code, " ".join(capsys.readouterr().err.split())


@pytest.fixture()
def image(tmp_path) -> Path:
    path = tmp_path / "in" / "0000.png"
    path.parent.mkdir()
    Image.fromarray(np.full((64, 96, 3), 128, np.uint8)).save(path)
    return path


def test_difix_fix_refuses_existing_image_and_video(tmp_path, image, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "0000.png").write_bytes(b"old")
    code, err = _run(fix_images.main, ["--input_image", str(image.parent), "--output_dir", str(out),
                                       "--model_name", str(tmp_path / "no-model")], capsys)
    assert code == 2 and "0000.png already exists" in err and "--overwrite" in err
    (out / "0000.png").unlink()
    (out / "output.mp4").write_bytes(b"old")
    code, err = _run(fix_images.main, ["--input_image", str(image.parent), "--output_dir", str(out), "--video",
                                       "--model_name", str(tmp_path / "no-model")], capsys)
    assert code == 2 and "output.mp4 already exists" in err
    assert (out / "output.mp4").read_bytes() == b"old"
    # with --overwrite the check passes and the run gets as far as loading the (missing) model
    code, err = _run(fix_images.main, ["--input_image", str(image.parent), "--output_dir", str(out), "--video",
                                       "--overwrite", "--model_name", str(tmp_path / "no-model")], capsys)
    assert code == 2 and "no-model" in err and "already exists" not in err


def test_difix_enhance_video_refuses_existing_output(tmp_path, capsys):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    write_video(src, [np.zeros((64, 64, 3), np.uint8)] * 2, fps=4)
    dst.write_bytes(b"old")
    code, err = _run(enhance_video.main, ["--input", str(src), "--output", str(dst),
                                          "--model_name", str(tmp_path / "no-model")], capsys)
    assert code == 2 and "out.mp4 already exists" in err
    assert dst.read_bytes() == b"old"
    code, err = _run(enhance_video.main, ["--input", str(src), "--output", str(dst), "--overwrite",
                                          "--model_name", str(tmp_path / "no-model")], capsys)
    assert code == 2 and "no-model" in err


def test_difix_trajectory_refuses_existing_video_and_frames(tmp_path):
    from nerfstudio.configs.method_configs import all_methods

    from difix_ns.render.trajectory import TrajectoryRender

    config = tmp_path / "config.yml"
    config.write_text(yaml.dump(all_methods["splatfacto"]))
    video = tmp_path / "t.mp4"
    video.write_bytes(b"old")
    with pytest.raises(SystemExit, match="t.mp4 already exists.*--overwrite"):
        TrajectoryRender(load_config=config, output_path=video).main()
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "00000.png").write_bytes(b"old")
    with pytest.raises(SystemExit, match="00000.png already exists"):
        TrajectoryRender(load_config=config, output_path=None, frames_dir=frames).main()
    assert video.read_bytes() == b"old" and (frames / "00000.png").read_bytes() == b"old"


def test_nifi_export_refuses_then_overwrites(tmp_path):
    from nifi_ns.cli.export import ExportNix
    from nifi_ns.io import GaussianSplat, read_ply, write_ply

    src = write_ply(GaussianSplat.random(300, sh_degree=1, seed=0), tmp_path / "in.ply")
    out = tmp_path / "export"
    out.mkdir()
    (out / "report.json").write_text("old")
    with pytest.raises(ValueError, match="report.json already exists.*--overwrite"):
        ExportNix(output_dir=out, input_ply=src, rate=1.0).main()
    assert (out / "report.json").read_text() == "old" and not (out / "scene.nifi").exists()
    ExportNix(output_dir=out, input_ply=src, rate=1.0, overwrite=True).main()
    assert json.loads((out / "report.json").read_text())["num_gaussians"] > 0
    assert read_ply(out / "scene_decoded.ply").num_gaussians > 0
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "scene.nifi", "scene_decoded.ply"]  # no .tmp


def test_eval_nifi_refuses_existing_out(tmp_path, capsys):
    out = tmp_path / "m.json"
    out.write_text("old")
    assert load_script("eval_nifi").main(["--ckpt", str(tmp_path / "nope"), "--data_root", str(tmp_path),
                                          "--out", str(out)]) == 2
    assert "m.json already exists" in capsys.readouterr().err
    assert out.read_text() == "old"
    # --overwrite passes the check; the missing checkpoint is the next error
    assert load_script("eval_nifi").main(["--ckpt", str(tmp_path / "nope"), "--data_root", str(tmp_path),
                                          "--out", str(out), "--overwrite"]) == 2
    assert "already exists" not in capsys.readouterr().err


def test_build_and_render_scripts_refuse_existing_outputs(tmp_path):
    build = load_script("build_3dgs_and_compress")
    scene = tmp_path / "scene"
    scene.mkdir()
    (scene / "transforms.json").write_text("{}")
    out = tmp_path / "artifacts"
    out.mkdir()
    (out / "rate_0.5.nifi").write_bytes(b"old")
    with pytest.raises(SystemExit, match="rate_0.5.nifi already exists"):
        build.main(["--scene", str(scene), "--out", str(out), "--rates", "0.5"])
    render = load_script("render_pairs")
    config = tmp_path / "config.yml"
    config.write_text("x")
    (tmp_path / "pairs" / "rate_0.5" / "test").mkdir(parents=True)
    with pytest.raises(SystemExit, match="rate_0.5.test already exists"):
        render.main(["--scene", str(config), "--split", "test", "--out", str(tmp_path / "pairs"), "--rates", "0.5"])


def test_demo_and_nifi_eval_refuse_existing_outputs(tmp_path, capsys):
    from difix_ns.cli import demo
    from nifi_ns.cli.ns_eval import NifiComputeMetrics

    out = tmp_path / "demo_out"
    out.mkdir()
    (out / "strip.png").write_bytes(b"old")
    code, err = _run(demo.main, ["--model_name", "random-tiny", "--output_dir", str(out)], capsys)
    assert code == 2 and "strip.png already exists" in err
    result = tmp_path / "eval.json"
    result.write_text("{}")
    with pytest.raises(SystemExit, match="eval.json already exists"):
        NifiComputeMetrics(load_config=tmp_path / "config.yml", output_path=result).main()
    assert result.read_text() == "{}"
