"""Precomputed-renders mode (external codec renders, e.g. HAC++) and the pair layout, on real fox photos.

The "renders" here are the photos blurred and downscaled (a stand-in for a codec's output with the right layout);
what is tested is the matching, resizing, validation and the errors on bad layouts.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageFilter

from nifi_ns.synthesis.layout import parse_rate_label, rate_label, validate_pairs
from nifi_ns.synthesis.precomputed import LayoutError, pairs_from_precomputed, plan_pairs
from conftest import FOX

ROOT = Path(__file__).parents[1]
NAMES = ("0001", "0002", "0003")


@pytest.fixture()
def layout(tmp_path):
    if not (FOX / "images_4").is_dir():
        pytest.skip(f"fox data not found at {FOX}")
    dataset = tmp_path / "data" / "fox"
    (dataset / "images").mkdir(parents=True)
    compressed = tmp_path / "hacpp" / "fox"
    for name in NAMES:
        photo = Image.open(FOX / "images_4" / f"{name}.jpg").convert("RGB")  # 270x480
        photo.save(dataset / "images" / f"{name}.jpg")
        for rate in (0.1, 1.0):
            folder = compressed / rate_label(rate) / "test"
            folder.mkdir(parents=True, exist_ok=True)
            render = photo.resize((135, 240)).filter(ImageFilter.GaussianBlur(1 + 3 * rate))
            render.save(folder / f"{name}.png")
    return dataset, compressed, tmp_path / "pairs" / "fox"


def test_rate_labels_round_trip():
    assert rate_label(0.5) == "rate_0.5" and rate_label(1) == "rate_1.0"
    assert parse_rate_label("rate_0.1") == 0.1
    with pytest.raises(ValueError, match="rate_<lambda>"):
        parse_rate_label("lambda_0.1")


def test_precomputed_pairs_match_names_and_sizes(layout):
    dataset, compressed, out = layout
    manifest = pairs_from_precomputed(dataset, compressed, out, rates=(0.1, 1.0), split="test", prompt="a fox")
    assert validate_pairs(out, (0.1, 1.0), ("test",)) == {"rate_0.1/test": 3, "rate_1.0/test": 3}
    clean = Image.open(out / "rate_1.0" / "test" / "clean" / "0002.png")
    degraded = Image.open(out / "rate_1.0" / "test" / "degraded" / "0002.png")
    assert clean.size == degraded.size == (135, 240)  # photo resized to the render's size
    # clean is the photo (sharp), degraded the render (blurred): their pixels differ
    assert clean.tobytes() != degraded.tobytes()
    assert manifest["rates"]["rate_0.1"]["counts"] == {"test": 3}
    assert (out / "prompt.txt").read_text().strip() == "a fox"
    assert json.loads((out / "manifest.json").read_text())["source"] == "precomputed"


def test_missing_rate_folder_is_named(layout):
    dataset, compressed, out = layout
    with pytest.raises(LayoutError, match=r"rate_0\.5.*present: \['rate_0\.1', 'rate_1\.0'\]"):
        pairs_from_precomputed(dataset, compressed, out, rates=(0.1, 0.5), split="test")
    assert not out.exists()  # validated before writing: no partial output


def test_unmatched_render_and_aspect_mismatch(layout):
    dataset, compressed, _ = layout
    Image.new("RGB", (135, 240)).save(compressed / "rate_0.1" / "test" / "9999.png")
    with pytest.raises(LayoutError, match="9999.png"):
        plan_pairs(dataset, compressed, (0.1,), "test")
    (compressed / "rate_0.1" / "test" / "9999.png").unlink()
    Image.new("RGB", (200, 200)).save(compressed / "rate_0.1" / "test" / "0003.png")
    with pytest.raises(LayoutError, match="different aspect ratio"):
        plan_pairs(dataset, compressed, (0.1,), "test")


def test_validate_pairs_reports_size_mismatch(layout):
    dataset, compressed, out = layout
    pairs_from_precomputed(dataset, compressed, out, rates=(1.0,), split="test")
    Image.new("RGB", (10, 10)).save(out / "rate_1.0" / "test" / "clean" / "0001.png")
    with pytest.raises(ValueError, match="0001.png is 10x10"):
        validate_pairs(out, (1.0,), ("test",))


def test_prepare_benchmark_pairs_precomputed_cli(layout, tmp_path):
    dataset, compressed, _ = layout
    out = tmp_path / "bench"
    cmd = [sys.executable, str(ROOT / "scripts" / "prepare_benchmark_pairs.py"), "--dataset", "demo",
           "--dataset_root", str(dataset.parent), "--out", str(out), "--rates", "0.1", "1.0",
           "--compression_method", "precomputed", "--compressed_root", str(compressed.parent)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert validate_pairs(out / "demo" / "fox", (0.1, 1.0), ("test",))["rate_1.0/test"] == 3
    summary = json.loads((out / "demo" / "benchmark_manifest.json").read_text())
    assert summary["compression_method"] == "precomputed" and list(summary["scenes"]) == ["fox"]

    bad = subprocess.run(cmd[:-1] + [str(tmp_path / "nowhere"), "--overwrite"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode != 0 and "nowhere" in bad.stderr
