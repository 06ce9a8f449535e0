"""`ns-nifi-export --load-config` on a real (tiny) stock splatfacto run trained on CPU.

12 steps from 200 random Gaussians on 6 quarter-res fox views: proves the run -> container -> PLY plumbing, not
quality.
"""

from __future__ import annotations

import json
import os

import pytest

from nifi_ns.cli.export import ExportNix
from nifi_ns.codec import decompress
from nifi_ns.io import read_ply
from conftest import FOX


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def splatfacto_run(tmp_path_factory):
    if not (FOX / "transforms.json").is_file():
        pytest.skip(f"fox data not found at {FOX}")
    os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion
    from nerfstudio.scripts.train import main as ns_train

    from difix_ns.splat import install_cpu_support

    install_cpu_support()
    root = tmp_path_factory.mktemp("splat_run")
    meta = json.loads((FOX / "transforms.json").read_text())
    meta["frames"] = meta["frames"][::8][:6]
    scene = root / "fox6"
    scene.mkdir()
    (scene / "transforms.json").write_text(json.dumps(meta))
    (scene / "images_4").symlink_to((FOX / "images_4").resolve())
    argv = [
        "splatfacto", "--data", str(scene), "--output-dir", str(root / "outputs"), "--experiment-name", "fox",
        "--timestamp", "run", "--max-num-iterations", "12", "--vis", "tensorboard",
        "--viewer.quit-on-train-completion", "True", "--machine.device-type", "cpu",
        "--pipeline.model.random-init", "True", "--pipeline.model.num-random", "200",
        "nerfstudio-data", "--downscale-factor", "4", "--eval-mode", "interval", "--eval-interval", "3",
    ]  # fmt: skip
    ns_train(tyro.cli(AnnotatedBaseConfigUnion, args=argv))
    return root / "outputs" / "fox" / "splatfacto" / "run" / "config.yml"


def test_export_from_run(splatfacto_run, tmp_path):
    out = tmp_path / "export"
    report = ExportNix(output_dir=out, load_config=splatfacto_run, target_mb=0.0026).main()
    assert report.num_input_gaussians >= 200 and report.input_sh_degree == 3
    assert report.size_bytes <= 0.0026 * (1 << 20) and report.num_gaussians < report.num_input_gaussians
    decoded = decompress((out / "scene.nifi").read_bytes())
    assert read_ply(out / "scene_decoded.ply").equal(decoded)
    assert json.loads((out / "report.json").read_text())["source"] == str(splatfacto_run)
