"""STOCK ``ns-render interpolate|dataset|camera-path --rendered-output-names rgb rgb_fixed`` on a difix3d-splatfacto
run (CPU, tiny random-weight fixer): both panels / both folders are written. ``interpolate`` runs as the console
script (a subprocess); ``dataset`` and ``camera-path`` call the same console-script function in-process (its
``sys.argv``, tyro parsing and ``main``), sparing two process starts of several seconds each (the README's CPU test
runs ``ns-render dataset`` as a console script). Also the viewer's novel-view pool source (the run's persisted fix
round) and its frustum drawing.

Requires the plugin pipeline to install the render hook (``install_render_fix`` at the end of
``Difix3DPipeline.__init__``; see docs/difix3d_plus.md).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from difix_ns.render import testing as rt


@pytest.fixture(scope="module")
def plugin_run(difix3d_splatfacto_run):
    """The shared difix3d-splatfacto run (tests/conftest.py): 6 iterations, one fix round at step 3."""
    work, env, config, _ = difix3d_splatfacto_run
    return work, env, config


def _two_panels(path: Path) -> None:
    frame = iio.imread(path)
    assert frame.shape[1] % 2 == 0
    w = frame.shape[1] // 2
    assert abs(w / frame.shape[0] - 270 / 480) < 0.05, frame.shape  # portrait fox panels
    assert np.abs(frame[:, :w].astype(int) - frame[:, w:].astype(int)).mean() > 2.0


def _ns_render_in_process(monkeypatch, args: list) -> None:
    """``ns-render ARGS`` in this process: the console script's own function, ``sys.argv`` as the shell sets it
    (the render hook reads ``rgb_fixed`` from the command line) and the process-level render switch as a fresh
    process has it (in-process tools of other tests, e.g. difix-trajectory, set it)."""
    from nerfstudio.scripts.render import entrypoint

    from difix_ns.render import settings

    monkeypatch.setattr(sys, "argv", ["ns-render", *args])
    monkeypatch.setattr(settings, "_enabled", None)
    monkeypatch.setattr(settings, "_fixer_config", None)
    entrypoint()


def test_stock_ns_render_outputs_rgb_fixed(plugin_run, monkeypatch):
    work, env, config = plugin_run
    common = ["--load-config", str(config), "--rendered-output-names", "rgb", "rgb_fixed", "--image-format", "png"]

    rt.run(["ns-render", "interpolate", *common, "--pose-source", "train", "--interpolation-steps", "1",
            "--downscale-factor", "4", "--output-format", "images", "--output-path", str(work / "interp")], env, work)
    frames = sorted((work / "interp").glob("*.png"))
    assert frames
    _two_panels(frames[0])

    monkeypatch.chdir(work)
    monkeypatch.setenv("PATH", env["PATH"])  # the ffmpeg that ns-render's camera-path checks for (cpu_env)
    monkeypatch.delenv("DIFIX_RENDER_FIX", raising=False)  # as in the subprocesses' cpu_env
    # (no --downscale-factor for dataset: it would select the dataparser's images_<n> folder)
    _ns_render_in_process(monkeypatch, ["dataset", *common, "--split", "test", "--output-path", str(work / "dataset")])
    plain = sorted((work / "dataset" / "test" / "rgb").glob("*.png"))
    fixed = sorted((work / "dataset" / "test" / "rgb_fixed").glob("*.png"))
    assert plain and [p.name for p in plain] == [p.name for p in fixed]

    rounds = sorted((config.parent / "difix_rounds").glob("step_*/poses.json"))
    assert rounds, "the difix3d run persisted no fix round"
    views = json.loads(rounds[-1].read_text())["views"][:2]
    path = [{"camera_to_world": np.vstack([np.array(v["camera_to_world"])[:3], [0, 0, 0, 1]]).flatten().tolist(),
             "fov": 45.0, "aspect": 68 / 120} for v in views]
    cam_json = work / "camera_path.json"
    cam_json.write_text(json.dumps({"render_height": 120, "render_width": 68, "seconds": 1.0,
                                    "camera_type": "perspective", "camera_path": path}))
    _ns_render_in_process(monkeypatch, ["camera-path", *common, "--camera-path-filename", str(cam_json),
                                        "--output-format", "images", "--output-path", str(work / "campath")])
    shots = sorted((work / "campath").glob("*.png"))
    assert len(shots) == len(path)
    _two_panels(shots[0])


class _FakeScene:
    def __init__(self):
        self.frustums = []

    def add_camera_frustum(self, name, **kwargs):
        self.frustums.append((name, kwargs))
        return self


class _FakeServer:
    def __init__(self):
        self.scene = _FakeScene()


def test_pool_round_is_drawn_as_frustums(plugin_run):
    from difix_ns.nerfstudio.fix_round import load_latest_round
    from difix_ns.render.viewer import POOL_NODE, draw_camera_frustums

    _, _, config = plugin_run
    latest = load_latest_round(config.parent / "difix_rounds")  # the viewer's reader: the format-checked one
    cameras, images, step = latest.cameras, latest.fixed, latest.step
    assert step == 3 and cameras.shape[0] == len(images) > 0
    assert images[0].dtype.is_floating_point is False and images[0].shape[-1] == 3
    server = _FakeServer()
    draw_camera_frustums(server, POOL_NODE, cameras, images, scale=0.1, color=(40, 200, 255))
    assert [n for n, _ in server.scene.frustums] == [f"{POOL_NODE}/view_{i:04d}" for i in range(len(images))]
    image = server.scene.frustums[0][1]["image"]
    assert image.shape[0] == 100 and image.dtype == np.uint8
    assert load_latest_round(config.parent / "no_such_dir") is None
