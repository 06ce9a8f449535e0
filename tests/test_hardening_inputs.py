"""Ordinary inputs that used to give silently wrong results: EXIF orientation, far-away Gaussians in the codec,
PLYs whose size disagrees with the header, checkpoint metadata pointing outside its folder."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from difix_ns.io import load_image, probe_image
from nifi_ns.codec import CodecConfig, compress_with_report, decompress, read_header
from nifi_ns.io import GaussianSplat, read_ply, write_ply


def test_exif_orientation_is_applied(tmp_path):
    array = np.zeros((64, 96, 3), np.uint8)
    array[:, :48] = (255, 0, 0)  # left half red, right half blue as stored
    array[:, 48:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    path = tmp_path / "phone.jpg"
    Image.fromarray(array).save(path, exif=exif, quality=95)
    assert probe_image(path) == (64, 96)
    shown = np.asarray(load_image(path), np.float32)
    assert shown.shape == (96, 64, 3)
    assert shown[:40, :, 0].mean() > 200 and shown[-40:, :, 2].mean() > 200  # red on top, blue at the bottom


def test_far_outlier_does_not_collapse_the_other_positions():
    splat = GaussianSplat.random(4000, sh_degree=0, seed=0)
    splat.means[5] = (1e30, 0.0, 0.0)
    blob, _, dequantized, source = compress_with_report(splat, config=CodecConfig(), return_dequantized=True)
    decoded = decompress(blob)
    assert decoded.equal(dequantized)
    error = np.abs(decoded.means - splat.means[source])
    extent = np.ptp(np.delete(splat.means, 5, axis=0), axis=0).max()
    assert error[source != 5].max() <= extent / (1 << 13)  # 16-bit grid over ~2x the bulk, not over 1e30
    assert np.array_equal(decoded.means[source == 5], splat.means[5:6])  # the outlier itself exactly (float32)
    assert blob[8:10] == (2).to_bytes(2, "little") and read_header(blob)["position"]["outliers"] == 1
    plain, _ = compress_with_report(GaussianSplat.random(4000, sh_degree=0, seed=0), config=CodecConfig())
    assert "outliers" not in read_header(plain)["position"]  # only scenes with far-away Gaussians pay for them


def test_ply_with_more_rows_than_its_header_is_rejected(tmp_path):
    path = write_ply(GaussianSplat.random(10, sh_degree=1, seed=0), tmp_path / "s.ply")
    assert read_ply(path).num_gaussians == 10
    data = path.read_bytes()
    row = (len(data) - data.index(b"end_header\n") - len(b"end_header\n")) // 10
    path.write_bytes(data + data[-row:])
    with pytest.raises(ValueError, match=r"s.ply: file has .* bytes but its header \(10 vertex\)"):
        read_ply(path)


@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/passwd", "sub/../../x.safetensors"])
def test_restorer_metadata_paths_stay_in_the_checkpoint(tmp_path, name):
    from nifi_ns.restoration.restorer import load_restorer

    folder = tmp_path / "best"
    folder.mkdir()
    (folder / "nifi_restorer.json").write_text(json.dumps({"lora_path": name, "backbone": "sdturbo",
                                                           "model_path": "x", "prompt": "", "t0": 1}))
    with pytest.raises(ValueError, match="checkpoint folder"):
        load_restorer(str(folder))
