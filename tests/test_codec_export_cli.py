"""`ns-nifi-export` on a PLY input: outputs, report, clean failures."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nifi_ns.cli.export import ExportNix
from nifi_ns.codec import decompress
from nifi_ns.io import GaussianSplat, read_ply, write_ply


def test_export_from_inria_ply(tmp_path):
    src = write_ply(GaussianSplat.random(3000, sh_degree=3, seed=2), tmp_path / "in.ply")
    out = tmp_path / "export"
    report = ExportNix(output_dir=out, input_ply=src, target_mb=0.02).main()
    blob = (out / "scene.nifi").read_bytes()
    assert len(blob) == report.size_bytes <= 0.02 * (1 << 20)
    assert read_ply(out / "scene_decoded.ply").equal(decompress(blob))
    info = json.loads((out / "report.json").read_text())
    assert info["num_gaussians"] == report.num_gaussians < 3000
    assert info["compression_ratio"] == pytest.approx(src.stat().st_size / len(blob))


def test_export_rejects_bad_options(tmp_path):
    with pytest.raises(ValueError, match="exactly one of"):
        ExportNix(output_dir=tmp_path / "a", rate=0.5).main()
    with pytest.raises(ValueError, match="--rate"):
        ExportNix(output_dir=tmp_path / "a", input_ply=tmp_path / "x.ply").main()
    with pytest.raises(FileNotFoundError, match="config.yml"):
        ExportNix(output_dir=tmp_path / "a", load_config=tmp_path / "config.yml", rate=0.5).main()
    assert not (tmp_path / "a").exists()  # no partial output


def test_console_script_exit_code(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nifi_ns.cli.export",
            "--input-ply",
            str(tmp_path / "nope.ply"),
            "--rate",
            "0.5",
            "--output-dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "nope.ply" in result.stderr
    assert not Path(tmp_path / "out").exists()
