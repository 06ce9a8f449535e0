"""One reference-view provider: a fix round (training) and ``rgb_fixed`` (render time) pick the same training view
for the same camera, with the run's ``reference_rotation_weight``. Stand-in pipeline, no training run."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType

from difix_ns.nerfstudio.fix_strategy import NovelViewFixStrategy
from difix_ns.nerfstudio.pipeline import Difix3DPipeline, Difix3DPipelineConfig
from difix_ns.render.postfix import install_render_fix


def _pose(deg: float, x: float, z: float = 0.0) -> torch.Tensor:
    a = math.radians(deg)
    rot = torch.tensor([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])
    return torch.cat([rot, torch.tensor([[x], [0.0], [z]])], dim=1)


def _cameras(c2w: torch.Tensor) -> Cameras:
    return Cameras(camera_to_worlds=c2w, fx=20.0, fy=20.0, cx=12.0, cy=8.0, width=24, height=16,
                   camera_type=CameraType.PERSPECTIVE)


class _Dataset:
    def __init__(self, c2w: torch.Tensor):
        self.cameras = _cameras(c2w)
        self.image_filenames = [Path(f"train_{i}.png") for i in range(c2w.shape[0])]

    def __len__(self) -> int:
        return len(self.image_filenames)

    def get_image_float32(self, index: int) -> torch.Tensor:
        return torch.full((16, 24, 3), index / len(self))


class _DataManager:
    test_mode = "val"

    def __init__(self, c2w: torch.Tensor):
        self.train_dataset = _Dataset(c2w)

    def reference_cameras(self) -> Cameras:
        return self.train_dataset.cameras

    def reference_image(self, index: int) -> torch.Tensor:
        return self.train_dataset.get_image_float32(index)


def _pipeline(weight: float | None, c2w: torch.Tensor) -> SimpleNamespace:
    config = Difix3DPipelineConfig(pose_step_fraction=100.0, max_rotation_step_deg=360.0)
    if weight is not None:
        config.reference_rotation_weight = weight
    else:  # a stock run: its pipeline config has no reference_rotation_weight
        config = SimpleNamespace()
    return SimpleNamespace(config=config, datamanager=_DataManager(c2w),
                           model=SimpleNamespace(get_outputs_for_camera=lambda camera, obb_box=None: {}))


# cam 1 is closest in position but turned by 90 degrees: the rotation weight decides between cam 0 and cam 1
TRAIN = torch.stack([_pose(0, 0.0), _pose(90, 0.1), _pose(0, 1.0), _pose(45, 0.5, 0.8)])
QUERIES = torch.stack([_pose(0, 0.15), _pose(60, 0.3, 0.4), _pose(20, 0.9, 0.1), _pose(80, 0.05, 0.2)])


@pytest.mark.parametrize("weight", [0.0, 1.0, 4.0])
def test_fix_round_and_render_time_pick_the_same_reference(weight):
    pipeline = _pipeline(weight, TRAIN)
    # training: the fix round's plan (the poses arrive at their targets in one step)
    references = Difix3DPipeline.reference_views(pipeline)
    strategy = NovelViewFixStrategy.from_config(pipeline.config)
    plan = strategy.plan(strategy.initialize_state(), QUERIES, references, pipeline.datamanager.reference_cameras())
    assert torch.allclose(plan.poses, QUERIES, atol=1e-5)
    # render time: the rgb_fixed hook installed on the same pipeline
    hook = install_render_fix(pipeline, enabled=False, viewer_controls=False)
    at_render = [hook.reference_index(plan.cameras[i : i + 1]) for i in range(len(QUERIES))]
    assert at_render == plan.reference_index.tolist()
    assert hook.references.rotation_weight == weight


def test_the_run_weight_changes_the_render_time_choice():
    """Weight 0 (translation only) picks cam 1 for the first query; a stock run (weight 1.0) picks cam 0."""
    query = _cameras(QUERIES[:1])
    run = install_render_fix(_pipeline(0.0, TRAIN), enabled=False, viewer_controls=False)
    stock = install_render_fix(_pipeline(None, TRAIN), enabled=False, viewer_controls=False)
    assert (run.reference_index(query), stock.reference_index(query)) == (1, 0)
