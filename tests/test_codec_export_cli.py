"""`ns-nifi-export` on a PLY input: outputs, report, clean failures."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nifi_ns.cli.export import ExportNix
from nifi_ns.codec import compress_with_report, decompress, read_header
from nifi_ns.io import GaussianSplat, inria_ply_num_bytes, read_ply, write_ply


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
    assert read_header(blob)["encoder"]["config"]["entropy_coder"] == "auto"  # the codec's default coder


def test_export_existing_container(tmp_path):
    """--input-nifi: a run's container is copied byte for byte and decoded; its run report gives the reference."""
    trained = GaussianSplat.random(3000, sh_degree=3, seed=4)
    blob, report = compress_with_report(trained.subset(slice(0, 800)), rate=1.0)  # stands in for prune+fine-tune
    run_nifi = tmp_path / "run" / "nifi"
    run_nifi.mkdir(parents=True)
    (run_nifi / "rate_1.0.nifi").write_bytes(blob)
    out = tmp_path / "export"
    plain = ExportNix(output_dir=out, input_nifi=run_nifi / "rate_1.0.nifi").main()
    assert (out / "scene.nifi").read_bytes() == blob
    assert read_ply(out / "scene_decoded.ply").equal(decompress(blob))
    assert plain.num_input_gaussians == 800 and plain.ply_bytes == report.ply_bytes  # header's own source
    ply_bytes = inria_ply_num_bytes(3000, 3)
    run_report = {"sha256": hashlib.sha256(blob).hexdigest(), "ply_bytes": ply_bytes,
                  "num_input_gaussians": 3000, "input_sh_degree": 3}
    (run_nifi / "rate_1.0.json").write_text(json.dumps(run_report))
    with_run = ExportNix(output_dir=out, input_nifi=run_nifi / "rate_1.0.nifi", overwrite=True).main()
    assert with_run.num_input_gaussians == 3000 and with_run.compression_ratio == pytest.approx(ply_bytes / len(blob))
    assert json.loads((out / "report.json").read_text())["rate"] == 1.0
    (run_nifi / "rate_1.0.json").write_text(json.dumps({**run_report, "sha256": "0" * 64}))  # stale report: ignored
    assert ExportNix(output_dir=out, input_nifi=run_nifi / "rate_1.0.nifi",
                     overwrite=True).main().num_input_gaussians == 800

    broken = tmp_path / "broken.nifi"
    broken.write_bytes(blob[:-7])
    with pytest.raises(ValueError, match=r"--input-nifi .*broken.nifi: truncated"):
        ExportNix(output_dir=tmp_path / "b", input_nifi=broken).main()
    with pytest.raises(ValueError, match="drop --rate"):
        ExportNix(output_dir=tmp_path / "b", input_nifi=broken, rate=0.5).main()
    assert not (tmp_path / "b").exists()  # no partial output


def test_export_rejects_bad_options(tmp_path):
    with pytest.raises(ValueError, match="exactly one of"):
        ExportNix(output_dir=tmp_path / "a", rate=0.5).main()
    with pytest.raises(ValueError, match="exactly one of"):
        ExportNix(output_dir=tmp_path / "a", input_ply=tmp_path / "x.ply", input_nifi=tmp_path / "x.nifi").main()
    with pytest.raises(ValueError, match="not a preset"):
        ExportNix(output_dir=tmp_path / "a", input_ply=tmp_path / "x.ply", rate=0.3).main()
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
