"""Trajectory videos (``difix-trajectory``): a smooth video through the (sparse) training cameras, optionally
post-fixed (Difix3D+).

The "Rendering Video" step of the original Difix3D scripts, for nerfstudio runs: interpolate ``--n-interp`` frames
per pair of consecutive training cameras (rotations slerped, centres linear or Catmull-Rom spline), render every frame,
post-fix it with Difix (nearest training view as reference, ``--fixer.batch-size`` frames per fixer call), and write an
mp4 (libx264 via imageio-ffmpeg) and/or numbered PNG frames at ``--fps``. The console script is
:mod:`difix_ns.cli.trajectory`.

**Frame count.** ``N`` cameras give exactly ``(N - 1) * n_interp + 1`` frames: each consecutive pair contributes
``n_interp`` frames starting at its first camera, and the last camera closes the path. Every training pose is a
frame (frame ``i * n_interp`` is camera ``i``). E.g. 4 cameras, ``--n-interp 8`` -> 25 frames.

Example::

    difix-trajectory --load-config outputs/fox/splatfacto/<ts>/config.yml --n-interp 8 --fps 30 \\
        --output-path renders/fox_traj.mp4 --frames-dir renders/fox_traj_frames --fixer.model-name nvidia/difix_ref
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from difix_ns.fixer import DifixFixerConfig
from difix_ns.render import settings
from difix_ns.geometry.interpolation import interpolate_poses, num_trajectory_frames, order_by_proximity


def output_to_uint8(outputs: Dict[str, torch.Tensor], name: str) -> np.ndarray:
    """One model output as an [H, W, 3] uint8 image (nerfstudio colormaps: depth is turbo-coloured)."""
    from nerfstudio.utils import colormaps

    if name not in outputs:
        raise SystemExit(f"error: output {name!r} is not produced by this model; available: {sorted(outputs)}")
    image = outputs[name]
    if "depth" in name:
        image = colormaps.apply_depth_colormap(image, accumulation=outputs.get("accumulation"))
    else:
        image = colormaps.apply_colormap(image)
    return (image[..., :3].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def pad_to_even(frame: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even sides: replicate the last row/column when one is odd."""
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frame


def trajectory_cameras(source, n_interp: int, translation: str = "spline", order_poses: bool = False):
    """Interpolated ``Cameras`` through ``source`` cameras (intrinsics and size of the first camera)."""
    from nerfstudio.cameras.cameras import Cameras

    c2w = source.camera_to_worlds.detach().cpu()
    if order_poses:
        c2w = c2w[order_by_proximity(c2w)]
    poses, _ = interpolate_poses(c2w, n_interp, translation)  # [F, 3, 4]
    n = poses.shape[0]

    def rep(values):
        return values[0:1].detach().cpu().expand(n, 1).clone()

    return Cameras(
        camera_to_worlds=poses.float(),
        fx=rep(source.fx),
        fy=rep(source.fy),
        cx=rep(source.cx),
        cy=rep(source.cy),
        width=rep(source.width),
        height=rep(source.height),
        camera_type=rep(source.camera_type),
    )


@dataclass
class TrajectoryRender:
    """Render a video interpolating the training cameras of a run, optionally post-fixed by Difix (Difix3D+)."""

    load_config: Path
    """Path to the run's config.yml."""
    output_path: Optional[Path] = Path("renders/trajectory.mp4")
    """mp4 to write (libx264, yuv420p); pass --output-path None to write only PNG frames."""
    frames_dir: Optional[Path] = None
    """Also write every frame as <frames-dir>/00000.png, 00001.png, ..."""
    n_interp: int = 8
    """Frames per pair of consecutive cameras (the pair's first camera included): (N-1)*n_interp+1 frames in total."""
    fps: float = 30.0
    """Frame rate of the mp4."""
    translation: Literal["linear", "spline"] = "spline"
    """Interpolation of camera centres (rotations are always slerped)."""
    pose_source: Literal["train", "eval"] = "train"
    """Cameras to interpolate."""
    order_poses: bool = False
    """Reorder the cameras greedily by proximity before interpolating (default: dataset order)."""
    downscale_factor: float = 1.0
    """Render at 1/downscale_factor of the camera resolution."""
    rendered_output_names: Optional[List[str]] = None
    """Outputs placed side by side in each frame; default: rgb_fixed with --postfix, rgb with --no-postfix."""
    postfix: bool = True
    """Post-fix every frame with Difix (the rgb_fixed output)."""
    fixer: DifixFixerConfig = field(default_factory=DifixFixerConfig)
    """Difix model used for post-fixing."""
    crf: int = 18
    """x264 constant rate factor of the mp4 (lower = better quality)."""
    overwrite: bool = False
    """Replace an existing --output-path / PNG frames in --frames-dir (default: refuse)."""

    def _check(self) -> None:
        from difix_ns.safe_config import load_run_config

        load_run_config(self.load_config)  # missing, garbage or hostile config.yml: one clear error, nothing runs
        if self.n_interp < 1:
            raise SystemExit(f"error: --n-interp must be >= 1, got {self.n_interp}")
        if self.fps <= 0:
            raise SystemExit(f"error: --fps must be > 0, got {self.fps}")
        if self.downscale_factor <= 0:
            raise SystemExit(f"error: --downscale-factor must be > 0, got {self.downscale_factor}")
        if self.output_path is None and self.frames_dir is None:
            raise SystemExit("error: nothing to write: give --output-path and/or --frames-dir")
        if self.output_path is not None and self.output_path.suffix.lower() != ".mp4":
            raise SystemExit(f"error: --output-path {self.output_path} must end in .mp4")
        if self.output_path is not None and self.output_path.is_dir():
            raise SystemExit(f"error: --output-path {self.output_path} is a directory")
        if not self.overwrite:
            existing = [self.output_path] if self.output_path is not None and self.output_path.exists() else []
            if self.frames_dir is not None and self.frames_dir.is_dir():
                existing += sorted(self.frames_dir.glob("[0-9][0-9][0-9][0-9][0-9].png"))[:1]
            if existing:
                raise SystemExit(f"error: output {existing[0]} already exists; pass --overwrite to replace it")
        names = self.rendered_output_names
        if not self.postfix and names is not None and settings.OUTPUT_NAME in names:
            raise SystemExit(f"error: --rendered-output-names asks for {settings.OUTPUT_NAME} "
                             "but --no-postfix was given")
        if self.postfix and self.fixer.batch_size < 1:
            raise SystemExit(f"error: --fixer.batch-size must be >= 1, got {self.fixer.batch_size}")

    def main(self) -> Dict[str, object]:
        """Render; returns (and prints) a summary with the frame count."""
        self._check()
        from nerfstudio.utils.eval_utils import eval_setup

        from difix_ns.render.runtime import prepare_runtime
        from difix_ns.render.postfix import install_render_fix

        names = self.rendered_output_names or ([settings.OUTPUT_NAME] if self.postfix else ["rgb"])
        prepare_runtime()
        settings.enable_render_fix(self.postfix, self.fixer if self.postfix else None)
        _, pipeline, _, _ = eval_setup(self.load_config, test_mode="test")  # as ns-render interpolate
        hook = install_render_fix(pipeline, fixer_config=self.fixer, enabled=self.postfix, viewer_controls=False)
        if self.postfix:
            try:
                hook.fixer.pipeline  # noqa: B018  (loads the model now: a bad one fails before any frame is rendered)
            except Exception as err:  # hub unreachable, missing files, wrong keys: all mean "this model is unusable"
                reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
                raise SystemExit(f"error: --fixer.model-name {self.fixer.model_name}: cannot load the Difix model "
                                 f"({type(err).__name__}: {reason})") from None

        datamanager = pipeline.datamanager
        dataset = datamanager.train_dataset if self.pose_source == "train" else datamanager.eval_dataset
        if dataset is None or len(dataset) < 2:
            count = 0 if dataset is None else len(dataset)
            raise SystemExit(f"error: --pose-source {self.pose_source} has {count} cameras; need at least 2")
        cameras = trajectory_cameras(dataset.cameras, self.n_interp, self.translation, self.order_poses)
        cameras.rescale_output_resolution(1.0 / self.downscale_factor)
        expected = num_trajectory_frames(len(dataset), self.n_interp)
        assert cameras.shape[0] == expected, (cameras.shape, expected)

        writer = None
        partial = None  # the mp4 is written beside its destination and renamed once complete
        if self.output_path is not None:
            import imageio.v2 as imageio

            self.output_path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.output_path.with_name(f".{self.output_path.stem}.partial.mp4")
            writer = imageio.get_writer(
                str(partial), format="FFMPEG", mode="I", fps=self.fps, codec="libx264",
                pixelformat="yuv420p", macro_block_size=1, ffmpeg_params=["-crf", str(self.crf)],
                ffmpeg_log_level="error",
            )
        if self.frames_dir is not None:
            self.frames_dir.mkdir(parents=True, exist_ok=True)
        import imageio.v3 as iio

        hook.plan(cameras)
        device = pipeline.device
        written = 0
        try:
            with Progress(
                TextColumn("difix-trajectory"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn()
            ) as progress:
                for i in progress.track(range(expected), description="rendering"):
                    with torch.no_grad():
                        outputs = pipeline.model.get_outputs_for_camera(cameras[i : i + 1].to(device))
                    frame = np.concatenate([output_to_uint8(outputs, n) for n in names], axis=1)
                    if self.frames_dir is not None:
                        iio.imwrite(self.frames_dir / f"{i:05d}.png", frame)
                    if writer is not None:
                        writer.append_data(pad_to_even(frame))
                    written += 1
        finally:
            hook.plan(None)
            if writer is not None:
                writer.close()
                if written == expected:
                    partial.replace(self.output_path)
                else:
                    partial.unlink(missing_ok=True)
        summary = {
            "frames": written,
            "expected_frames": expected,
            "num_cameras": len(dataset),
            "n_interp": self.n_interp,
            "fps": self.fps,
            "outputs": names,
            "video": str(self.output_path) if self.output_path is not None else None,
            "frames_dir": str(self.frames_dir) if self.frames_dir is not None else None,
            "fixer_calls": hook.fix_calls,
        }
        print(json.dumps(summary))
        return summary
