"""ns-difix-render and difix-trajectory on STOCK splatfacto / nerfacto runs (no retraining), CPU, tiny offline fixer.

One 10-iteration splatfacto run (and one 3-iteration nerfacto run) on 7 quarter-resolution fox views is trained per
session; the fixer is a tiny random-weight Difix, so the checks are about plumbing: both panels present, the fixed
panel differs from the plain one, frame counts and file layout.
"""
from __future__ import annotations

import json

import imageio.v2 as imageio
import imageio.v3 as iio
import numpy as np
import pytest

from difix_ns.render import testing as rt
from difix_ns.geometry.interpolation import num_trajectory_frames
from conftest import FOX

RENDER_DOWNSCALE = 4  # 270x480 quarter-res views -> 68x120 renders (the fixer needs >= 64 px)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    if not (FOX / "transforms.json").is_file():
        pytest.skip(f"fox scene not found at {FOX} (../shared/data/fox)")
    return tmp_path_factory.mktemp("render_cli")


@pytest.fixture(scope="session")
def env():
    return rt.cpu_env()


@pytest.fixture(scope="session")
def tiny_ref(tiny_difix_ref):
    return tiny_difix_ref


@pytest.fixture(scope="session")
def fox7(workdir):
    return rt.make_fox_subset(FOX, workdir / "fox7", stride=8)


@pytest.fixture(scope="session")
def stock_run(fox7, stock_splatfacto_run):
    """The shared stock splatfacto run (tests/conftest.py), trained on the same fox subset as ``fox7``."""
    return stock_splatfacto_run[2]


def _fixer_args(tiny_ref, batch_size=3):
    return ["--fixer.model-name", str(tiny_ref), "--fixer.dtype", "float32", "--fixer.device", "cpu",
            "--fixer.batch-size", str(batch_size)]


def _assert_two_panels(frame: np.ndarray, width: int):
    assert frame.shape[1] == 2 * width, frame.shape
    left, right = frame[:, :width].astype(int), frame[:, width:].astype(int)
    assert np.abs(left - right).mean() > 2.0, "rgb_fixed panel equals the rgb panel"


def test_interpolate_flag_cli_on_stock_splatfacto(stock_run, tiny_ref, env, workdir):
    out = workdir / "interp"
    rt.run(
        ["ns-difix-render", "interpolate", "--load-config", str(stock_run), "--pose-source", "train",
         "--interpolation-steps", "2", "--downscale-factor", str(RENDER_DOWNSCALE), "--output-format", "images",
         "--image-format", "png", "--rendered-output-names", "rgb", "rgb_fixed", "--output-path", str(out),
         *_fixer_args(tiny_ref)],
        env, cwd=workdir,
    )
    frames = sorted(out.glob("*.png"))
    assert len(frames) >= 6
    for path in frames[:3]:
        frame = iio.imread(path)
        # quarter-res fox views are portrait 270x480; ns-render --downscale-factor 4 -> about 68x120 per panel
        assert frame.shape[0] == 120 and frame.shape[1] % 2 == 0
        width = frame.shape[1] // 2
        assert abs(width / 120 - 270 / 480) < 0.05
        _assert_two_panels(frame, width)


def test_flag_cli_on_stock_nerfacto(fox7, tiny_ref, env, workdir):
    """A stock nerfacto run (3 iterations) post-fixed by the console script, in a fresh (offline) process."""
    config = rt.train_tiny_nerfacto(fox7, workdir / "outputs_nerfacto", iterations=3, env=env)
    out = workdir / "interp_nerfacto"
    rt.run(
        ["ns-difix-render", "interpolate", "--load-config", str(config), "--pose-source", "eval",
         "--interpolation-steps", "2", "--downscale-factor", str(RENDER_DOWNSCALE), "--output-format", "images",
         "--image-format", "png", "--rendered-output-names", "rgb", "rgb_fixed", "--output-path", str(out),
         *_fixer_args(tiny_ref)],
        env, cwd=workdir,
    )
    frames = sorted(out.glob("*.png"))
    assert frames, f"no frames in {out}"
    frame = iio.imread(frames[0])
    assert frame.shape[0] == 120
    _assert_two_panels(frame, frame.shape[1] // 2)


def test_dataset_and_camera_path_in_process(stock_run, tiny_ref, workdir, monkeypatch):
    from difix_ns.cli import render as cli
    from difix_ns.render import settings
    from difix_ns.render.postfix import DifixRenderHook

    batches, ahead = [], []  # frames per fixer call; whether the hook worked ahead at each call
    original_fix = DifixRenderHook._fix

    def counting_fix(self, images, refs, cameras=None):
        batches.append(images.shape[0])
        ahead.append(self.work_ahead)
        assert refs is not None and refs.shape[:2] == (images.shape[0], 1)  # one nearest-view reference per frame
        return original_fix(self, images, refs, cameras)

    monkeypatch.setattr(DifixRenderHook, "_fix", counting_fix)
    monkeypatch.chdir(workdir)
    try:
        out = workdir / "dataset"
        # (dataset's --downscale-factor picks the dataparser's images_<n> folder; the fox data here is images_4)
        cli.entrypoint(["dataset", "--load-config", str(stock_run), "--split", "train", "--output-path", str(out),
                        "--image-format", "png",
                        "--rendered-output-names", "rgb", "rgb_fixed", *_fixer_args(tiny_ref, batch_size=4)])
        plain = sorted((out / "train" / "rgb").glob("*.png"))
        fixed = sorted((out / "train" / "rgb_fixed").glob("*.png"))
        assert len(plain) >= 5 and [p.name for p in plain] == [p.name for p in fixed]
        # ns-render's dataset loop renders one image at a time; the planned dataloader lets them be fixed 4 at a time
        n = len(plain)
        assert batches == [4] * (n // 4) + ([n % 4] if n % 4 else []), batches
        assert all(ahead)  # working ahead by default
        batches.clear()
        ahead.clear()
        a, b = iio.imread(plain[0]), iio.imread(fixed[0])
        assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() > 2.0

        # camera path: three training poses of the run (dataparser frame), written as a viewer camera-path JSON
        transforms = json.loads((stock_run.parent / "dataparser_transforms.json").read_text())
        frames = json.loads((workdir / "fox7" / "transforms.json").read_text())["frames"][:3]
        tf = np.array(transforms["transform"])
        path = []
        for f in frames:
            c2w = tf @ np.array(f["transform_matrix"])
            c2w[:3, 3] *= transforms["scale"]
            path.append({"camera_to_world": np.vstack([c2w, [0, 0, 0, 1]]).flatten().tolist(), "fov": 40.0,
                         "aspect": 68 / 120})
        cam_json = workdir / "camera_path.json"
        cam_json.write_text(json.dumps({"render_height": 120, "render_width": 68, "seconds": 1.0,
                                        "camera_type": "perspective", "camera_path": path}))
        out_cp = workdir / "campath"
        cli.entrypoint(["camera-path", "--load-config", str(stock_run), "--camera-path-filename", str(cam_json),
                        "--output-format", "images", "--image-format", "png", "--output-path", str(out_cp),
                        "--rendered-output-names", "rgb", "rgb_fixed", "--no-work-ahead", *_fixer_args(tiny_ref)])
        shots = sorted(out_cp.glob("*.png"))
        assert len(shots) == 3
        assert batches == [3], batches  # --fixer.batch-size 3: the whole camera path in one fixer call
        assert ahead == [False]  # --no-work-ahead reached the hook
        for shot in shots:
            _assert_two_panels(iio.imread(shot), 68)
    finally:
        settings.enable_render_fix(None)


def test_no_postfix_rejects_rgb_fixed(stock_run):
    from difix_ns.cli import render as cli

    with pytest.raises(SystemExit, match="--no-postfix"):
        cli.entrypoint(["interpolate", "--load-config", str(stock_run), "--no-postfix",
                        "--rendered-output-names", "rgb", "rgb_fixed"])
    with pytest.raises(SystemExit, match="does not exist"):
        cli.entrypoint(["interpolate", "--load-config", str(stock_run.parent / "missing.yml")])


def test_trajectory_mp4_frame_count(stock_run, tiny_ref, env, workdir):
    video, frames_dir = workdir / "traj" / "fox.mp4", workdir / "traj" / "frames"
    n_interp = 3
    proc = rt.run(
        ["difix-trajectory", "--load-config", str(stock_run), "--n-interp", str(n_interp), "--fps", "12",
         "--downscale-factor", str(RENDER_DOWNSCALE), "--output-path", str(video), "--frames-dir", str(frames_dir),
         "--rendered-output-names", "rgb", "rgb_fixed", *_fixer_args(tiny_ref, batch_size=4)],
        env, cwd=workdir,
    )
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    n_train = summary["num_cameras"]
    expected = num_trajectory_frames(n_train, n_interp)
    assert expected == (n_train - 1) * n_interp + 1
    assert summary["frames"] == expected
    assert summary["fixer_calls"] == -(-expected // 4)  # frames are fixed in batches of --fixer.batch-size
    assert len(sorted(frames_dir.glob("*.png"))) == expected
    reader = imageio.get_reader(str(video), format="FFMPEG")
    try:
        assert reader.count_frames() == expected
        assert reader.get_meta_data()["fps"] == pytest.approx(12.0)
        first = reader.get_data(0)
    finally:
        reader.close()
    png = iio.imread(frames_dir / "00000.png")
    assert png.shape[1] % 2 == 0 and abs(png.shape[1] / 2 / png.shape[0] - 270 / 480) < 0.05  # two fox panels
    assert first.shape[:2] == (png.shape[0] + png.shape[0] % 2, png.shape[1])  # mp4 frames: even-padded PNGs
    _assert_two_panels(png, png.shape[1] // 2)


def test_reference_is_nearest_training_view_on_real_cameras(stock_run, monkeypatch):
    """On the run's own (dataparser-normalised) cameras, trajectory keyframes pick their training view as reference."""
    from nerfstudio.utils.eval_utils import eval_setup

    from difix_ns.render.runtime import prepare_runtime
    from difix_ns.render.postfix import install_render_fix
    from difix_ns.render.trajectory import trajectory_cameras

    monkeypatch.chdir(stock_run.parent)
    prepare_runtime()
    _, pipeline, _, _ = eval_setup(stock_run, test_mode="test")
    hook = install_render_fix(pipeline, enabled=False, viewer_controls=False)
    train = pipeline.datamanager.train_dataset
    n_interp = 3
    cams = trajectory_cameras(train.cameras, n_interp)
    picks = [hook.reference_index(cams[i : i + 1]) for i in range(cams.shape[0])]
    assert picks[::n_interp] == list(range(len(train)))  # a training pose's nearest training view is itself
    assert len(hook._ref_cache) == cams.shape[0]  # one cached choice per frame
    assert [hook.references.names[i] for i in picks[::n_interp]] == [p.name for p in train.image_filenames]


def test_trajectory_bad_fixer_model_is_one_clear_error(stock_run, workdir):
    from difix_ns.cli.trajectory import entrypoint

    video = workdir / "bad_fixer" / "t.mp4"
    with pytest.raises(SystemExit, match=r"--fixer.model-name .*no-model: cannot load the Difix model"):
        entrypoint(["--load-config", str(stock_run), "--output-path", str(video), "--downscale-factor",
                    str(RENDER_DOWNSCALE), "--fixer.model-name", str(workdir / "no-model"), "--fixer.device", "cpu"])
    assert not video.exists()
