"""Unit tests: pose shifting (scene-relative steps, arrival), nearest-view choice, the novel-view pool."""

from __future__ import annotations

import math

import pytest
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType

from difix_ns.nerfstudio.pool import NovelViewPool
from difix_ns.geometry.poses import nearest_views, pose_distance, rotation_angle, scene_extent, shift_poses


def rot_z(deg: float) -> torch.Tensor:
    a = math.radians(deg)
    return torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])


def pose(deg: float, t) -> torch.Tensor:
    return torch.cat([rot_z(deg), torch.tensor(t, dtype=torch.float32)[:, None]], dim=1)  # [3, 4]


def test_scene_extent_is_camera_radius():
    poses = torch.stack([pose(0, [x, 0, 0]) for x in (-2.0, 0.0, 2.0)])
    assert scene_extent(poses) == pytest.approx(2.0)
    assert scene_extent(poses[:1], fallback=3.0) == 3.0


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_shift_is_a_fraction_of_the_scene_extent(scale):
    """The same step_fraction gives the same relative motion whatever the world units (scale invariance)."""
    start = pose(0, [0.0, 0, 0])[None] * torch.tensor([1, 1, 1, scale])
    target = pose(0, [1.0, 0, 0])[None] * torch.tensor([1, 1, 1, scale])
    extent = 2.0 * scale
    out = shift_poses(start, target, step_fraction=0.1, extent=extent)
    assert out.poses[0, 0, 3].item() == pytest.approx(0.2 * scale, rel=1e-5)  # 0.1 x extent
    assert not out.arrived.any()


def test_shift_arrives_after_expected_rounds_and_stays():
    start = pose(0, [0.0, 0, 0])[None]
    target = pose(90, [1.0, 0, 0])[None]
    current, rounds = start, 0
    while True:
        rounds += 1
        out = shift_poses(current, target, step_fraction=0.3, extent=1.0)
        # translation and rotation progress by the same fraction of the path
        done_t = out.poses[0, 0, 3].item()
        done_r = rotation_angle(start[0, :, :3], out.poses[0, :, :3]).item() / math.radians(90)
        assert done_r == pytest.approx(min(done_t, 1.0), abs=1e-5)
        current = out.poses
        if out.arrived.all():
            break
        assert rounds < 10
    assert rounds == 4  # ceil(1.0 / 0.3)
    assert torch.allclose(current, target, atol=1e-6)
    again = shift_poses(current, target, 0.3, 1.0)
    assert again.arrived.all() and torch.allclose(again.poses, target, atol=1e-6)


def test_rotation_cap_limits_turns_in_place():
    start, target = pose(0, [0.0, 0, 0])[None], pose(120, [0.0, 0, 0])[None]
    out = shift_poses(start, target, step_fraction=0.5, extent=1.0, max_rotation_step=math.radians(30))
    assert rotation_angle(start[0, :, :3], out.poses[0, :, :3]).item() == pytest.approx(math.radians(30), abs=1e-5)
    assert torch.allclose(out.poses[0, :, 3], torch.zeros(3))
    rotation = out.poses[0, :, :3]
    assert torch.allclose(rotation @ rotation.T, torch.eye(3), atol=1e-5)  # still a rotation


def test_shift_handles_half_turn():
    start, target = pose(0, [0.0, 0, 0])[None], pose(180, [1.0, 0, 0])[None]
    out = shift_poses(start, target, step_fraction=0.5, extent=1.0)
    assert rotation_angle(start[0, :, :3], out.poses[0, :, :3]).item() == pytest.approx(math.pi / 2, abs=1e-4)


def test_nearest_view_uses_translation_and_rotation():
    train = torch.stack([pose(0, [0.0, 0, 0]), pose(90, [0.1, 0, 0]), pose(0, [1.0, 0, 0])])
    # closest in translation is train[1], but it is turned by 90 degrees; train[0] is 0.15 away with no turn
    query = pose(0, [0.15, 0, 0])[None]
    assert nearest_views(query, train, extent=1.0).tolist() == [0]
    # with rotation ignored the translation-nearest wins
    assert nearest_views(query, train, extent=1.0, rotation_weight=0.0).tolist() == [1]
    d = pose_distance(query, train, extent=1.0)
    assert d[0, 1].item() == pytest.approx(0.05 + math.pi / 2, abs=1e-5)


def _cams(n: int, h: int = 8, w: int = 12) -> Cameras:
    return Cameras(
        camera_to_worlds=torch.stack([pose(0, [float(i), 0, 0]) for i in range(n)]),
        fx=10.0,
        fy=10.0,
        cx=w / 2,
        cy=h / 2,
        width=w,
        height=h,
        camera_type=CameraType.PERSPECTIVE,
    )


def _round(n: int, value: int, h: int = 8, w: int = 12):
    imgs = [torch.full((h, w, 3), value, dtype=torch.uint8) for _ in range(n)]
    masks = [torch.zeros(h, w, 1, dtype=torch.bool) for _ in range(n)]
    for m in masks:
        m[2:4, 3:6] = True
    return imgs, masks


def test_pool_replace_and_accumulate_cap():
    pool = NovelViewPool("replace")
    for step in range(5):
        pool.update(_cams(3), *_round(3, step), step=step)
    assert len(pool) == 3 and pool.round_steps == [4, 4, 4] and int(pool.images[0][0, 0, 0]) == 4
    acc = NovelViewPool("accumulate", max_views=5)
    for step in range(4):
        acc.update(_cams(3), *_round(3, step), step=step)
    assert len(acc) == 5 and acc.round_steps == [2, 2, 3, 3, 3] and len(acc.cameras) == 5
    assert acc.cameras.metadata is None  # no cam_idx: per-image parameters never see pool views


def test_pool_samples_only_masked_pixels():
    pool = NovelViewPool("replace")
    pool.update(_cams(2), *_round(2, 7), step=1)
    v, y, x = pool.sample_pixels(500, torch.Generator().manual_seed(0))
    assert v.shape == (500,) and set(v.tolist()) == {0, 1}
    assert ((y >= 2) & (y < 4) & (x >= 3) & (x < 6)).all()
    assert torch.allclose(pool.gather_rgb(v, y, x), torch.full((500, 3), 7 / 255))


def test_pool_rejects_mismatched_images():
    pool = NovelViewPool("replace")
    imgs, masks = _round(2, 1)
    with pytest.raises(ValueError, match="pool image 0"):
        pool.update(_cams(2, h=9), imgs, masks, step=0)
    with pytest.raises(ValueError, match="pool mode"):
        NovelViewPool("grow")  # type: ignore[arg-type]


def test_fix_schedule_explicit_and_every_n():
    from types import SimpleNamespace

    from difix_ns.nerfstudio.pipeline import Difix3DPipeline, Difix3DPipelineConfig

    def plan(cfg, a, b):
        return Difix3DPipeline.planned_fix_steps(SimpleNamespace(config=cfg), a, b)

    every = Difix3DPipelineConfig(fix_every=2000)
    assert plan(every, 0, 9000) == (2000, 4000, 6000, 8000)  # never at step 0: the model is untrained
    assert plan(every, 30000, 36000) == (30000, 32000, 34000)  # resumed from a step-29999 checkpoint: fix at once
    explicit = Difix3DPipelineConfig(fix_steps=(6000, 3000, 3000, 9000), fix_every=2000)
    assert plan(explicit, 0, 30000) == (3000, 6000, 9000)
    assert plan(explicit, 4001, 30000) == (6000, 9000)  # rounds before the resume step are not repeated
    assert plan(Difix3DPipelineConfig(fix_every=0), 0, 10000) == ()


def test_nerfacto_pool_view_mode_leaves_per_image_parameters_alone():
    """Pool rays get the mean appearance embedding (gradient spread over all images, not image 0's row) and no
    camera-optimizer correction; ordinary rays of image 0 touch only row 0 and camera 0's pose adjustment."""
    from nerfstudio.cameras.rays import RayBundle
    from nerfstudio.data.scene_box import SceneBox

    from difix_ns.metrics import install_torchvision_offline_fallback
    from difix_ns.nerfstudio.models import Difix3DNerfactoModelConfig

    install_torchvision_offline_fallback()
    torch.manual_seed(0)
    config = Difix3DNerfactoModelConfig(
        num_levels=2,
        max_res=32,
        log2_hashmap_size=10,
        hidden_dim=8,
        hidden_dim_color=8,
        num_nerf_samples_per_ray=8,
        num_proposal_samples_per_ray=(8, 8),
        average_init_density=1.0,
    )
    model = config.setup(
        scene_box=SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=3, metadata={}, device="cpu"
    )
    model.train()
    with torch.no_grad():
        model.camera_optimizer.pose_adjustment.normal_(0, 0.01)  # non-zero so that it has an effect
    n = 64
    dirs = torch.nn.functional.normalize(torch.randn(n, 3), dim=-1)

    def grads(pool: bool):
        model.zero_grad(set_to_none=True)
        bundle = RayBundle(
            origins=torch.zeros(n, 3),
            directions=dirs.clone(),
            pixel_area=torch.full((n, 1), 1e-4),
            camera_indices=torch.zeros(n, 1, dtype=torch.long),
        )
        with model.pool_view_mode(pool):
            model(bundle)["rgb"].sum().backward()
        emb = model.field.embedding_appearance.embedding.weight.grad
        cam = model.camera_optimizer.pose_adjustment.grad
        return emb, cam

    emb, cam = grads(pool=False)
    assert emb[0].abs().sum() > 0 and emb[1:].abs().sum() == 0
    assert cam is not None and cam[0].abs().sum() > 0
    emb, cam = grads(pool=True)
    assert torch.allclose(emb[0], emb[1]) and torch.allclose(emb[1], emb[2]) and emb.abs().sum() > 0
    assert cam is None or cam.abs().sum() == 0
    assert model.field.training and not model.camera_optimizer.skip_ray_bundles  # restored after the context
