"""scripts/gpu_train_restorer_demo.py: input checks fail before any work, naming the offending path or option, and
the images tar for the later DISTS rescore stays under the size the GPU tool brings back. Fast: nothing is trained."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_train_restorer_demo.py"


@pytest.fixture(scope="module")
def demo():
    return load_script(SCRIPT.stem)


def _scene(folder: Path, image_dir: str = "images") -> None:
    (folder / image_dir).mkdir(parents=True)
    (folder / "transforms.json").write_text(json.dumps({"frames": [{"file_path": "images/0000.jpg"}]}))


@pytest.fixture()
def data_root(tmp_path):
    root = tmp_path / "data"
    _scene(root / "fox", "images_4")
    for name in ("castle-P30", "Herz-Jesus-P25", "entry-P10"):
        _scene(root / "strecha" / name)
    return root


def _exit_message(demo, argv) -> str:
    with pytest.raises(SystemExit) as info:
        demo.check_args(demo.parse_args(argv))
    return str(info.value)


def test_missing_evaluation_scene_is_named(demo, data_root, tmp_path):
    (data_root / "strecha" / "entry-P10" / "transforms.json").unlink()
    msg = _exit_message(demo, ["--smoke-cpu", "--out", str(tmp_path / "o"), "--data-root", str(data_root)])
    assert "entry-P10" in msg and "transforms.json" in msg
    assert not (tmp_path / "o").exists()  # nothing written before the checks pass


def test_missing_fox_resolution_is_named(demo, data_root, tmp_path):
    msg = _exit_message(demo, ["--smoke-cpu", "--out", str(tmp_path / "o"), "--data-root", str(data_root),
                               "--fox-images", "images_2"])
    assert "images_2" in msg


def test_dropped_scene_is_not_required_and_bad_options_are_named(demo, data_root, tmp_path):
    import shutil

    shutil.rmtree(data_root / "strecha" / "castle-P30")
    base = ["--smoke-cpu", "--out", str(tmp_path / "o"), "--data-root", str(data_root)]
    assert "castle-P30" in _exit_message(demo, base)
    scenes = demo.check_args(demo.parse_args(base + ["--scenes", "fox", "Herz-Jesus-P25"]))
    assert list(scenes) == ["entry-P10", "fox", "Herz-Jesus-P25"]
    assert "--crop" in _exit_message(demo, base + ["--scenes", "fox", "--crop", "100"])
    assert "--pairs-fraction" in _exit_message(demo, base + ["--scenes", "fox", "--pairs-fraction", "0"])


def test_earlier_results_are_not_replaced_without_overwrite(demo, data_root, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / demo.JSON_NAME).write_text("{}")
    msg = _exit_message(demo, ["--smoke-cpu", "--out", str(out), "--data-root", str(data_root)])
    assert demo.JSON_NAME in msg and "--overwrite" in msg
    assert (out / demo.JSON_NAME).read_text() == "{}"


def test_images_tar_keeps_test_views_first_and_stays_under_its_limit(demo, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    rows = []
    for split in ("train", "test"):
        for i in range(3):
            files = {}
            for kind in ("degraded", "restored", "clean"):
                path = tmp_path / split / kind / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
                files[kind] = str(path)
            rows.append({"split": split, "rate": "0.5", "name": str(i), **files})
    one_pair = sum(Path(rows[0][k]).stat().st_size for k in ("degraded", "restored", "clean")) + 3 * 1024
    monkeypatch.setattr(demo, "IMAGES_TAR_LIMIT", int(one_pair * 4.5))
    info = demo.write_images_tar(tmp_path / "images.tar", rows)
    assert info["pairs"] == 4 and info["of"] == 6
    assert info["included"][:3] == [f"test/rate_0.5/{i}" for i in range(3)]
    with tarfile.open(tmp_path / "images.tar") as tar:
        names = tar.getnames()
    assert "test/rate_0.5/restored/0.png" in names and len(names) == 12


def test_cpu_scale_profile_fills_defaults_and_explicit_options_win(demo, data_root, tmp_path):
    base = ["--scale", "cpu", "--out", str(tmp_path / "o"), "--data-root", str(data_root)]
    args = demo.parse_args(base)
    demo.check_args(args)
    assert (args.profile, args.batch_size, args.crop, args.budget_s, args.target_scale) == ("cpu", 4, 64, 3600.0, 0.25)
    assert args.architecture == "small" and args.eval_splits == ["test", "train"]
    assert demo.parse_args(base + ["--crop", "128", "--lr", "1e-3"]).crop == 128
    assert demo.parse_args(base + ["--smoke-cpu"]).profile == "smoke"  # the dry run wins over --scale
    # codec targets: the presets' sizes (1.15 / 0.36 / 0.22 MB) x the scale
    assert demo.target_sizes_mb([0.1, 0.5, 1.0], 0.25) == [0.2875, 0.09, 0.055]
    assert demo.target_sizes_mb([0.1], 1.0) is None
    assert "--target-scale" in _exit_message(demo, base + ["--rates", "0.3"])
    assert "--target-scale" in _exit_message(demo, base + ["--target-scale", "0"])


def test_gpu_scale_without_cuda_points_to_the_cpu_profile(demo, data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(demo.torch.cuda, "is_available", lambda: False)
    msg = _exit_message(demo, ["--out", str(tmp_path / "o"), "--data-root", str(data_root)])
    assert "CUDA" in msg and "--scale cpu" in msg
