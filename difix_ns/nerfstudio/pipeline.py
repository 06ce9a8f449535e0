"""Difix3D pipeline: the wiring of fix rounds into nerfstudio training (schedule, callback, resume, loss weights).

What a round does lives elsewhere: :mod:`difix_ns.nerfstudio.fix_strategy` plans and runs it (pose stepping, render,
fix with reference views, pool update), :mod:`difix_ns.nerfstudio.fix_round` is its on-disk format
(``<run>/difix_rounds/step_*/``), :mod:`difix_ns.geometry.references` picks the reference views. This module:

* **schedule**: rounds at ``fix_steps`` or every ``fix_every`` steps, run BEFORE that step's training iteration;
* **resume**: on ``--load-dir`` / ``--load-checkpoint`` the rounds found next to the loaded checkpoint with a step
  before the resume step rebuild the pool and the current novel poses, and only later rounds run;
* **loss weights**: batches from the pool (:class:`~difix_ns.nerfstudio.pool.PoolDataManager`) run the model in
  pool-view mode (:class:`~difix_ns.nerfstudio.pool.PoolAwareModel`) and get ``pool_loss_weight``, others
  ``train_loss_weight``.

The pool options stay flat flags (``--pipeline.novel-view-scale``, ``--pipeline.pool-loss-weight``, ...; the
datamanager's ``--pipeline.datamanager.pool-*`` come from ``NovelViewPoolConfig``) so existing commands keep working.
The fixer is created and loaded on the first round, held outside the module tree (never in a checkpoint), on its
own device.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import torch
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils import profiler
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from difix_ns.fixers.config import FixerConfig
from difix_ns.geometry.references import ReferenceViews
from difix_ns.nerfstudio.device import announce_device
from difix_ns.nerfstudio.fix_round import (
    FixRound, RoundFileError, RoundWriter, cpu_copy, list_rounds, load_round, write_round,
)
from difix_ns.nerfstudio.fix_strategy import (
    NovelViewFixStrategy, PendingRound, RendersReady, fix_beside_training, warm_up_fixer,
)
from difix_ns.nerfstudio.fixer_loading import LazyFixer
from difix_ns.nerfstudio.pool import PoolAwareModel, PoolDataManager, take_pool_flag
from difix_ns.nerfstudio.user_errors import check_checkpoint_family, exit_with
from difix_ns.progress import step_progress

__all__ = ["Difix3DPipeline", "Difix3DPipelineConfig"]


@dataclass
class Difix3DPipelineConfig(VanillaPipelineConfig):
    """Pipeline with Difix fix rounds (shared by ``difix3d`` and ``difix3d-splatfacto``)."""

    _target: type = field(default_factory=lambda: Difix3DPipeline)
    """Target class to instantiate."""
    fixer: FixerConfig = field(default_factory=FixerConfig)
    """Fixer: --pipeline.fixer.kind difix (default; --pipeline.fixer.model-name hub id or local HF-layout dir,
    device, dtype, batch-size) or the evaluation tools identity / teacher / degraded-teacher."""
    fix_steps: tuple[int, ...] = ()
    """Explicit fix-round steps (like --fix_steps 3000 6000 ... of the original Difix3D training script); when set,
    fix-every is ignored."""
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
    fix_lag_steps: int = 0
    """Training steps that go on while a round's views are fixed: the round renders its views at its step and
    enters the pool this many steps later (before the next round and the last step), training waiting there only if
    the fix is not done. The fix runs meanwhile on the fixer thread (see prepare-fixer; on CUDA on a stream of its
    own), else at the commit step. 0: training waits for the fix at the round's step (upstream)."""
    prepare_fixer: Literal["auto", "background", "first-round"] = "auto"
    """When the fixer is loaded. "background": from the first training step, on a fixer thread that also runs one
    warm-up fix at the first round's sizes while training goes on; the rounds' fixes then run on that thread
    (Difix-layout models; others load at the first round); results are unchanged. "first-round": when the first
    round needs it. "auto": background when the fixer runs on CUDA, else first-round (on a CPU the warm-up would
    take the training's cores)."""

    def __post_init__(self) -> None:
        # Checked when the command line is parsed (tyro builds this config), before ns-train writes anything.
        positive = (("pose-step-fraction", self.pose_step_fraction), ("novel-view-scale", self.novel_view_scale))
        for name, value in positive:
            if value <= 0:
                exit_with(f"--pipeline.{name} must be > 0, got {value}")
        for name, value in (("fix-every", self.fix_every), ("fix-lag-steps", self.fix_lag_steps)):
            if value < 0:
                exit_with(f"--pipeline.{name} must be >= 0, got {value}")
        if self.novel_view_targets == "camera-path" and self.camera_path is None:
            exit_with("--pipeline.novel-view-targets camera-path needs --pipeline.camera-path FILE.json")


def _check_fixer_model(name: str) -> None:
    from difix_ns.diffusion.hub import ModelResolutionError
    from difix_ns.diffusion.model_names import check_difix_model

    try:
        check_difix_model(name, option="--pipeline.fixer.model-name")
    except ModelResolutionError as err:
        exit_with(str(err))


class Difix3DPipeline(VanillaPipeline):
    """VanillaPipeline + Difix fix rounds feeding the datamanager's novel-view pool (see the module docstring)."""

    config: Difix3DPipelineConfig
    datamanager: PoolDataManager
    model: PoolAwareModel

    def __init__(
        self, config: Difix3DPipelineConfig, device: str, test_mode="val", world_size=1, local_rank=0, grad_scaler=None
    ):
        super().__init__(
            config, device, test_mode=test_mode, world_size=world_size, local_rank=local_rank, grad_scaler=grad_scaler
        )
        if not isinstance(self.datamanager, PoolDataManager):
            raise TypeError(
                f"{type(self.datamanager).__name__} has no novel-view pool; use a Difix3D datamanager config"
            )
        if test_mode == "val":  # training
            announce_device("Difix3D", device)
        self._lazy_fixer = LazyFixer(config.fixer, self)
        self._strategy = NovelViewFixStrategy.from_config(config)
        self._fix_state = self._strategy.initialize_state()
        self._fix_schedule: tuple[int, ...] = ()
        self._last_step: int | None = None  # the run's last training step (None without a Trainer)
        self._pending_round: PendingRound | None = None  # rendered, being fixed (fix_lag_steps)
        self._round_writer = RoundWriter()
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
        # Checkpoints are taken through here: make sure the rounds they imply are complete on disk, a round still
        # pending (fix_lag_steps) included, so that resuming from this checkpoint commits it at its step too.
        self._round_writer.wait()
        self._persist_pending_round()
        return super().state_dict(*args, **kwargs)

    # ---------------------------------------------------------------- training step
    @profiler.time_function
    def get_train_loss_dict(self, step: int):
        ray_bundle, batch = self.datamanager.next_train(step)
        is_pool = take_pool_flag(batch)
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
        """The fixer, created on first call (a method, not a property: the viewer getattr()s every public
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
        """Per round: seconds loading the fixer (the first round), rendering, fixing, and updating the pool (round
        files are written in the background)."""
        return list(self._fix_state.round_breakdown)

    @property
    def fixer_load_seconds(self) -> float | None:
        """Seconds building and loading the fixer took (at the first round); None before."""
        return self._lazy_fixer.load_seconds

    @property
    def fix_schedule(self) -> tuple[int, ...]:
        """Steps at which this run will still run fix rounds."""
        return self._fix_schedule

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
            self._last_step = end - 1
            self._fix_state.rounds_dir = Path(trainer.base_dir) / self.config.rounds_dir_name
            if self.config.resume_rounds:
                for source in self._resume_sources(trainer):
                    if self.restore_rounds(source, before_step=start):
                        break
        self._fix_schedule = self.planned_fix_steps(start, end)
        schedule = list(self._fix_schedule)
        if schedule and trainer is not None and getattr(self.config.fixer, "kind", "difix") == "difix":
            _check_fixer_model(self.config.fixer.model_name)  # a missing model fails now, not at the first round
        if schedule:
            shown = schedule if len(schedule) <= 12 else [*schedule[:10], "...", schedule[-1]]
            CONSOLE.print(f"[bold]Difix3D[/bold] {len(schedule)} fix round(s) at steps {shown}")
        if schedule and schedule[0] > start and self.config.prepare_fixer != "first-round":
            callbacks.append(
                TrainingCallback(
                    [TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], self._prepare_fixer_callback, iters=(start,)
                )
            )
        commits = {c for c in map(self._commit_step, schedule) if c is not None}
        if self._pending_round is not None:  # restored: a checkpoint was taken while it was pending
            commits.add(self._pending_round.commit_step)
        commits = sorted(commits)
        if commits:  # before the fix callback: a round due at the next round's step enters the pool first
            callbacks.append(
                TrainingCallback(
                    [TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], self._commit_callback, iters=tuple(commits)
                )
            )
        # Appended after the model callbacks and run BEFORE the iteration: rendering inside a fix must not
        # overwrite splatfacto's `info` between its forward pass and its densification post-backward hook.
        callbacks.append(
            TrainingCallback(
                [TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], self._fix_callback, iters=self._fix_schedule
            )
        )
        return callbacks

    def _fix_callback(self, step: int) -> None:
        self.run_fix_round(step)

    def _commit_callback(self, step: int) -> None:
        if self._pending_round is not None and step >= self._pending_round.commit_step:
            self.commit_pending_round()

    def _prepare_fixer_callback(self, step: int) -> None:
        """Start loading and warming up the fixer in the background (``--pipeline.prepare-fixer``)."""
        plan = self._strategy.plan(self._fix_state, self.target_poses(), self.reference_views(),
                                   self.datamanager.reference_cameras())  # what the first round will fix
        started = self._lazy_fixer.prepare_in_background(
            partial(warm_up_fixer, cameras=plan.cameras), cuda_only=self.config.prepare_fixer == "auto"
        )
        if started:
            CONSOLE.print(f"[bold]Difix3D[/bold] loading the fixer in the background (first round at step "
                          f"{self._fix_schedule[0]})")

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

    def reference_views(self) -> ReferenceViews:
        """The training views fix rounds take their references from (the run's reference rotation weight)."""
        return ReferenceViews.from_datamanager(self.datamanager, self.config.reference_rotation_weight)

    @torch.no_grad()
    def run_fix_round(self, step: int) -> None:
        """Run one fix round at ``step``: render the novel views, fix them, refresh the novel-view pool and persist
        the round in the background. With ``fix_lag_steps`` > 0 only the renders happen now; the fix runs on the
        fixer thread while training goes on and :meth:`commit_pending_round` finishes the round later."""
        self._round_writer.wait()
        self.commit_pending_round()  # a round still being fixed enters the pool before the next one is planned
        started = time.perf_counter()
        dm, strategy = self.datamanager, self._strategy
        references = self.reference_views()
        plan = strategy.plan(self._fix_state, self.target_poses(), references, dm.reference_cameras())
        what = f"Difix3D fix round @{step}"
        commit_step = self._commit_step(step)
        if commit_step is not None:
            with step_progress(f"{what}: rendering", len(plan.cameras), console=CONSOLE) as bar:
                rendered = strategy.render(step, plan, self.model, references, self.device, bar.advance,
                                           plain_renders=self._render_hook.disabled)
            ready = RendersReady.after(rendered)  # the fixer's CUDA stream starts after the renders
            self._pending_round = PendingRound(
                rendered=rendered,
                fixing=self._lazy_fixer.submit(partial(fix_beside_training, strategy, rendered, ready)),
                commit_step=commit_step,
                extent=references.extent,
                seconds=time.perf_counter() - started,
            )
            where = "on the fixer thread while training goes on" if self._pending_round.fixing else "then"
            CONSOLE.print(f"[bold]Difix3D[/bold] step {step}: rendered {len(plan.cameras)} novel views; fixed "
                          f"{where}, they enter the pool at step {self._pending_round.commit_step}")
            return
        load_started = time.perf_counter()
        fixer = self._lazy_fixer.round_fixer()  # the first round loads it (fixer_load_s)
        loaded = time.perf_counter()
        with step_progress(f"{what}: rendering", 2 * len(plan.cameras), console=CONSOLE) as bar:
            # Fix-round renders must be the raw model, never post-fixed (the viewer checkbox may be ticked).
            fix_round, timing = strategy.run(step, plan, self.model, fixer, references, self.device,
                                             progress=bar, plain_renders=self._render_hook.disabled, label=what)
        self._finish_round(fix_round, references.extent, started, {"fixer_load_s": loaded - load_started, **timing})

    def commit_pending_round(self) -> None:
        """Finish the round that ``fix_lag_steps`` left pending, if any: wait for its fix (or run it now when there
        is no fixer thread), then put it into the pool and write it. Runs at the round's commit step, before the
        next round, and is a no-op without a pending round."""
        pending, self._pending_round = self._pending_round, None
        if pending is None:
            return
        started = time.perf_counter()
        fix_round, timing = self._pending_fix(pending)
        timing["fix_wait_s"] = time.perf_counter() - started
        timing["committed_at_step"] = pending.commit_step
        self._finish_round(fix_round, pending.extent, started - pending.seconds, timing, write=not pending.written)

    def _pending_fix(self, pending: PendingRound) -> tuple[FixRound, dict]:
        """The pending round, fixed: waits for the fixer thread, or fixes it here when there is none (once: the
        result is kept on ``pending``). Returns the round (its info naming the step it enters the pool at) and
        timings."""
        if pending.result is None:
            started = time.perf_counter()
            timing = {"render_s": pending.rendered.render_s if pending.rendered is not None else 0.0}
            if pending.fixing is not None:
                fix_round, timing["fix_s"] = pending.fixing.result()  # re-raises a loading or fixing error
                self._lazy_fixer.get()  # adopts the fixer the thread loaded (no wait: the thread is done with it)
                timing["fixer_load_s"] = 0.0
            else:
                fixer = self._lazy_fixer.round_fixer()
                loaded = time.perf_counter()
                fix_round = self._strategy.fix(pending.rendered, fixer)
                timing.update(fixer_load_s=loaded - started, fix_s=time.perf_counter() - loaded)
            fix_round.info = {**self._round_info(pending.extent), "enters_pool_at_step": pending.commit_step}
            pending.result = (fix_round, timing)
        fix_round, timing = pending.result
        return fix_round, dict(timing)

    def _persist_pending_round(self) -> None:
        """Write the pending round now (a checkpoint is being taken while it is pending): its ``poses.json`` names the
        step it enters the pool at, so :meth:`restore_rounds` makes it pending again instead of using it at once."""
        pending, rounds_dir = self._pending_round, self._fix_state.rounds_dir
        if pending is None or pending.written or rounds_dir is None:
            return
        fix_round, _ = self._pending_fix(pending)
        on_cpu = cpu_copy(fix_round)
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # completes the copies
        write_round(rounds_dir, on_cpu)
        pending.written = True

    def _commit_step(self, step: int) -> int | None:
        """Before which training step a round rendered at ``step`` enters the pool: ``fix_lag_steps`` later, but no
        later than the next round or the last step. None: at ``step`` itself (no lag, or no step left)."""
        if self.config.fix_lag_steps <= 0:
            return None
        commit = step + self.config.fix_lag_steps
        later = [s for s in self._fix_schedule if s > step]
        if later:
            commit = min(commit, later[0])
        if self._last_step is not None:
            commit = min(commit, self._last_step)
        return commit if commit > step else None

    def _finish_round(
        self, fix_round: FixRound, extent: float, started: float, timing: dict, write: bool = True
    ) -> None:
        """Write ``fix_round`` (in the background; ``write=False``: it is on disk already), put it into the pool and
        record its time; ``started``: when the training thread began on it (a lagged round's render time is
        counted, not the steps in between)."""
        dm, state = self.datamanager, self._fix_state
        finishing = time.perf_counter()
        on_cpu = None
        if state.rounds_dir is not None and write:  # PNGs are encoded in the background from CPU copies
            fix_round.info = fix_round.info or self._round_info(extent)  # a lagged round's has its pool step
            on_cpu = cpu_copy(fix_round)
        self._strategy.commit(state, fix_round, dm.novel_pool)
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # also completes the copies
        if on_cpu is not None:
            self._round_writer.submit(write_round, state.rounds_dir, on_cpu)
        finished = time.perf_counter()
        state.round_seconds.append(finished - started)
        state.round_breakdown.append({**timing, "pool_and_copies_s": finished - finishing})
        if not dm.novel_pool.supervised_views:
            threshold = self._strategy.alpha_threshold if self._strategy.alpha_threshold is not None else -1.0
            CONSOLE.print(
                f"[bold yellow]Difix3D step {fix_round.step}: every novel view has opacity <= {threshold} "
                "everywhere; the pool is not sampled until a later round covers some pixels"
            )
        arrived = sum(bool(a) for a in fix_round.arrived)
        CONSOLE.print(
            f"[bold]Difix3D[/bold] step {fix_round.step}: fixed {len(fix_round)} novel views "
            f"({arrived} at their targets); pool holds {len(dm.novel_pool)} views"
        )

    def _round_info(self, extent: float) -> dict:
        """Round-level settings recorded in ``poses.json``."""
        return {
            "scene_extent": extent,
            "pose_step": self.config.pose_step_fraction * extent,
            "alpha_threshold": self.config.alpha_threshold if self.config.use_alpha_mask else None,
            "novel_view_targets": self.config.novel_view_targets,
            "fixer": dict(asdict(self.config.fixer)),
            "fixer_plumbing_only": bool(getattr(self._lazy_fixer.fixer, "plumbing_only", False)),
        }

    # ---------------------------------------------------------------- resume
    def restore_rounds(self, rounds_dir: Path, before_step: int) -> bool:
        """Rebuild pool and novel poses from the completed rounds in ``rounds_dir`` with step < ``before_step``.

        Replace mode loads the latest such round; accumulate mode replays them in order (the cap applies).
        The newest round, if a checkpoint was taken while it was pending (``fix_lag_steps``; its ``poses.json``
        says ``enters_pool_at_step`` >= ``before_step``), becomes pending again and enters the pool at that step,
        as in the run that wrote it. The used round directories are copied into this run's rounds directory so a
        later resume of this run finds them too. Returns True when something was restored.
        """
        available = [(s, d) for s, d in list_rounds(rounds_dir) if s < before_step]
        skipped = set()
        # Load newest first; an unreadable round is skipped with a warning naming the file, so a truncated PNG
        # or a half-written round falls back to the previous complete round instead of blocking the resume.
        loaded, count, pending = [], 0, None
        pool = self.datamanager.novel_pool
        for s, d in reversed(available):
            try:
                fix_round = load_round(d)
            except RoundFileError as err:
                CONSOLE.print(f"[bold yellow]warning:[/bold yellow] Difix3D skips fix round {d.name}: {err}")
                skipped.add(s)
                continue
            enters_pool = fix_round.info.get("enters_pool_at_step")
            if not loaded and pending is None and isinstance(enters_pool, int) and enters_pool >= before_step:
                pending = (s, d, fix_round, enters_pool)
                continue
            loaded.insert(0, (s, d, fix_round))
            count += len(fix_round)
            if pool.mode == "replace" or (pool.max_views > 0 and count >= pool.max_views):
                break  # older rounds would be replaced / evicted anyway
        if not loaded and pending is None:
            return False
        pool.clear()
        poses = None
        own = self._fix_state.rounds_dir
        for s, d, fix_round in loaded + ([pending[:3]] if pending is not None else []):
            if own is not None and own.resolve() != Path(rounds_dir).resolve():
                dest = own / d.name
                if not dest.exists():
                    shutil.copytree(d, dest)
        for s, d, fix_round in loaded:
            pool.update(fix_round.cameras, fix_round.fixed, fix_round.masks, s)
            poses = fix_round.poses
        self._fix_state.novel_poses = poses
        newest_used = loaded[-1][0] if loaded else -1
        self._fix_state.completed = [s for s, _ in available if s <= newest_used and s not in skipped]
        if pending is not None:
            s, _, fix_round, enters_pool = pending
            self._pending_round = PendingRound(
                rendered=None, fixing=None, commit_step=enters_pool,
                extent=float(fix_round.info.get("scene_extent", 0.0)), seconds=0.0,
                result=(fix_round, {"render_s": 0.0, "fix_s": 0.0, "fixer_load_s": 0.0}), written=True,
            )
        CONSOLE.print(
            f"[bold]Difix3D[/bold] restored {len(pool)} pool views from {len(loaded)} round(s) in {rounds_dir} "
            f"(rounds done: {self._fix_state.completed})"
            + (f"; round {pending[0]} enters the pool at step {pending[3]}" if pending is not None else ""),
            soft_wrap=True,  # names a folder: kept whole in logs
        )
        return True
