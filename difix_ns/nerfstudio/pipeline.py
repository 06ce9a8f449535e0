"""Difix3D pipeline: progressive fix rounds as a training callback, persisted and resumable.

Each round (at ``fix_steps`` or every ``fix_every`` steps, run BEFORE the training iteration of that step):

1. move every novel pose toward its target pose (test split or a camera-path JSON) by at most
   ``pose_step_fraction`` x scene extent (first round: start from the nearest training pose);
2. render the novel views with ``model.get_outputs_for_camera`` (eval mode, no grad);
3. fix them with Difix, each with its nearest training view (translation/extent + rotation angle) as reference;
4. replace (or accumulate into) the datamanager's novel-view pool, with opacity masks ``accumulation > alpha``;
5. write ``<run>/difix_rounds/step_<step, 9 digits>/{render,fixed,reference,alpha,mask}/NNNN.png`` and ``poses.json``
   (written last: it marks the round as complete).

On ``--load-dir`` / ``--load-checkpoint`` the rounds found next to the loaded checkpoint with a step before the
resume step rebuild the pool and the current novel poses, and only later rounds run. The fixer is created
lazily on the first round, held outside the module tree (never in a checkpoint), on its own device.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils import profiler
from nerfstudio.utils.rich_utils import CONSOLE
from PIL import Image
from torch import Tensor

from difix_ns.fixers.config import FixerConfig
from difix_ns.nerfstudio.datamanager import POOL_BATCH_KEY
from difix_ns.nerfstudio.poses import nearest_views, scene_extent, shift_poses
from difix_ns.nerfstudio.device import announce_device
from difix_ns.nerfstudio.user_errors import check_checkpoint_family, exit_with
from difix_ns.progress import step_progress

ROUND_FORMAT = "difix3d-round/1"


@dataclass
class Difix3DPipelineConfig(VanillaPipelineConfig):
    """Pipeline with Difix fix rounds (shared by ``difix3d`` and ``difix3d-splatfacto``)."""

    _target: type = field(default_factory=lambda: Difix3DPipeline)
    """Target class to instantiate."""
    fixer: FixerConfig = field(default_factory=FixerConfig)
    """Fixer: --pipeline.fixer.kind difix (default; --pipeline.fixer.model-name hub id or local HF-layout dir,
    device, dtype, batch-size) or the evaluation tools identity / teacher / degraded-teacher."""
    fix_steps: tuple[int, ...] = ()
    """Explicit fix-round steps (like the seed's --fix_steps 3000 6000 ...); when set, fix-every is ignored."""
    fix_every: int = 2000
    """Run a fix round at every positive multiple of this step (upstream nerfstudio: 2000); 0 disables."""
    novel_view_targets: Literal["test", "camera-path"] = "test"
    """Where the novel poses head: the eval/test split cameras, or the cameras of --pipeline.camera-path."""
    camera_path: Path | None = None
    """Camera-path JSON (viewer / ns-render format) used when novel-view-targets is camera-path."""
    pose_step_fraction: float = 0.25
    """Per-round translation step as a fraction of the scene extent (radius of the training camera centres)."""
    max_rotation_step_deg: float = 30.0
    """Per-round rotation step cap in degrees (the rotation otherwise follows the translation fraction)."""
    reference_rotation_weight: float = 1.0
    """Pose distance for the reference choice: translation / scene extent + this weight x angle (radians)."""
    novel_view_scale: float = 1.0
    """Render novel views at this fraction of the reference camera's resolution (e.g. 0.5 to halve fix cost)."""
    alpha_threshold: float = 0.5
    """Pool pixels whose rendered opacity (accumulation) is at most this are not supervised (upstream: 0.5)."""
    use_alpha_mask: bool = True
    """Mask pool views by rendered opacity; False supervises every pixel."""
    pool_loss_weight: float = 1.0
    """Weight of the photometric loss on pool batches (upstream: 1.0 nerfstudio, 0.3 gsplat)."""
    train_loss_weight: float = 1.0
    """Weight of the photometric loss on training-image batches (upstream: 1.0 nerfstudio, 1.5 gsplat)."""
    rounds_dir_name: str = "difix_rounds"
    """Sub-directory of the run directory holding the persisted fix rounds."""
    resume_rounds: bool = True
    """On --load-dir / --load-checkpoint, restore the pool and novel poses from the loaded run's rounds."""


class _LazyFixer:
    """Builds the fixer on first use. A plain object, so the fixer never joins the module tree."""

    def __init__(self, config: FixerConfig, pipeline: Any = None) -> None:
        self.config = config
        self.fixer: Any = None
        self._pipeline = pipeline  # gives a teacher fixer the world frame of the cameras it is asked for

    def get(self):
        if self.fixer is None:
            from difix_ns.fixers.factory import build_fixer
            from difix_ns.fixers.frames import WorldFrame

            frame = WorldFrame.of_pipeline(self._pipeline) if self._pipeline is not None else None
            self.fixer = build_fixer(self.config, student_frame=frame)
        return self.fixer


@dataclass
class _FixState:
    """Mutable fix-round state kept off the module tree."""

    novel_poses: Tensor | None = None  # [T, 3, 4], one per target pose
    rounds_dir: Path | None = None
    completed: list[int] = field(default_factory=list)
    schedule: tuple[int, ...] = ()
    round_seconds: list[float] = field(default_factory=list)
    round_breakdown: list[dict] = field(default_factory=list)  # seconds per phase of each round


def _check_fixer_model(name: str) -> None:
    from difix_ns.diffusion.hub import ModelResolutionError
    from difix_ns.diffusion.model_names import check_difix_model

    try:
        check_difix_model(name, option="--pipeline.fixer.model-name")
    except ModelResolutionError as err:
        exit_with(str(err))


def _save_png(path: Path, image_hwc: Tensor) -> None:
    array = image_hwc.detach().cpu()
    if array.dtype != torch.uint8:
        array = (array.float().clamp(0, 1) * 255).round().to(torch.uint8)
    if array.shape[-1] == 1:
        array = array[..., 0]
    Image.fromarray(array.numpy()).save(path, compress_level=1)  # lossless either way; level 1 is ~5x faster


class RoundFileError(ValueError):
    """A persisted fix round is unreadable (truncated PNG, bad poses.json, ...); the message names the file."""


def _load_png(path: Path) -> Tensor:
    if not path.exists():
        raise RoundFileError(f"Difix3D round file missing: {path}")
    try:
        with Image.open(path) as image:
            image.load()  # decodes fully: a truncated file fails here, naming it, not later in training
            return torch.from_numpy(np.array(image))
    except (OSError, ValueError, SyntaxError) as err:
        raise RoundFileError(f"unreadable Difix3D round file {path}: {err}") from None


def _round_file(round_dir: Path, sub: str, name: Any) -> Path:
    """``round_dir/sub/name`` for a plain file name from poses.json (never a path leaving the run)."""
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", "..") or "\\" in name:
        raise RoundFileError(f"{round_dir / 'poses.json'}: view file {name!r} is not a plain file name in the round")
    return round_dir / sub / name


class _RoundWriter:
    """Writes a round's files on one background thread while training goes on (PNG encoding releases the GIL).

    ``wait()`` blocks until the last round is on disk and re-raises its error; the pipeline waits before the next
    round and before every checkpoint, so a checkpoint never refers to a round that is not complete on disk."""

    def __init__(self) -> None:
        self._executor = None
        self._pending = None

    def submit(self, fn, *args) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.wait()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="difix-round-writer")
        self._pending = self._executor.submit(fn, *args)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()


class Difix3DPipeline(VanillaPipeline):
    """VanillaPipeline + Difix fix rounds feeding the datamanager's novel-view pool."""

    config: Difix3DPipelineConfig

    def __init__(
        self, config: Difix3DPipelineConfig, device: str, test_mode="val", world_size=1, local_rank=0, grad_scaler=None
    ):
        super().__init__(
            config, device, test_mode=test_mode, world_size=world_size, local_rank=local_rank, grad_scaler=grad_scaler
        )
        for name, value in (
            ("pose-step-fraction", config.pose_step_fraction),
            ("novel-view-scale", config.novel_view_scale),
        ):
            if value <= 0:
                raise ValueError(f"--pipeline.{name} must be > 0, got {value}")
        if config.fix_every < 0:
            raise ValueError(f"--pipeline.fix-every must be >= 0, got {config.fix_every}")
        if config.novel_view_targets == "camera-path" and config.camera_path is None:
            raise ValueError("--pipeline.novel-view-targets camera-path needs --pipeline.camera-path FILE.json")
        if not hasattr(self.datamanager, "novel_pool"):
            raise TypeError(
                f"{type(self.datamanager).__name__} has no novel-view pool; use a Difix3D datamanager config"
            )
        if test_mode == "val":  # training
            announce_device("Difix3D", device)
        self._lazy_fixer = _LazyFixer(config.fixer, self)
        self._fix_state = _FixState()
        self._round_writer = _RoundWriter()
        # Difix3D+: an `rgb_fixed` output for ns-render / the viewer, sharing this pipeline's fixer. It stays off
        # (zero cost) unless switched on by ns-render's output names, ns-difix-render or the viewer checkbox.
        from difix_ns.render.postfix import install_render_fix
        from difix_ns.render.viewer import DifixViewerControls

        self._render_hook = install_render_fix(self, fixer_factory=self.get_fixer, viewer_controls=DifixViewerControls)

    def load_pipeline(self, loaded_state: dict, step: int) -> None:
        check_checkpoint_family(loaded_state, self.model, "difix3d" if self.model.photometric_loss_key == "rgb_loss"
                                else "difix3d-splatfacto")
        super().load_pipeline(loaded_state, step)

    def wait_for_round_writes(self) -> None:
        """Block until the files of the last fix round are written (re-raises a write error)."""
        self._round_writer.wait()

    def state_dict(self, *args, **kwargs):
        # Checkpoints are taken through here: make sure the rounds they imply are complete on disk.
        self._round_writer.wait()
        return super().state_dict(*args, **kwargs)

    # ---------------------------------------------------------------- training step
    @profiler.time_function
    def get_train_loss_dict(self, step: int):
        ray_bundle, batch = self.datamanager.next_train(step)
        is_pool = bool(batch.pop(POOL_BATCH_KEY, False))
        with self.model.pool_view_mode(is_pool):
            model_outputs = self._model(ray_bundle)
            metrics_dict = self.model.get_metrics_dict(model_outputs, batch)
            loss_dict = self.model.get_loss_dict(model_outputs, batch, metrics_dict)
        key = self.model.photometric_loss_key
        loss_dict[key] = loss_dict[key] * (self.config.pool_loss_weight if is_pool else self.config.train_loss_weight)
        metrics_dict["difix_pool_batch"] = float(is_pool)
        metrics_dict["difix_pool_views"] = float(len(self.datamanager.novel_pool))
        return model_outputs, loss_dict, metrics_dict

    # ---------------------------------------------------------------- schedule / callbacks
    def get_fixer(self):
        """The DifixFixer, created on first call (a method, not a property: the viewer getattr()s every public
        attribute of the pipeline when it starts, which must not load a diffusion model)."""
        return self._lazy_fixer.get()

    @property
    def rounds_dir(self) -> Path | None:
        return self._fix_state.rounds_dir

    @property
    def completed_rounds(self) -> list[int]:
        """Steps of the fix rounds that are reflected in the current pool / poses (restored or run)."""
        return list(self._fix_state.completed)

    @property
    def fix_round_seconds(self) -> list[float]:
        """Wall time of each fix round run by this process (render + fix + write), for benchmarks."""
        return list(self._fix_state.round_seconds)

    @property
    def fix_round_breakdown(self) -> list[dict]:
        """Per round: seconds rendering, fixing, and updating the pool (round files are written in the background)."""
        return list(self._fix_state.round_breakdown)

    @property
    def fix_schedule(self) -> tuple[int, ...]:
        """Steps at which this run will still run fix rounds."""
        return self._fix_state.schedule

    def planned_fix_steps(self, start_step: int, end_step: int) -> tuple[int, ...]:
        """Fix steps in ``[start_step, end_step)``."""
        if self.config.fix_steps:
            steps = sorted({int(s) for s in self.config.fix_steps})
        elif self.config.fix_every > 0:
            first = max(self.config.fix_every, -(-start_step // self.config.fix_every) * self.config.fix_every)
            steps = list(range(first, end_step, self.config.fix_every))
        else:
            steps = []
        return tuple(s for s in steps if start_step <= s < end_step)

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> list[TrainingCallback]:
        callbacks = super().get_training_callbacks(training_callback_attributes)
        trainer = training_callback_attributes.trainer
        start, end = 0, 1_000_000  # without a Trainer (custom loops): schedule the first million steps
        if trainer is not None:
            start = int(trainer._start_step)
            end = start + int(trainer.config.max_num_iterations)
            self._fix_state.rounds_dir = Path(trainer.base_dir) / self.config.rounds_dir_name
            if self.config.resume_rounds:
                for source in self._resume_sources(trainer):
                    if self.restore_rounds(source, before_step=start):
                        break
        self._fix_state.schedule = self.planned_fix_steps(start, end)
        schedule = list(self._fix_state.schedule)
        if schedule and trainer is not None and getattr(self.config.fixer, "kind", "difix") == "difix":
            _check_fixer_model(self.config.fixer.model_name)  # a missing model fails now, not at the first round
        if schedule:
            shown = schedule if len(schedule) <= 12 else [*schedule[:10], "...", schedule[-1]]
            CONSOLE.print(f"[bold]Difix3D[/bold] {len(schedule)} fix round(s) at steps {shown}")
        # Appended after the model callbacks and run BEFORE the iteration: rendering inside a fix must not
        # overwrite splatfacto's `info` between its forward pass and its densification post-backward hook.
        callbacks.append(
            TrainingCallback(
                [TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], self._fix_callback, iters=self._fix_state.schedule
            )
        )
        return callbacks

    def _fix_callback(self, step: int) -> None:
        self.run_fix_round(step)

    def _resume_sources(self, trainer) -> list[Path]:
        sources = []
        if trainer.config.load_dir is not None:
            sources.append(Path(trainer.config.load_dir).parent / self.config.rounds_dir_name)
        elif trainer.config.load_checkpoint is not None:
            sources.append(Path(trainer.config.load_checkpoint).parent.parent / self.config.rounds_dir_name)
        if trainer.config.load_dir is not None or trainer.config.load_checkpoint is not None:
            sources.append(self._fix_state.rounds_dir)  # resuming into the same run directory (--timestamp)
        return [s for s in sources if s is not None and s.is_dir()]

    # ---------------------------------------------------------------- fix round
    def target_poses(self) -> Tensor:
        """Target camera-to-worlds ``[T, 3, 4]`` the novel poses move toward."""
        if self.config.novel_view_targets == "camera-path":
            from nerfstudio.cameras.camera_paths import get_path_from_json

            path = self.config.camera_path
            if path is None or not Path(path).is_file():
                raise FileNotFoundError(f"--pipeline.camera-path: no such file: {path}")
            try:
                cameras = get_path_from_json(json.loads(Path(path).read_text()))
            except (json.JSONDecodeError, KeyError, ValueError) as err:
                raise ValueError(f"--pipeline.camera-path {path}: not a viewer/ns-render camera path ({err})") from err
            return cameras.camera_to_worlds.reshape(-1, 3, 4).float().cpu()
        eval_dataset = self.datamanager.eval_dataset
        if eval_dataset is None or len(eval_dataset) == 0:
            raise ValueError(
                "Difix3D: the eval/test split is empty, so there are no target poses; pick an --eval-mode "
                "that holds out views or use --pipeline.novel-view-targets camera-path"
            )
        return eval_dataset.cameras.camera_to_worlds.reshape(-1, 3, 4).float().cpu()

    def _novel_cameras(self, poses: Tensor, ref_cams: Cameras, ref_idx: Tensor) -> Cameras:
        s = self.config.novel_view_scale
        pick = lambda t: t[ref_idx].reshape(-1, 1).float().cpu()
        return Cameras(
            camera_to_worlds=poses.float(),
            fx=pick(ref_cams.fx) * s,
            fy=pick(ref_cams.fy) * s,
            cx=pick(ref_cams.cx) * s,
            cy=pick(ref_cams.cy) * s,
            width=(pick(ref_cams.width) * s).round().long().clamp_min(1),
            height=(pick(ref_cams.height) * s).round().long().clamp_min(1),
            camera_type=CameraType.PERSPECTIVE,
        )

    @torch.no_grad()
    def run_fix_round(self, step: int) -> None:
        """Run one fix round at ``step`` and refresh the novel-view pool (see module docstring)."""
        self._round_writer.wait()
        started = time.perf_counter()
        dm, model = self.datamanager, self.model
        ref_cams = dm.reference_cameras()
        train_c2w = ref_cams.camera_to_worlds.reshape(-1, 3, 4).float().cpu()
        targets = self.target_poses()
        extent = scene_extent(train_c2w)
        w_rot = self.config.reference_rotation_weight
        current = self._fix_state.novel_poses
        if current is None or current.shape != targets.shape:
            current = train_c2w[nearest_views(targets, train_c2w, extent, w_rot)]
        shifted = shift_poses(
            current, targets, self.config.pose_step_fraction, extent, np.deg2rad(self.config.max_rotation_step_deg)
        )
        poses = shifted.poses
        ref_idx = nearest_views(poses, train_c2w, extent, w_rot)
        cameras = self._novel_cameras(poses, ref_cams, ref_idx)

        was_training = model.training
        model.eval()
        renders, alphas = [], []
        what = f"Difix3D fix round @{step}"
        with step_progress(f"{what}: rendering", 2 * len(cameras), console=CONSOLE) as bar:
            # Fix-round renders must be the raw model, never post-fixed (the viewer checkbox may be ticked).
            with self._render_hook.disabled():
                try:
                    for i in range(len(cameras)):
                        out = model.get_outputs_for_camera(cameras[i : i + 1].to(self.device))
                        renders.append(out["rgb"][..., :3].clamp(0, 1).float())  # [H, W, 3]
                        alphas.append(out["accumulation"].reshape(*out["rgb"].shape[:2], 1).float())  # [H, W, 1]
                        bar.advance()
                finally:
                    model.train(was_training)
            rendered = time.perf_counter()
            refs = [self._reference_like(int(r), img) for r, img in zip(ref_idx, renders)]
            bar.advance(0, description=f"{what}: fixing")
            fixed = self._fix_images(renders, refs, cameras, bar.advance)
        threshold = self.config.alpha_threshold if self.config.use_alpha_mask else -1.0
        masks = [a > threshold for a in alphas]
        images_u8 = [(f.clamp(0, 1) * 255).round().to(torch.uint8) for f in fixed]
        fixed_at = time.perf_counter()
        if self._fix_state.rounds_dir is not None:  # PNGs are encoded in the background from CPU copies
            cpu = lambda ts: [t.detach().cpu() for t in ts]
            self._round_writer.submit(
                self._write_round, step, cameras, poses, shifted.arrived, ref_idx, cpu(renders), cpu(images_u8),
                cpu(refs), cpu(alphas), cpu(masks), extent,
            )
        dm.novel_pool.update(cameras, images_u8, masks, step)
        self._fix_state.novel_poses = poses
        self._fix_state.completed.append(int(step))
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        finished = time.perf_counter()
        self._fix_state.round_seconds.append(finished - started)
        self._fix_state.round_breakdown.append(
            {"render_s": rendered - started, "fix_s": fixed_at - rendered, "pool_and_copies_s": finished - fixed_at}
        )
        if not dm.novel_pool.supervised_views:
            CONSOLE.print(
                f"[bold yellow]Difix3D step {step}: every novel view has opacity <= {threshold} everywhere; "
                "the pool is not sampled until a later round covers some pixels"
            )
        CONSOLE.print(
            f"[bold]Difix3D[/bold] step {step}: fixed {len(cameras)} novel views "
            f"({int(shifted.arrived.sum())} at their targets); pool holds {len(dm.novel_pool)} views"
        )

    def _reference_like(self, index: int, render: Tensor) -> Tensor:
        """Training image ``index`` resized to the render's size, ``[H, W, 3]`` float on the render's device."""
        ref = self.datamanager.reference_image(index).to(render.device).float()
        if ref.shape[:2] != render.shape[:2]:
            ref = F.interpolate(
                ref.permute(2, 0, 1)[None], size=render.shape[:2], mode="bilinear", antialias=True, align_corners=False
            )
            ref = ref[0].permute(1, 2, 0)
        return ref.clamp(0, 1)

    def _fix_images(
        self, renders: list[Tensor], refs: list[Tensor], cameras: Cameras, advance=lambda n: None
    ) -> list[Tensor]:
        fixer = self.get_fixer()
        # A round fixes a few views: compiling the fixer's fast path would cost more than it saves (ns-render and
        # the viewer, which fix many frames, use it). References are still encoded once across rounds.
        eager = getattr(fixer, "eager", None)
        with eager() if callable(eager) else contextlib.nullcontext():
            return self._fix_batches(fixer, renders, refs, cameras, advance)

    def _fix_batches(
        self, fixer, renders: list[Tensor], refs: list[Tensor], cameras: Cameras, advance=lambda n: None
    ) -> list[Tensor]:
        with_refs = bool(fixer.uses_references)
        out: list[Tensor | None] = [None] * len(renders)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, r in enumerate(renders):
            by_size.setdefault(tuple(r.shape[:2]), []).append(i)
        for indices in by_size.values():  # views of one size are fixed in batches (fixer chunks by batch_size)
            images = torch.stack([renders[i] for i in indices]).permute(0, 3, 1, 2)  # [B, 3, H, W]
            ref_batch = torch.stack([refs[i] for i in indices]).permute(0, 3, 1, 2)[:, None] if with_refs else None
            cams = cameras[torch.tensor(indices)]  # the cameras these views were rendered from (teacher fixers)
            result = fixer.fix(images, ref_batch, cams).to(images.device).permute(0, 2, 3, 1)  # [B, H, W, 3]
            for j, i in enumerate(indices):
                out[i] = result[j]
            advance(len(indices))
        return [o for o in out if o is not None]

    # ---------------------------------------------------------------- persistence
    def _write_round(self, step, cameras, poses, arrived, ref_idx, renders, fixed, refs, alphas, masks, extent):
        assert self._fix_state.rounds_dir is not None
        final_dir = self._fix_state.rounds_dir / f"step_{step:09d}"
        # Written into a hidden temporary folder and renamed when complete: a crash or a full disk mid-round
        # never leaves a step_* folder that looks complete.
        round_dir = self._fix_state.rounds_dir / f".step_{step:09d}.partial"
        if round_dir.exists():
            shutil.rmtree(round_dir)
        for sub in ("render", "fixed", "reference", "alpha", "mask"):
            (round_dir / sub).mkdir(parents=True, exist_ok=True)
        names = getattr(self.datamanager.train_dataset, "image_filenames", None) or []
        views = []
        for i in range(len(cameras)):
            name = f"{i:04d}.png"
            _save_png(round_dir / "render" / name, renders[i])
            _save_png(round_dir / "fixed" / name, fixed[i])
            _save_png(round_dir / "reference" / name, refs[i])
            _save_png(round_dir / "alpha" / name, alphas[i].clamp(0, 1))
            _save_png(round_dir / "mask" / name, masks[i].to(torch.uint8) * 255)  # exact mask for resume
            r = int(ref_idx[i])
            views.append(
                {
                    "file": name,
                    "camera_to_world": poses[i].tolist(),
                    "fx": float(cameras.fx[i]),
                    "fy": float(cameras.fy[i]),
                    "cx": float(cameras.cx[i]),
                    "cy": float(cameras.cy[i]),
                    "width": int(cameras.width[i]),
                    "height": int(cameras.height[i]),
                    "target_index": i,
                    "arrived": bool(arrived[i]),
                    "reference_index": r,
                    "reference_image": str(names[r]) if r < len(names) else None,
                }
            )
        meta = {
            "format": ROUND_FORMAT,
            "step": int(step),
            "scene_extent": extent,
            "pose_step": self.config.pose_step_fraction * extent,
            "alpha_threshold": self.config.alpha_threshold if self.config.use_alpha_mask else None,
            "novel_view_targets": self.config.novel_view_targets,
            "fixer": {k: v for k, v in asdict(self.config.fixer).items()},
            "fixer_plumbing_only": bool(getattr(self._lazy_fixer.fixer, "plumbing_only", False)),
            "views": views,
        }
        try:
            # default=str: Path options of the fixer config; poses.json is written last (marks the round complete)
            (round_dir / "poses.json").write_text(json.dumps(meta, indent=1, default=str))
            if final_dir.exists():  # a stale round from a run that went past its last checkpoint
                shutil.rmtree(final_dir)
            round_dir.rename(final_dir)
        finally:
            if round_dir.exists():
                shutil.rmtree(round_dir, ignore_errors=True)

    @staticmethod
    def list_rounds(rounds_dir: Path) -> list[tuple[int, Path]]:
        """Completed rounds (those with ``poses.json``) in ``rounds_dir``, sorted by step."""
        found = []
        for d in Path(rounds_dir).glob("step_*"):
            if (d / "poses.json").is_file() and d.name[5:].isdigit():
                found.append((int(d.name[5:]), d))
        return sorted(found)

    def _load_round(self, round_dir: Path) -> tuple[Cameras, Tensor, list[Tensor], list[Tensor], int]:
        meta_path = round_dir / "poses.json"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RoundFileError(f"corrupt Difix3D round metadata {meta_path}: {err}") from None
        if not isinstance(meta, dict) or meta.get("format") != ROUND_FORMAT:
            raise RoundFileError(f"{meta_path}: unknown round format (expected {ROUND_FORMAT})")
        views = meta.get("views")
        if not isinstance(views, list) or not views or not all(isinstance(v, dict) for v in views):
            raise RoundFileError(f"{meta_path}: no views")
        try:
            return self._load_round_views(round_dir, meta, views)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AssertionError) as err:
            if isinstance(err, RoundFileError):
                raise
            raise RoundFileError(f"corrupt Difix3D round metadata {meta_path}: {type(err).__name__}: {err}") from None

    def _load_round_views(self, round_dir: Path, meta: dict, views: list) -> tuple:
        col = lambda k, dtype=torch.float32: torch.tensor([[v[k]] for v in views], dtype=dtype)
        poses = torch.tensor([v["camera_to_world"] for v in views], dtype=torch.float32)
        cameras = Cameras(
            camera_to_worlds=poses,
            fx=col("fx"),
            fy=col("fy"),
            cx=col("cx"),
            cy=col("cy"),
            width=col("width", torch.long),
            height=col("height", torch.long),
            camera_type=CameraType.PERSPECTIVE,
        )
        images, masks = [], []
        for v in views:
            image = _load_png(_round_file(round_dir, "fixed", v["file"]))
            mask = _load_png(_round_file(round_dir, "mask", v["file"]))
            if image.ndim != 3 or image.shape[-1] < 3 or tuple(image.shape[:2]) != (v["height"], v["width"]):
                raise RoundFileError(f"{round_dir / 'fixed' / v['file']}: size {tuple(image.shape)} does not match "
                                     f"its camera ({v['height']}x{v['width']})")
            if tuple(mask.shape[:2]) != tuple(image.shape[:2]):
                raise RoundFileError(f"{round_dir / 'mask' / v['file']}: size does not match the fixed image")
            images.append(image[..., :3].contiguous())
            masks.append(mask.reshape(*mask.shape[:2], -1)[..., :1] > 127)
        return cameras, poses, images, masks, int(meta["step"])

    def restore_rounds(self, rounds_dir: Path, before_step: int) -> bool:
        """Rebuild pool and novel poses from the completed rounds in ``rounds_dir`` with step < ``before_step``.

        Replace mode loads the latest such round; accumulate mode replays them in order (the cap applies).
        The used round directories are copied into this run's rounds directory so a later resume of this run
        finds them too. Returns True when something was restored.
        """
        available = [(s, d) for s, d in self.list_rounds(rounds_dir) if s < before_step]
        skipped = set()
        # Load newest first; an unreadable round is skipped with a warning naming the file, so a truncated PNG
        # or a half-written round falls back to the previous complete round instead of blocking the resume.
        loaded, count = [], 0
        pool = self.datamanager.novel_pool
        for s, d in reversed(available):
            try:
                loaded.insert(0, (s, d, self._load_round(d)))
            except RoundFileError as err:
                CONSOLE.print(f"[bold yellow]warning:[/bold yellow] Difix3D skips fix round {d.name}: {err}")
                skipped.add(s)
                continue
            count += len(loaded[0][2][2])
            if pool.mode == "replace" or (pool.max_views > 0 and count >= pool.max_views):
                break  # older rounds would be replaced / evicted anyway
        if not loaded:
            return False
        used = [(s, d) for s, d, _ in loaded]
        pool.clear()
        poses = None
        for s, d, (cameras, poses, images, masks, _) in loaded:
            pool.update(cameras, images, masks, s)
            own = self._fix_state.rounds_dir
            if own is not None and own.resolve() != Path(rounds_dir).resolve():
                dest = own / d.name
                if not dest.exists():
                    shutil.copytree(d, dest)
        self._fix_state.novel_poses = poses
        self._fix_state.completed = [s for s, _ in available if s <= used[-1][0] and s not in skipped]
        CONSOLE.print(
            f"[bold]Difix3D[/bold] restored {len(pool)} pool views from {len(used)} round(s) in {rounds_dir} "
            f"(rounds done: {self._fix_state.completed})"
        )
        return True
