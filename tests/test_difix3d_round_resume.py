"""Fix-round persistence: rounds are written atomically, a corrupt latest round falls back to the previous one.

Exercises the round module's `write_round` / `load_round` and the pipeline's `restore_rounds` on a stand-in object
(no training run).
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType

from difix_ns.fixer import DifixFixerConfig
from difix_ns.nerfstudio.fix_round import FixRound, RoundFileError, cpu_copy, load_round, write_round
from difix_ns.nerfstudio.fix_strategy import FixRoundState
from difix_ns.nerfstudio.pipeline import Difix3DPipeline
from difix_ns.nerfstudio.pool import NovelViewPool


def _stand_in(rounds_dir: Path, mode: str = "replace") -> SimpleNamespace:
    config = SimpleNamespace(pose_step_fraction=0.1, alpha_threshold=0.5, use_alpha_mask=True, novel_view_targets=2,
                             fixer=DifixFixerConfig())
    obj = SimpleNamespace(config=config, _fix_state=FixRoundState(rounds_dir=rounds_dir),
                          _lazy_fixer=SimpleNamespace(fixer=None),
                          datamanager=SimpleNamespace(novel_pool=NovelViewPool(mode),
                                                      train_dataset=SimpleNamespace(image_filenames=["a.png"])))
    obj._load_round = load_round
    return obj


def _write(obj, step: int, value: float) -> None:
    n, h, w = 2, 16, 24
    poses = torch.eye(4)[:3][None].repeat(n, 1, 1)
    poses[:, 0, 3] = step
    cams = Cameras(camera_to_worlds=poses, fx=20.0, fy=20.0, cx=12.0, cy=8.0, width=w, height=h,
                   camera_type=CameraType.PERSPECTIVE)
    img = [torch.full((h, w, 3), value) for _ in range(n)]
    fixed = [(i * 255).round().to(torch.uint8) for i in img]
    alpha = [torch.ones(h, w, 1) for _ in range(n)]
    mask = [torch.ones(h, w, 1, dtype=torch.bool) for _ in range(n)]
    info = Difix3DPipeline._round_info(obj, 1.0)
    write_round(obj._fix_state.rounds_dir, FixRound(step, cams, fixed, mask, renders=img, references=img, alphas=alpha,
                                                   arrived=[True] * n, reference_index=[0] * n,
                                                   reference_names=["a.png"] * n, info=info))


@pytest.fixture()
def rounds(tmp_path) -> Path:
    obj = _stand_in(tmp_path / "difix_rounds")
    _write(obj, 100, 0.25)
    _write(obj, 200, 0.75)
    return tmp_path / "difix_rounds"


def test_rounds_are_written_atomically(rounds):
    assert sorted(p.name for p in rounds.iterdir()) == ["step_000000100", "step_000000200"]  # no partial folder
    obj = _stand_in(rounds)
    assert Difix3DPipeline.restore_rounds(obj, rounds, before_step=1000)
    assert obj._fix_state.completed == [100, 200]
    assert obj.datamanager.novel_pool.images[0].float().mean().item() == pytest.approx(0.75 * 255, abs=1)


def test_truncated_png_in_latest_round_falls_back(rounds, capsys):
    bad = rounds / "step_000000200" / "fixed" / "0001.png"
    bad.write_bytes(bad.read_bytes()[:60])
    obj = _stand_in(rounds)
    assert Difix3DPipeline.restore_rounds(obj, rounds, before_step=1000)
    out = " ".join(capsys.readouterr().out.split())
    assert "skips fix round step_000000200" in out and "0001.png" in out
    pool = obj.datamanager.novel_pool
    assert len(pool) == 2 and pool.images[0].float().mean().item() == pytest.approx(0.25 * 255, abs=1)
    assert obj._fix_state.completed == [100]
    assert obj._fix_state.novel_poses[0, 0, 3].item() == 100


def test_half_written_round_is_invisible_and_corrupt_json_skipped(rounds, capsys):
    (rounds / ".step_000000300.partial" / "fixed").mkdir(parents=True)  # a crash mid-round
    (rounds / "step_000000200" / "poses.json").write_text('{"format": "difix3d-round/1", "views": [')
    obj = _stand_in(rounds, mode="accumulate")
    assert Difix3DPipeline.restore_rounds(obj, rounds, before_step=1000)
    assert "poses.json" in " ".join(capsys.readouterr().out.split())
    assert len(obj.datamanager.novel_pool) == 2 and obj._fix_state.completed == [100]


def test_view_files_outside_the_round_are_refused(rounds, tmp_path):
    meta_path = rounds / "step_000000200" / "poses.json"
    meta = json.loads(meta_path.read_text())
    for name in ("../../secret.png", "/etc/passwd", "..", ""):
        meta["views"][0]["file"] = name
        meta_path.write_text(json.dumps(meta))
        with pytest.raises(RoundFileError, match="not a plain file name"):
            _stand_in(rounds)._load_round(rounds / "step_000000200")


def test_viewer_reader_checks_the_format_version(rounds):
    """The viewer reads rounds through the same loader as a resume: an unknown format is refused, naming the file."""
    from difix_ns.nerfstudio.fix_round import load_latest_round

    latest = load_latest_round(rounds)
    assert latest.step == 200 and len(latest) == 2 and latest.fixed[0].dtype == torch.uint8
    meta_path = rounds / "step_000000200" / "poses.json"
    meta = json.loads(meta_path.read_text())
    meta["format"] = "difix3d-round/999"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(RoundFileError, match="unknown round format") as err:
        load_latest_round(rounds)
    assert str(meta_path) in str(err.value)


def test_the_background_writers_copies_write_the_same_files(tmp_path):
    # The pipeline hands the writer 8-bit CPU copies (quantised where the images are); the PNGs must not change.
    n, h, w = 2, 12, 20
    g = torch.Generator().manual_seed(0)
    cams = Cameras(camera_to_worlds=torch.eye(4)[:3][None].repeat(n, 1, 1), fx=20.0, fy=20.0, cx=10.0, cy=6.0,
                   width=w, height=h, camera_type=CameraType.PERSPECTIVE)
    unit = lambda c: [torch.rand(h, w, c, generator=g) * 1.2 - 0.1 for _ in range(n)]  # noqa: E731
    fixed = [torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8) for _ in range(n)]
    masks = [torch.rand(h, w, 1, generator=g) > 0.5 for _ in range(n)]
    fix_round = FixRound(7, cams, fixed, masks, renders=unit(3), references=unit(3), alphas=unit(1),
                         arrived=[False] * n, reference_index=[0] * n, reference_names=["a.png"] * n)
    copy = cpu_copy(fix_round)
    assert all(t.dtype == torch.uint8 for t in copy.renders + copy.references + copy.alphas)
    first, second = write_round(tmp_path / "a", fix_round), write_round(tmp_path / "b", copy)
    files = sorted(p.relative_to(first) for p in first.rglob("*.png"))
    assert len(files) == 5 * n
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
