"""The NiFi guide's artifact scripts on a COLMAP scene (the layout Mip-NeRF 360 / T&T / Deep Blending ship in).

The fox capture is rewritten as COLMAP text files (cameras.txt, images.txt, points3D.txt) next to a link to its real
images_4/ photos; splatfacto trains for a few steps from random points on CPU: plumbing, not quality.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import FOX, load_script


pytestmark = pytest.mark.slow


def _quaternion_wxyz(r: np.ndarray) -> np.ndarray:
    """Rotation matrix -> unit quaternion (w, x, y, z), w >= 0 (COLMAP's convention)."""
    w = np.sqrt(max(0.0, 1.0 + np.trace(r))) / 2
    x = np.copysign(np.sqrt(max(0.0, 1.0 + r[0, 0] - r[1, 1] - r[2, 2])) / 2, r[2, 1] - r[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1.0 - r[0, 0] + r[1, 1] - r[2, 2])) / 2, r[0, 2] - r[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1.0 - r[0, 0] - r[1, 1] + r[2, 2])) / 2, r[1, 0] - r[0, 1])
    q = np.array([w, x, y, z])
    return q / np.linalg.norm(q)


def fox_as_colmap(root: Path, count: int = 9) -> Path:
    """<root>/fox_colmap/{images_4 -> fox/images_4, sparse/0/{cameras,images,points3D}.txt} for `count` frames."""
    if not (FOX / "transforms.json").is_file():
        pytest.skip(f"fox data not found at {FOX}")
    meta = json.loads((FOX / "transforms.json").read_text())
    scene = root / "fox_colmap"
    sparse = scene / "sparse" / "0"
    sparse.mkdir(parents=True)
    (scene / "images_4").symlink_to((FOX / "images_4").resolve())
    params = " ".join(str(meta[k]) for k in ("fl_x", "fl_y", "cx", "cy", "k1", "k2", "p1", "p2"))
    (sparse / "cameras.txt").write_text(f"1 OPENCV {int(meta['w'])} {int(meta['h'])} {params}\n")
    lines = []
    for i, frame in enumerate(meta["frames"][:count], start=1):
        c2w = np.array(frame["transform_matrix"], dtype=np.float64) @ np.diag([1.0, -1.0, -1.0, 1.0])  # GL -> CV
        w2c = np.linalg.inv(c2w)
        q, t = _quaternion_wxyz(w2c[:3, :3]), w2c[:3, 3]
        lines += [f"{i} {' '.join(map(str, q))} {' '.join(map(str, t))} 1 {Path(frame['file_path']).name}", ""]
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(0)
    points = rng.normal(scale=0.5, size=(64, 3))
    (sparse / "points3D.txt").write_text("".join(f"{k + 1} {x} {y} {z} 128 128 128 0.5\n"
                                                 for k, (x, y, z) in enumerate(points)))
    return scene


def test_colmap_scene_is_validated_and_named_in_errors(tmp_path):
    build = load_script("build_3dgs_and_compress")
    scene = fox_as_colmap(tmp_path)
    assert build.check_scene(scene, 4) == 4
    with pytest.raises(SystemExit, match="pass --downscale-factor"):
        build.check_scene(scene, None)  # no full-resolution images/ to pick nerfstudio's automatic factor from
    with pytest.raises(SystemExit, match="images_8"):
        build.check_scene(scene, 8)
    (scene / "images").symlink_to((FOX / "images_2").resolve())  # 540x960: the automatic factor is 1
    assert build.check_scene(scene, None) == 1
    os.remove(scene / "sparse" / "0" / "cameras.txt")
    with pytest.raises(SystemExit, match="no transforms.json .* and no COLMAP sparse/0/cameras.bin"):
        build.check_scene(scene, 4)


def test_build_and_render_pairs_from_a_colmap_scene(tmp_path, monkeypatch):
    from nifi_ns.synthesis.layout import validate_pairs

    scene = fox_as_colmap(tmp_path)
    artifacts = tmp_path / "artifacts" / "fox"
    build = load_script("build_3dgs_and_compress")
    assert build.main(["--scene", str(scene), "--rates", "0.5", "1.0", "--out", str(artifacts),
                       "--max-num-iterations", "4", "--downscale-factor", "4", "--finetune-steps", "1",
                       "--target-mb", "0.003", "0.002", "--num-random", "100"]) == 0
    info = json.loads((artifacts / "artifacts.json").read_text())
    assert info["scene_format"] == "colmap" and info["downscale_factor"] == 4
    # 9 images, every 8th held out (the benchmarks' test split): the 1st and 9th image are test, 7 are train
    counts = validate_pairs(artifacts / "renders", [0.5, 1.0], ["train", "test"])
    assert counts == {"rate_0.5/train": 7, "rate_0.5/test": 2, "rate_1.0/train": 7, "rate_1.0/test": 2}
    test_names = sorted(p.name for p in (artifacts / "renders" / "rate_1.0" / "test" / "clean").iterdir())
    assert test_names == ["0001.png", "0012.png"]
    from PIL import Image

    with Image.open(artifacts / "renders" / "rate_1.0" / "test" / "clean" / "0001.png") as im:
        assert abs(im.size[0] - 270) <= 2 and abs(im.size[1] - 480) <= 2  # images_4, undistorted

    # the NiFi guide's render_pairs step for the test split (--out pairs/<scene>/)
    pairs = tmp_path / "pairs" / "fox"
    assert load_script("render_pairs").main(["--scene", str(artifacts), "--split", "test", "--out", str(pairs)]) == 0
    assert validate_pairs(pairs, [0.5, 1.0], ["test"]) == {"rate_0.5/test": 2, "rate_1.0/test": 2}

    # a split the dataparser left empty is an error naming it, raised before anything is compressed or written
    from nifi_ns.synthesis import from_run

    monkeypatch.setattr(from_run, "split_size", lambda pipeline, split: 0 if split == "test" else 7)
    with pytest.raises(ValueError, match=r"\['test'\] split\(s\) hold no images"):
        from_run.synthesize_pairs(Path(info["config"]), tmp_path / "empty", [1.0], ["train", "test"])
    assert not (tmp_path / "empty").exists()
