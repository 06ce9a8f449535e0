"""A new user's first run on a CPU machine without a model hub: every case ends in one line, no traceback.

Fast (seconds each): the CLIs' entry functions are called in-process with tiny inputs, or a short subprocess runs
where the behaviour happens at interpreter exit.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FOX, load_script

ROOT = Path(__file__).resolve().parents[1]
MISSING_MODEL = "/nonexistent/difix_model_dir"



def one_error_line(text: str) -> str:
    """The single 'error:' line of a command's output (rich may wrap a long line only at the console width)."""
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    return errors[0]


# ---------------------------------------------------------------------------------------------- 1. device


def test_plugin_methods_default_to_the_device_that_exists():
    from difix_ns.nerfstudio.method_configs import difix3d_method, difix3d_splatfacto_method
    from nifi_ns.nerfstudio.method_configs import nifi_splatfacto_method

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    for spec in (difix3d_method, difix3d_splatfacto_method, nifi_splatfacto_method):
        assert spec.config.machine.device_type == expected, spec.config.method_name


def test_cpu_training_is_announced_once(monkeypatch):
    from nerfstudio.utils.rich_utils import CONSOLE

    from difix_ns.nerfstudio import device

    monkeypatch.setattr(device, "_ANNOUNCED", False)
    with CONSOLE.capture() as capture:
        device.announce_device("Difix3D", "cpu")
        device.announce_device("Difix3D", "cpu")
        device.announce_device("Difix3D", "cuda:0") if torch.cuda.is_available() else None
    lines = [line for line in capture.get().splitlines() if line.strip()]
    assert len(lines) == 1 and "training on the CPU" in lines[0], lines


# ---------------------------------------------------------------------------------------------- 3. progress


def test_step_progress_reports_n_of_total_and_eta_to_listeners():
    from rich.console import Console

    from difix_ns.progress import add_status_listener, remove_status_listener, step_progress

    seen: list[str] = []
    add_status_listener(seen.append)
    try:
        console = Console(file=open(os.devnull, "w"), force_terminal=False)
        with step_progress("Difix3D fix round @20: rendering", 4, console=console) as bar:
            bar.advance(2)
            bar.advance(0, description="Difix3D fix round @20: fixing")
            bar.advance(2)
    finally:
        remove_status_listener(seen.append)
    assert seen[0].startswith("Difix3D fix round @20: rendering: 0/4, ETA")
    assert "rendering: 2/4, ETA 0:00:0" in seen[1]
    assert seen[-2].startswith("Difix3D fix round @20: fixing: 4/4, ETA")
    assert seen[-1].startswith("Difix3D fix round @20: fixing: 4/4 done in")


def test_step_progress_falls_back_to_lines_inside_another_live_display(capsys):
    from rich.console import Console

    from difix_ns.progress import step_progress

    console = Console(stderr=True, force_terminal=False)
    with console.status("outer"):
        with step_progress("NiFi rate 0.5: fine-tune", 3, console=console) as bar:
            for _ in range(3):
                bar.advance()
    err = capsys.readouterr().err
    assert "NiFi rate 0.5: fine-tune" in err and "3/3" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------- 4. --eval-mode filename


@pytest.mark.skipif(not (FOX / "images_4").is_dir(), reason=f"fox data not found at {FOX}")
def test_eval_mode_filename_on_fox_is_one_line(capsys):
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    from difix_ns.nerfstudio.datamanager import Difix3DDataManagerConfig, Difix3DFullImageDatamanagerConfig

    for config_cls in (Difix3DDataManagerConfig, Difix3DFullImageDatamanagerConfig):
        config = config_cls(dataparser=NerfstudioDataParserConfig(
            data=FOX, eval_mode="filename", downscale_factor=4, orientation_method="none", center_method="none",
            auto_scale_poses=False))
        with pytest.raises(SystemExit) as exit_info:
            config.setup(device="cpu")
        assert exit_info.value.code == 2
        line = one_error_line(capsys.readouterr().out)
        assert "--eval-mode filename" in line and "--eval-mode interval --eval-interval 8" in line
        assert "0001.jpg)" in line  # an example of the names that lack train/eval


# ---------------------------------------------------------------------------------------------- 7. checkpoint family


def _named(*names: str) -> torch.nn.Module:
    root = torch.nn.Module()
    for name in names:
        parent = root
        *path, leaf = name.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, torch.nn.Module())
            parent = getattr(parent, part)
        parent.register_parameter(leaf, torch.nn.Parameter(torch.zeros(1)))
    return root


def test_checkpoint_of_the_other_model_family_names_the_method(capsys):
    from difix_ns.nerfstudio.user_errors import check_checkpoint_family, model_family

    nerfacto = _named("field.mlp_base.params", "proposal_networks.0.encoding.params")
    splat_state = {"_model.gauss_params.means": 0, "_model.gauss_params.scales": 0}
    nerf_state = {"_model.field.mlp_base.params": 0, "_model.proposal_networks.0.encoding.params": 0}
    assert model_family(splat_state) == "splatfacto" and model_family(nerf_state) == "nerfacto"
    check_checkpoint_family(nerf_state, nerfacto, "difix3d")  # same family: no output, no exit
    with pytest.raises(SystemExit) as exit_info:
        check_checkpoint_family(splat_state, nerfacto, "difix3d")
    assert exit_info.value.code == 2
    line = one_error_line(capsys.readouterr().out)
    assert "splatfacto model" in line and "ns-train difix3d-splatfacto" in line
    with pytest.raises(SystemExit):
        check_checkpoint_family(nerf_state, _named("gauss_params.means"), "difix3d-splatfacto")
    assert "ns-train difix3d," in one_error_line(capsys.readouterr().out)


# ---------------------------------------------------------------------------------------------- 5. model errors


def test_missing_model_is_one_line_with_the_offline_hint_everywhere(tmp_path, capsys, monkeypatch):
    from difix_ns.cli import fix_images
    from difix_ns.diffusion.hub import ModelResolutionError
    from difix_ns.fixer import DifixFixer
    from difix_ns.io import save_image
    from difix_ns.cli import render as render_cli

    # the tensor API
    with pytest.raises(ModelResolutionError, match="difix-make-tiny-model DIR.*random-tiny"):
        DifixFixer(model_name=MISSING_MODEL).pipeline  # noqa: B018

    # difix-fix
    inputs = tmp_path / "in"
    inputs.mkdir()
    save_image(torch.rand(3, 64, 64), inputs / "00000.png")
    with pytest.raises(SystemExit) as exit_info:
        fix_images.main(["--input_image", str(inputs), "--output_dir", str(tmp_path / "out"),
                         "--model_name", MISSING_MODEL])
    assert exit_info.value.code == 2 and not (tmp_path / "out").exists()
    line = one_error_line(" ".join(capsys.readouterr().err.split("\n")).replace("error:", "\nerror:"))
    assert MISSING_MODEL in line and "difix-make-tiny-model" in line and "random-tiny" in line

    # ns-difix-render: the model is checked before the run is loaded
    import nerfstudio.scripts.render as ns_render
    import nerfstudio.utils.eval_utils as eval_utils

    def no_load(*args, **kwargs):
        raise AssertionError("the run was loaded before the model was checked")

    monkeypatch.setattr(eval_utils, "eval_setup", no_load)
    monkeypatch.setattr(ns_render, "eval_setup", no_load)
    config = tmp_path / "run" / "config.yml"
    config.parent.mkdir()
    config.write_text("not loaded\n")
    with pytest.raises(SystemExit) as exit_info:
        render_cli.entrypoint(["interpolate", "--load-config", str(config), "--fixer.model-name", MISSING_MODEL])
    assert exit_info.value.code == 2
    line = one_error_line(" ".join(capsys.readouterr().err.split("\n")).replace("error:", "\nerror:"))
    assert line.startswith(f"error: --fixer.model-name {MISSING_MODEL}") and "difix-make-tiny-model" in line


def test_missing_model_is_one_line_in_the_video_and_demo_tools_and_before_training(tmp_path, capsys):
    """difix-enhance-video and difix-demo give the same one line (exit 2, no output); ns-train difix3d* checks the
    model with the same message before step 0 (the pipeline's check, called from its training callbacks)."""
    import numpy as np

    from difix_ns.cli import demo, enhance_video
    from difix_ns.io import write_video
    from difix_ns.nerfstudio.pipeline import _check_fixer_model

    video = tmp_path / "in.mp4"
    write_video(video, [np.zeros((64, 64, 3), np.uint8)] * 2, fps=24)
    runs = {
        "difix-enhance-video": (enhance_video.main, ["--input", str(video), "--output", str(tmp_path / "out.mp4"),
                                                     "--model_name", MISSING_MODEL]),
        "difix-demo": (demo.main, ["--output_dir", str(tmp_path / "demo"), "--model_name", MISSING_MODEL]),
    }
    for name, (main, argv) in runs.items():
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2, name
        captured = capsys.readouterr()
        line = one_error_line(" ".join((captured.err + captured.out).split("\n")).replace("error:", "\nerror:"))
        assert MISSING_MODEL in line and "difix-make-tiny-model" in line and "random-tiny" in line, name
    assert not (tmp_path / "out.mp4").exists() and not list((tmp_path / "demo").glob("*.png"))

    with pytest.raises(SystemExit) as exit_info:
        _check_fixer_model(MISSING_MODEL)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    line = one_error_line(" ".join((captured.err + captured.out).split("\n")).replace("error:", "\nerror:"))
    assert line.startswith(f"error: --pipeline.fixer.model-name {MISSING_MODEL}") and "random-tiny" in line
    _check_fixer_model("random-tiny")  # the tiny model passes the same check


# ---------------------------------------------------------------------------------------------- 6. random-tiny


def test_random_tiny_works_wherever_a_fixer_model_is_named(tmp_path, capsys, monkeypatch):
    from difix_ns.cli import common, fix_images
    from difix_ns.diffusion.model_names import check_difix_model
    from difix_ns.fixer import DifixFixer
    from difix_ns.io import save_image

    check_difix_model("random-tiny", option="--pipeline.fixer.model-name")  # ns-train / ns-difix-render check
    fixer = DifixFixer(model_name="random-tiny", device="cpu")
    out = fixer.fix(torch.rand(1, 3, 64, 64), torch.rand(1, 1, 3, 64, 64))
    assert out.shape == (1, 3, 64, 64) and fixer.plumbing_only and fixer.uses_references

    inputs = tmp_path / "renders"
    inputs.mkdir()
    for i in range(2):
        save_image(torch.rand(3, 64, 72), inputs / f"{i:05d}.png")
    capsys.readouterr()
    monkeypatch.setattr(common.console, "width", 40)  # a narrow log: printed paths and commands must not be folded
    fix_images.main(["--input_image", str(inputs), "--output_dir", str(tmp_path / "fixed"),
                     "--model_name", "random-tiny", "--device", "cpu"])
    assert sorted(p.name for p in (tmp_path / "fixed").iterdir()) == ["00000.png", "00001.png"]
    err = capsys.readouterr().err
    assert err.count("PLUMBING ONLY") == 2  # when the model loads and again under the results
    assert f"-i {tmp_path / 'fixed'}/%05d.png -c:v" in err  # the ffmpeg command for the frames, on one line


# ---------------------------------------------------------------------------------------------- 9. NiFi step 4.1


@pytest.mark.skipif(not (FOX / "images_4").is_dir(), reason=f"fox data not found at {FOX}")
def test_build_3dgs_on_fox_detects_images_n_before_work(tmp_path, capsys, monkeypatch):
    build = load_script("build_3dgs_and_compress")
    assert build.check_scene(FOX, None) == 2  # no images/: the smallest images_N/ present
    assert "using images_2/ (--downscale-factor 2)" in capsys.readouterr().err
    assert build.check_scene(FOX, 4) == 4
    with pytest.raises(SystemExit,
                       match=r"images_8/0001.jpg does not exist \(downscaled folders here: images_2/, images_4/\)"):
        build.check_scene(FOX, 8)
    with pytest.raises(SystemExit, match="pass --downscale-factor 2"):
        build.check_scene(FOX, 1)

    # a failure after the checks leaves no partial artifacts folder, and says so in one line
    def failing_build(args):
        (args.out / "runs").mkdir(parents=True)
        raise RuntimeError("CUDA out of memory (simulated)")

    from nifi_ns.cli import build_3dgs_and_compress as build_module  # where the script's main and build live

    monkeypatch.setattr(build_module, "build", failing_build)
    out = tmp_path / "artifacts" / "fox"
    assert build.main(["--scene", str(FOX), "--out", str(out), "--max-num-iterations", "30000"]) == 1
    err = capsys.readouterr().err
    assert not out.exists()
    assert "expected time on this" in err and "30000 training steps" in err
    assert one_error_line(err).endswith("(set DIFIX_NS_DEBUG=1 for a traceback)")
    # an existing output folder is never removed
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    assert build.main(["--scene", str(FOX), "--out", str(out), "--downscale-factor", "4"]) == 1
    assert (out / "keep.txt").read_text() == "mine"


# ---------------------------------------------------------------------------------------------- 10. Scenario A


def test_stock_ns_render_gets_ffmpeg_and_a_pointer_to_ns_difix_render(tmp_path):
    code = ("import sys, shutil; from difix_ns.render import stock_ns_render as s; "
            "s.install(['ns-render', 'interpolate', '--rendered-output-names', 'rgb_fixed']); "
            "print(shutil.which('ffmpeg') is not None); sys.exit(1)")
    env = dict(os.environ, PYTHONPATH=str(ROOT), PATH=str(Path(sys.executable).parent))  # no system ffmpeg here
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and proc.stdout.strip() == "True"
    assert "Traceback" not in proc.stderr
    hints = [line for line in proc.stderr.splitlines() if line.startswith("hint:")]
    assert len(hints) == 1 and "ns-difix-render" in hints[0]
    # other programs, and ns-render without rgb_fixed, are left alone
    code = ("from difix_ns.render import stock_ns_render as s; s.install(['ns-train', 'rgb_fixed']); "
            "s.install(['ns-render', 'interpolate'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "hint:" not in proc.stderr


def test_seed_enhance_existing_video_runs_from_the_repository_root():
    proc = subprocess.run([sys.executable, "enhance_existing_video.py", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, PYTHONPATH=""))
    assert proc.returncode == 0, proc.stderr
    assert "--use-ref" in proc.stdout and "--ref-images" in proc.stdout
