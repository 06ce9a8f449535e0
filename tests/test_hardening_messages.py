"""One clear message (no traceback, exit != 0, nothing left behind) for bad options and failing writes."""
from __future__ import annotations

import errno
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script

from difix_ns.cli import enhance_video
from nifi_ns.cli import export
from nifi_ns.io import GaussianSplat, write_ply


@pytest.fixture()
def ply(tmp_path):
    return write_ply(GaussianSplat.random(200, sh_degree=0, seed=1), tmp_path / "in.ply")


def _export(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["ns-nifi-export", *map(str, args)])
    with pytest.raises(SystemExit) as info:
        export.entrypoint()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return info.value.code, " ".join(err.split())


def test_export_bad_target_and_output_file(tmp_path, ply, monkeypatch, capsys):
    code, err = _export(monkeypatch, capsys, "--input-ply", ply, "--target-mb", "inf", "--output-dir", tmp_path / "o")
    assert code == 2 and "--target-mb must be a finite number > 0" in err
    (tmp_path / "file").write_text("x")
    code, err = _export(monkeypatch, capsys, "--input-ply", ply, "--rate", "1.0", "--output-dir", tmp_path / "file")
    assert code == 2 and "file exists and is not a directory" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EACCES])
def test_export_failing_write_leaves_nothing(tmp_path, ply, monkeypatch, capsys, error):
    real = export.write_ply

    def failing(splat, path):
        real(splat, path)  # the temporary is written, then the disk "fills up" / permission is refused
        raise OSError(error, "simulated")

    monkeypatch.setattr(export, "write_ply", failing)
    out = tmp_path / "o"
    code, err = _export(monkeypatch, capsys, "--input-ply", ply, "--rate", "1.0", "--output-dir", out)
    assert code == 2 and "cannot write the export" in err and "nothing was written" in err
    assert list(out.iterdir()) == []  # no scene.nifi, no .tmp


def test_export_garbage_yaml_config(tmp_path, monkeypatch, capsys):
    config = tmp_path / "config.yml"
    config.write_text("::: {{ not yaml")
    monkeypatch.setattr(sys, "argv", ["ns-nifi-export", "--load-config", str(config), "--rate", "1.0",
                                      "--output-dir", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="config.yml is not a readable nerfstudio config.yml"):
        export.entrypoint()


def test_corrupt_video_error_is_one_useful_line(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(SystemExit) as info:
        enhance_video.main(["--input", str(bad), "--output", str(tmp_path / "o.mp4"), "--model_name", "x"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2
    assert "bad.mp4" in err and ("moov atom not found" in err or "Invalid data" in err)  # ffmpeg's own reason
    assert "configuration:" not in err and "ffmpeg version" not in err and len(err.splitlines()) <= 2


@pytest.mark.parametrize("extra,message", [
    (["--rates", "0.3"], "rate=0.3 is not a preset"),
    (["--rates", "0.5", "--target-mb", "inf"], "--target-mb values must be finite"),
    (["--rates", "0.5", "--target-mb", "0.1", "0.2"], "--target-mb has 2 values for 1 rates"),
    (["--max-num-iterations", "0"], "--max-num-iterations must be >= 1"),
    (["--finetune-steps", "-1"], "--finetune-steps must be >= 0"),
])
def test_build_script_validates_every_option_before_training(tmp_path, extra, message):
    scene = tmp_path / "scene"
    scene.mkdir()  # no transforms.json either: the option error must come first, before the scene is read
    out = tmp_path / "artifacts"
    with pytest.raises(SystemExit, match=message):
        load_script("build_3dgs_and_compress").main(["--scene", str(scene), "--out", str(out), *extra])
    assert not out.exists()


def test_other_scripts_validate_options_first(tmp_path, capsys):
    with pytest.raises(SystemExit, match="rate=0.3 is not a preset"):
        load_script("bench_nifi_splatfacto").main(["--data", str(tmp_path), "--out", str(tmp_path / "b.json"),
                                                   "--rates", "0.3"])
    assert load_script("train_nifi").main(["--data_root", str(tmp_path), "--exp", str(tmp_path / "e"),
                                           "--max_steps", "0"]) == 2
    assert "--max_steps must be >= 1" in capsys.readouterr().err
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "train_log.csv").write_text("step\n1\n")
    assert load_script("train_nifi").main(["--data_root", str(tmp_path), "--exp", str(tmp_path / "e")]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert not (tmp_path / "e" / "latest.pt").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU refusal")
def test_nifi_benchmark_refuses_a_full_run_without_a_gpu(tmp_path):
    # Without the check the product benchmark would train splatfacto on the CPU for hours before writing anything.
    fox = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fox"
    out = tmp_path / "bench"
    with pytest.raises(SystemExit, match="no CUDA GPU.*--smoke-cpu"):
        load_script("bench_nifi_splatfacto").main(["--data", str(fox), "--out", str(out)])
    assert not out.exists()
