"""difix-demo: renders the bundled MIT guitar splat, fixes the renders, writes before/after PNGs and a strip.

Uses ``--model_name random-tiny`` (random weights): this checks plumbing, not quality.
"""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from difix_ns.assets import ASSETS_DIR, GUITAR_SPLAT
from difix_ns.cli import demo


def run_cli(main, args, capsys) -> tuple:
    try:
        main(args)
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    return code, " ".join(capsys.readouterr().err.split())


def test_bundled_asset_and_credit():
    assert GUITAR_SPLAT.is_file() and GUITAR_SPLAT.stat().st_size == 1_479_876
    credits = (ASSETS_DIR / "CREDITS.txt").read_text()
    assert "MIT" in credits and "playcanvas/engine" in credits
    # Only permissively licensed data is bundled (no NVIDIA-licensed examples, no fox).
    assert sorted(p.name for p in ASSETS_DIR.iterdir() if p.suffix != ".py" and p.name != "__pycache__") == [
        "CREDITS.txt", "guitar.compressed.ply"]


def test_demo_rejects_bad_options(tmp_path, capsys):
    out = tmp_path / "never"
    for extra, needle in [(["--views", "0"], "--views"), (["--width", "32", "--height", "96"], "64 px"),
                          (["--splat", str(tmp_path / "missing.ply")], "missing.ply")]:
        code, err = run_cli(demo.main, ["--model_name", "random-tiny", "--output_dir", str(out)] + extra, capsys)
        assert code == 2 and err.startswith("error:") and needle in err, err
        assert not out.exists()


def test_demo_random_tiny_writes_before_after_strip(tmp_path, capsys):
    out = tmp_path / "demo_out"
    code, err = run_cli(demo.main, ["--model_name", "random-tiny", "--output_dir", str(out), "--views", "1",
                                    "--width", "64", "--height", "96"], capsys)
    assert code == 0, err
    assert "PLUMBING ONLY" in err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["strip.png", "summary.json", "view00_after.png", "view00_before.png", "view00_reference.png",
                     "view00_target.png"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["plumbing_only"] is True and len(summary["before"]["psnr"]) == 1
    before = np.array(Image.open(out / "view00_before.png"))
    target = np.array(Image.open(out / "view00_target.png"))
    assert before.shape == (96, 64, 3) and (before < 250).mean() > 0.02  # the guitar is in view
    assert not np.array_equal(before, target)  # the degraded render differs from the full splat's
