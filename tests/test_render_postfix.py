"""Difix3D+ render hook (rgb_fixed), pose maths and process settings: fast CPU tests with a tiny offline fixer."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from difix_ns.geometry.interpolation import (
    interpolate_poses,
    matrix_to_quaternion,
    num_trajectory_frames,
    quaternion_to_matrix,
)
from difix_ns.geometry.poses import nearest_views as nearest_view
from difix_ns.geometry.poses import rotation_angle
from difix_ns.render import settings


def _rot_y(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _pose(angle: float, x: float) -> torch.Tensor:
    return torch.cat([_rot_y(angle), torch.tensor([[x], [0.0], [0.0]])], dim=1)


@pytest.fixture(autouse=True)
def _reset_settings(monkeypatch):
    monkeypatch.delenv(settings.ENV_VAR, raising=False)
    settings.enable_render_fix(None)
    yield
    settings.enable_render_fix(None)


# ---------------------------------------------------------------- poses


def test_quaternion_roundtrip_and_slerp_midpoint():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(32, 4), dim=-1)
    rot = quaternion_to_matrix(q)
    assert torch.allclose(quaternion_to_matrix(matrix_to_quaternion(rot)), rot, atol=1e-5)
    poses = torch.stack([_pose(0.0, 0.0), _pose(1.0, 2.0)])
    frames, where = interpolate_poses(poses, n_interp=4, translation="linear")
    # t = 0.5 sits at frame 2: half the rotation angle and half the translation
    assert torch.allclose(frames[2, :3, :3], _rot_y(0.5), atol=1e-5)
    assert torch.allclose(frames[2, :, 3], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)
    assert where.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("translation", ["linear", "spline"])
def test_trajectory_frame_count_and_keyframes(translation):
    poses = torch.stack([_pose(0.3 * i, float(i) ** 1.5) for i in range(5)])
    frames, _ = interpolate_poses(poses, n_interp=7, translation=translation)
    assert frames.shape == (num_trajectory_frames(5, 7), 3, 4) == (29, 3, 4)
    assert torch.allclose(frames[::7], poses, atol=1e-5)  # every input camera is a frame
    # orthonormal rotations throughout
    eye = torch.eye(3).expand(frames.shape[0], 3, 3)
    assert torch.allclose(frames[:, :3, :3] @ frames[:, :3, :3].transpose(1, 2), eye, atol=1e-5)
    with pytest.raises(ValueError, match="at least 2 poses"):
        interpolate_poses(poses[:1], 3)
    with pytest.raises(ValueError, match="n_interp"):
        interpolate_poses(poses, 0)


def test_nearest_view_uses_rotation_and_translation():
    train = torch.stack([_pose(0.0, 0.0), _pose(math.pi / 2, 0.0), _pose(0.0, 4.0)])
    # same place as camera 0/1 but looking like camera 1 -> rotation decides
    assert nearest_view(_pose(1.4, 0.1)[None], train).item() == 1
    # near camera 2 in position, same orientation -> translation decides
    assert nearest_view(_pose(0.05, 3.6)[None], train).item() == 2
    assert rotation_angle(_rot_y(0.2), _rot_y(0.7)).item() == pytest.approx(0.5, abs=1e-5)


# ---------------------------------------------------------------- settings


def test_settings_sources(monkeypatch):
    assert not settings.render_fix_enabled()
    assert settings.requested_on_command_line(["interpolate", "--rendered-output-names", "rgb", "rgb_fixed"])
    assert settings.requested_on_command_line(["--rendered-output-names=rgb_fixed"])
    assert not settings.requested_on_command_line(["--output-path", "renders/rgb_fixed_video.mp4"])
    monkeypatch.setenv(settings.ENV_VAR, "1")
    assert settings.render_fix_enabled()
    settings.enable_render_fix(False)
    assert not settings.render_fix_enabled()  # an explicit switch beats the environment


# ---------------------------------------------------------------- the hook on a fake model


class _FakeCameras:
    """Just enough of nerfstudio's Cameras for the hook: slicing, .to(), pose and intrinsics tensors."""

    def __init__(self, c2w: torch.Tensor, size: int = 64):
        n = c2w.shape[0]
        self.camera_to_worlds = c2w
        self.fx = torch.full((n, 1), 50.0)
        self.fy = torch.full((n, 1), 50.0)
        self.cx = torch.full((n, 1), size / 2)
        self.cy = torch.full((n, 1), size / 2)
        self.width = torch.full((n, 1), size)
        self.height = torch.full((n, 1), size)
        self.shape = (n,)

    def __getitem__(self, item):
        return _FakeCameras(self.camera_to_worlds[item], int(self.width[0, 0]))

    def to(self, device):
        return self


class _FakeModel:
    def __init__(self):
        self.renders = 0

    def get_outputs_for_camera(self, camera, obb_box=None):
        self.renders += 1
        x = float(camera.camera_to_worlds[0, 0, 3])
        size = int(camera.width[0, 0])
        ramp = torch.linspace(0, 1, size)
        rgb = torch.stack([ramp[None, :].expand(size, size), ramp[:, None].expand(size, size),
                           torch.full((size, size), (x % 5) / 5)], dim=-1)
        return {"rgb": rgb, "depth": torch.ones(size, size, 1)}


@pytest.fixture(scope="module")
def tiny_fixer_config(tiny_difix_ref):
    from difix_ns.fixer import DifixFixerConfig

    return DifixFixerConfig(model_name=str(tiny_difix_ref), device="cpu", dtype="float32", batch_size=2)


def _hook(tiny_fixer_config, n_train: int = 3):
    from difix_ns.render.postfix import DifixRenderHook, ReferenceViews

    loaded = []
    train_c2w = torch.stack([_pose(0.0, float(2 * i)) for i in range(n_train)])

    def load(i):
        loaded.append(i)
        return torch.full((48, 40, 3), i / n_train)

    refs = ReferenceViews(c2w=train_c2w, names=[f"train_{i}.png" for i in range(n_train)], load=load)
    model = _FakeModel()
    return model, DifixRenderHook(model, refs, fixer_config=tiny_fixer_config), loaded


def test_hook_off_by_default_costs_nothing(tiny_fixer_config):
    model, hook, loaded = _hook(tiny_fixer_config)
    cams = _FakeCameras(torch.stack([_pose(0.0, 0.5)]))
    out = hook.get_outputs_for_camera(cams[0:1])
    assert "rgb_fixed" not in out and hook._fixer is None and hook.frames_fixed == 0 and not loaded
    hook.enabled = True
    with hook.disabled():  # e.g. a training fix round while the viewer box is ticked
        assert "rgb_fixed" not in hook.get_outputs_for_camera(cams[0:1])
    assert hook.enabled is True


def test_hook_batches_planned_frames_and_caches_references(tiny_fixer_config):
    model, hook, loaded = _hook(tiny_fixer_config)
    hook.enabled = True
    cams = _FakeCameras(torch.stack([_pose(0.0, 0.2 * i) for i in range(5)]) + 0.0)
    hook.plan(cams)
    outs = [hook.get_outputs_for_camera(cams[i : i + 1]) for i in range(5)]
    assert model.renders == 5  # prefetched frames are not rendered twice
    assert hook.fix_calls == 3  # 5 frames, batch size 2 -> 2 + 2 + 1
    for out in outs:
        assert out["rgb_fixed"].shape == out["rgb"].shape == (64, 64, 3)
        assert 0.0 <= float(out["rgb_fixed"].min()) and float(out["rgb_fixed"].max()) <= 1.0
        assert not torch.allclose(out["rgb_fixed"], out["rgb"])  # random-weight fixer: changes the image
    # the 5 frames have x = 0..0.8 -> nearest training camera 0 (x=0) for all; its image was loaded once
    assert hook.last_reference == 0 and loaded == [0]
    # frames 0 and 4 see different renders, so their fixed outputs differ
    assert not torch.allclose(outs[0]["rgb_fixed"], outs[4]["rgb_fixed"])
    # reference choice is cached per frame
    assert len(hook._ref_cache) == 5


def test_hook_with_a_factory_built_fixer_batches_by_its_batch_size(tiny_fixer_config):
    """A hook given only a fixer factory (as the viewer and bench_postfix_render.py set it up) plans its first batch
    with the fixer's own batch size, not a default: on a GPU each new batch size compiles the fast path once, and the
    2026-12-05 H100 batch-8 ns-render row stalled ~100 s on exactly that second compile."""
    from dataclasses import replace

    from difix_ns.fixer import DifixFixer

    model, hook, _ = _hook(tiny_fixer_config)
    built, frames_per_call = [], []

    def factory():
        fixer = DifixFixer(replace(tiny_fixer_config, batch_size=3))
        fix = fixer.fix
        fixer.fix = lambda images, *args, **kwargs: frames_per_call.append(images.shape[0]) or fix(images, *args,
                                                                                                     **kwargs)
        built.append(fixer)
        return fixer

    hook.fixer_config = None
    hook.fixer_factory = factory
    hook.enabled = True
    cams = _FakeCameras(torch.stack([_pose(0.0, 0.2 * i) for i in range(6)]) + 0.0)
    hook.plan(cams)
    for i in range(6):
        hook.get_outputs_for_camera(cams[i : i + 1])
    assert frames_per_call == [3, 3] and len(built) == 1


def _logged_hook(tiny_fixer_config, fixer, work_ahead: bool):
    """A hook (sharing ``fixer``) whose renders, fixer calls and reference loads are logged in one sequence."""
    model, hook, _ = _hook(tiny_fixer_config)
    hook.work_ahead = work_ahead
    log = []
    render = hook.original
    hook.original = lambda cam, obb_box=None: log.append(("render", round(float(cam.camera_to_worlds[0, 0, 3]), 1))) \
        or render(cam, obb_box=obb_box)
    load = hook.references.load
    hook.references.load = lambda i: log.append(("load", i)) or load(i)
    fix = fixer.fix
    logged = copy.copy(fixer)
    logged.fix = lambda images, *a, **k: log.append(("fix", images.shape[0])) or fix(images, *a, **k)
    hook.fixer_config, hook.fixer_factory = None, lambda: logged
    hook.enabled = True
    return model, hook, log


def test_hook_works_one_batch_ahead_with_the_same_outputs(tiny_fixer_config):
    """With a plan, the frame handed out is from a batch whose successor is already rendered and queued for fixing
    (on a GPU its fix runs on the fixer's stream while the caller uses the frames). Each frame is still rendered and
    fixed once, every output is the same as without working ahead, and a jump in the plan skips nothing it needs."""
    from difix_ns.fixer import DifixFixer

    xs = [0.0, 0.2, 2.0, 2.2, 4.0]  # nearest training cameras (x = 0, 2, 4): 0, 0, 1, 1, 2
    cams = _FakeCameras(torch.stack([_pose(0.0, x) for x in xs]) + 0.0)
    fixer, results = DifixFixer(tiny_fixer_config), {}
    for work_ahead in (False, True):
        model, hook, log = _logged_hook(tiny_fixer_config, fixer, work_ahead)
        hook.plan(cams)
        first = hook.get_outputs_for_camera(cams[0:1])
        if work_ahead:  # frames 2 and 3 rendered, their reference (training view 1) loaded and fixed, in advance
            assert log == [("render", 0.0), ("render", 0.2), ("load", 0), ("fix", 2),
                           ("render", 2.0), ("render", 2.2), ("load", 1), ("fix", 2)]
            assert hook.frames_fixed_ahead == 2 and hook.fix_calls == 2
        else:
            assert log == [("render", 0.0), ("render", 0.2), ("load", 0), ("fix", 2)]
        outs = [first] + [hook.get_outputs_for_camera(cams[i : i + 1]) for i in range(1, 5)]
        assert model.renders == 5 and hook.fix_calls == 3 and hook._prefetched == {}
        assert [e for e in log if e[0] == "render"] == [("render", x) for x in xs]
        assert sorted(i for kind, i in log if kind == "load") == [0, 1, 2]
        results[work_ahead] = outs
    assert hook.frames_fixed_ahead == 3
    for plain, ahead in zip(results[False], results[True]):
        assert torch.equal(plain["rgb_fixed"], ahead["rgb_fixed"]) and torch.equal(plain["rgb"], ahead["rgb"])

    # a caller that jumps from frame 0 to frame 4: frame 4 is rendered and fixed on request; what was done ahead
    # for the skipped frames waits in the prefetch cache until the plan ends
    model, hook, log = _logged_hook(tiny_fixer_config, fixer, True)
    hook.plan(cams)
    hook.get_outputs_for_camera(cams[0:1])
    out = hook.get_outputs_for_camera(cams[4:5])
    assert torch.equal(out["rgb_fixed"], results[False][4]["rgb_fixed"])
    assert [e[1] for e in log if e[0] == "fix"] == [2, 2, 1] and len(hook._prefetched) == 3
    hook.plan(None)
    assert hook._prefetched == {}


class _RawReferencesOnly:
    """A fixer seen without ``caches_references``/``encode_references``: the hook hands it raw reference views."""

    def __init__(self, fixer):
        self._fixer, self.config, self.uses_references = fixer, fixer.config, fixer.uses_references

    def fix(self, *args, **kwargs):
        return self._fixer.fix(*args, **kwargs)


def test_hook_encodes_references_before_the_fix_with_the_same_frames(tiny_fixer_config):
    """A fixer that caches reference latents gets each batch's references encoded before the fix
    (``DifixFixer.encode_references``; on a GPU the host's wait for their cache keys then happens on the caller's
    stream, not behind the fix running on the fixer's stream), and the frames are those the raw references give."""
    from dataclasses import replace

    from difix_ns.fixer import DifixFixer
    from difix_ns.fixers.reference_cache import EncodedReferences

    config = replace(tiny_fixer_config, cache_references=True)
    xs = [0.0, 0.2, 2.0, 2.2, 4.0]  # references: training views 0, 0, 1, 1, 2
    cams = _FakeCameras(torch.stack([_pose(0.0, x) for x in xs]) + 0.0)
    fixer = DifixFixer(config)
    frames = {}
    for name, seen_as in (("encoded", fixer), ("raw", _RawReferencesOnly(fixer))):
        _, hook, _ = _hook(config)
        passed = []
        fix = seen_as.fix
        seen_as.fix = lambda images, refs=None, cameras=None: passed.append(type(refs)) or fix(images, refs, cameras)
        hook.fixer_config, hook.fixer_factory, hook.enabled = None, lambda: seen_as, True
        hook.plan(cams)
        frames[name] = [hook.get_outputs_for_camera(cams[i : i + 1])["rgb_fixed"] for i in range(5)]
        del seen_as.fix
        expected = EncodedReferences if name == "encoded" else torch.Tensor
        assert passed == [expected] * 3 and hook.fix_calls == 3
    assert all(torch.equal(a, b) for a, b in zip(frames["encoded"], frames["raw"]))
    assert fixer.reference_cache.misses == 3  # three training views, each encoded once for both hooks


def test_hook_keeps_each_reference_latent_by_training_view(tiny_fixer_config):
    """One frame at a time (the viewer's way): a reference seen before is neither encoded nor hashed again, so on
    a GPU the host does not wait for the frame's render before queueing its fix. The frames are the ones raw
    references give; clearing the fixer's reference cache clears the hook's latents, and another fixer gets its
    own."""
    from dataclasses import replace

    from difix_ns.fixer import DifixFixer

    config = replace(tiny_fixer_config, cache_references=True)
    xs = [0.0, 0.3, 2.1, 0.1, 2.2]  # references: training views 0, 0, 1, 0, 1
    cams = _FakeCameras(torch.stack([_pose(0.0, x) for x in xs]) + 0.0)
    fixer = DifixFixer(config)
    encoded, hashed = [], []
    encode, fingerprints = fixer.encode_references, fixer.reference_cache.fingerprints
    fixer.encode_references = lambda refs, size: encoded.append(refs.shape[0]) or encode(refs, size)
    fixer.reference_cache.fingerprints = lambda views: hashed.append(views.shape[0]) or fingerprints(views)
    _, hook, loaded = _hook(config)
    hook.fixer_config, hook.fixer_factory, hook.enabled = None, lambda: fixer, True
    frames = [hook.get_outputs_for_camera(cams[i : i + 1])["rgb_fixed"] for i in range(5)]
    assert encoded == [1, 1] and sum(hashed) == 2 and loaded == [0, 1]  # views 0 and 1, once each
    assert hook.last_reference == 1 and hook.fix_calls == 5

    _, raw_hook, _ = _hook(config)
    raw = _RawReferencesOnly(DifixFixer.from_pipeline(fixer.pipeline, model_name="tiny", cache_references=True))
    raw_hook.fixer_config, raw_hook.fixer_factory, raw_hook.enabled = None, lambda: raw, True
    expected = [raw_hook.get_outputs_for_camera(cams[i : i + 1])["rgb_fixed"] for i in range(5)]
    assert all(torch.equal(a, b) for a, b in zip(frames, expected))

    fixer.clear_reference_cache()  # as after editing the weights in place: the hook's latents go too
    hook.get_outputs_for_camera(cams[0:1])
    assert encoded == [1, 1, 1]

    other = DifixFixer.from_pipeline(fixer.pipeline, model_name="tiny", cache_references=True)
    other_encoded = []
    other_encode = other.encode_references
    other.encode_references = lambda refs, size: other_encoded.append(refs.shape[0]) or other_encode(refs, size)
    hook.fixer_factory = lambda: other
    hook.release_fixer()
    hook.get_outputs_for_camera(cams[0:1])
    assert other_encoded == [1] and encoded == [1, 1, 1]


def test_hook_unplanned_small_frames_are_fixed_one_by_one(tiny_fixer_config):
    model, hook, _ = _hook(tiny_fixer_config)
    settings.enable_render_fix(True)  # process-level switch, as ns-difix-render does
    cam = _FakeCameras(torch.stack([_pose(0.0, 3.9)]), size=40)  # below the fixer's 64 px minimum
    out = hook.get_outputs_for_camera(cam[0:1])
    assert out["rgb_fixed"].shape == (40, 40, 3)
    assert hook.last_reference == 2 and hook.fix_calls == 1


# ---------------------------------------------------------------- viewer checkbox logic (fake viewer objects)


class _Dropdown:
    def __init__(self, value, options):
        self.value, self.options = value, list(options)

    def set_options(self, options):
        self.options = list(options)
        if self.value not in self.options:
            self.value = self.options[0]


class _Panel:
    def __init__(self, split: bool):
        keys = ["rgb", "depth", "accumulation", "background", "gl_z_buf_depth"]
        self._output_render = _Dropdown("rgb", keys)
        self._split_output_render = _Dropdown("gl_z_buf_depth", keys)
        self.split = split

    def update_output_options(self, options):  # same behaviour as nerfstudio's ControlPanel
        self._output_render.set_options(options)
        self._split_output_render.set_options(options)
        self._split_output_render.value = options[-1]

    def update_control_panel(self):
        pass


@pytest.mark.parametrize("split", [False, True])
def test_viewer_checkbox_switches_output_and_split(split):
    from types import SimpleNamespace

    from difix_ns.render.viewer import DifixViewerControls

    hook = SimpleNamespace(references=None)
    controls = DifixViewerControls(hook, pipeline=None)
    panel = _Panel(split)
    machine = SimpleNamespace(output_keys=set(panel._output_render.options))
    controls.viewer_handle.viewer = SimpleNamespace(control_panel=panel, render_statemachines={0: machine})

    controls.fix_render.value = True
    assert hook.viewer_enabled() is True
    controls._on_toggle(controls.fix_render)
    assert "rgb_fixed" in panel._output_render.options and "rgb_fixed" in machine.output_keys
    if split:  # before/after wipe: rgb | rgb_fixed
        assert (panel._output_render.value, panel._split_output_render.value) == ("rgb", "rgb_fixed")
    else:
        assert panel._output_render.value == "rgb_fixed"

    controls.fix_render.value = False
    controls._on_toggle(controls.fix_render)
    assert panel._output_render.value == "rgb" and "rgb_fixed" not in panel._output_render.options
    assert "rgb_fixed" not in machine.output_keys and not hook.viewer_enabled()
