"""How a fix round is planned and run: :class:`NovelViewFixStrategy` with its state in a plain :class:`FixRoundState`.

The strategy holds only settings; everything that changes between rounds lives in the state object the caller owns
(the pipeline keeps it off the module tree, so nothing here enters a checkpoint). A round, in order:

1. :meth:`~NovelViewFixStrategy.plan` (pure): move every novel pose toward its target pose by at most
   ``pose_step_fraction`` x scene extent and ``max_rotation_step_deg`` (first round: start from the nearest training
   pose), pick each view's reference training view (:class:`~difix_ns.geometry.references.ReferenceViews`), and build
   the novel cameras (reference intrinsics x ``novel_view_scale``);
2. :meth:`~NovelViewFixStrategy.render`: render the novel views (eval mode, no grad) with their reference images
   (:class:`RoundRenders`);
3. :meth:`~NovelViewFixStrategy.fix`: fix them with the fixer, each with its reference view, and mask pixels with
   opacity ``accumulation <= alpha_threshold``; returns a :class:`~difix_ns.nerfstudio.fix_round.FixRound`. It
   touches neither model nor state, so it may run on another thread while training goes on
   (``--pipeline.fix-lag-steps``: :func:`fix_beside_training`, the round meanwhile a :class:`PendingRound`);
   :meth:`~NovelViewFixStrategy.run` is 2 then 3;
4. :meth:`~NovelViewFixStrategy.commit`: put the round into the novel-view pool and advance the state.
"""
from __future__ import annotations

import contextlib
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, List, Optional

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from torch import Tensor

from difix_ns.geometry.poses import shift_poses
from difix_ns.geometry.references import ReferenceViews
from difix_ns.nerfstudio.fix_round import FixRound
from difix_ns.nerfstudio.pool import NovelViewPool


@dataclass
class FixRoundState:
    """Everything that changes from one fix round to the next (a plain object: never part of a checkpoint)."""

    novel_poses: Optional[Tensor] = None
    """``[T, 3, 4]`` current novel poses, one per target pose (None before the first round)."""
    rounds_dir: Optional[Path] = None
    """Where this run persists its rounds (None: not persisted, e.g. without a Trainer)."""
    completed: List[int] = field(default_factory=list)
    """Steps of the rounds reflected in the current pool / poses (restored or run)."""
    round_seconds: List[float] = field(default_factory=list)
    """Wall time of each round run by this process (render + fix + pool update)."""
    round_breakdown: List[dict] = field(default_factory=list)
    """Seconds per phase of each round run by this process."""


@dataclass(frozen=True)
class RoundPlan:
    """What a round will render: the output of :meth:`NovelViewFixStrategy.plan`."""

    poses: Tensor
    """``[T, 3, 4]`` novel poses after this round's step."""
    arrived: Tensor
    """``[T]`` bool: the pose reached its target."""
    reference_index: Tensor
    """``[T]`` long: reference training view of each novel view."""
    cameras: Cameras
    """``[T]`` novel-view cameras."""


@dataclass
class RoundRenders:
    """A round between its two halves: the output of :meth:`NovelViewFixStrategy.render`, the input of
    :meth:`NovelViewFixStrategy.fix`."""

    step: int
    """Training step the views were rendered at (the round's step)."""
    plan: RoundPlan
    renders: List[Tensor]
    """N x ``[H, W, 3]`` float in [0, 1]."""
    alphas: List[Tensor]
    """N x ``[H, W, 1]`` float: rendered opacity."""
    references: List[Tensor]
    """N x ``[H, W, 3]`` float in [0, 1]: each view's reference training image at the render's size."""
    reference_names: List[Optional[str]]
    render_s: float
    """Seconds the renders took."""


def novel_cameras(poses: Tensor, reference_cameras: Cameras, reference_index: Tensor, scale: float) -> Cameras:
    """Pinhole cameras at ``poses`` with the intrinsics and size of each view's reference camera times ``scale``."""
    pick = lambda t: t[reference_index].reshape(-1, 1).float().cpu()  # noqa: E731
    return Cameras(
        camera_to_worlds=poses.float(),
        fx=pick(reference_cameras.fx) * scale,
        fy=pick(reference_cameras.fy) * scale,
        cx=pick(reference_cameras.cx) * scale,
        cy=pick(reference_cameras.cy) * scale,
        width=(pick(reference_cameras.width) * scale).round().long().clamp_min(1),
        height=(pick(reference_cameras.height) * scale).round().long().clamp_min(1),
        camera_type=CameraType.PERSPECTIVE,
    )


def fix_in_batches(
    fixer: Any,
    renders: List[Tensor],
    refs: List[Tensor],
    cameras: Cameras,
    advance: Optional[Callable[[int], Any]] = None,
) -> List[Tensor]:
    """Fix ``renders`` (N x ``[H, W, 3]``) with their ``refs`` (same sizes); views of one size go in one call."""
    with_refs = bool(fixer.uses_references)
    out: List[Optional[Tensor]] = [None] * len(renders)
    by_size: dict = {}
    for i, r in enumerate(renders):
        by_size.setdefault(tuple(r.shape[:2]), []).append(i)
    for indices in by_size.values():  # the fixer chunks each call by its batch_size
        images = torch.stack([renders[i] for i in indices]).permute(0, 3, 1, 2)  # [B, 3, H, W]
        ref_batch = torch.stack([refs[i] for i in indices]).permute(0, 3, 1, 2)[:, None] if with_refs else None
        cams = cameras[torch.tensor(indices)]  # the cameras these views were rendered from (teacher fixers)
        result = fixer.fix(images, ref_batch, cams).to(images.device).permute(0, 2, 3, 1)  # [B, H, W, 3]
        for j, i in enumerate(indices):
            out[i] = result[j]
        if advance is not None:
            advance(len(indices))
    return [o for o in out if o is not None]


def warm_up_batches(sizes: List[tuple], batch_size: Optional[int]) -> List[tuple]:
    """(size, views) for each distinct batch shape a round of views of ``sizes`` runs: the fixer chunks each size's
    views by ``batch_size``, so 10 views in chunks of 4 run batches of 4 and 2 and a warm-up needs 6 views, not 10
    (None: every view, as one call per size)."""
    batches = []
    for size, n in Counter(sizes).items():  # sizes in order of first appearance, as the round runs them
        if batch_size is None or n <= batch_size:
            batches.append((size, n))
            continue
        batches.append((size, batch_size))
        if n % batch_size:
            batches.append((size, n % batch_size))
    return batches


def warm_up_fixer(fixer: Any, cameras: Cameras) -> None:
    """Fix black images of ``cameras``' sizes in the batch shapes a round of those views runs (one batch of each
    shape, :func:`warm_up_batches`; one reference each, ``fixer.eager()``) and discard the result: the first fix of
    a process pays one-time costs (cuDNN choosing an algorithm for each new convolution shape, CUDA loading kernels,
    the prompt's encoding), and a round that comes after this one does not. On CUDA it runs on a stream of its own,
    then drops its reference latents and returns its cached memory, so it leaves nothing behind that the round could
    read or that another stream holds. It shares the GPU with training, hence one batch per shape."""
    device = torch.device(getattr(fixer, "device", "cpu"))
    stream = torch.cuda.Stream(device) if device.type == "cuda" else None
    eager = getattr(fixer, "eager", None)
    batch_size = getattr(getattr(fixer, "config", None), "batch_size", None)
    sizes = list(zip(cameras.height.reshape(-1).tolist(), cameras.width.reshape(-1).tolist()))
    try:
        with torch.no_grad(), torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            with eager() if callable(eager) else contextlib.nullcontext():
                for (height, width), views in warm_up_batches(sizes, batch_size):
                    black = torch.zeros(views, 3, int(height), int(width), device=device)
                    refs = black[:, None] if fixer.uses_references else None
                    fixer.fix(black, refs)
                    del black, refs
    finally:
        clear = getattr(fixer, "clear_reference_cache", None)
        if callable(clear):
            clear()
        if stream is not None:
            stream.synchronize()
            torch.cuda.empty_cache()


@dataclass
class NovelViewFixStrategy:
    """Plans and runs fix rounds (see the module docstring); holds settings only."""

    pose_step_fraction: float = 0.25
    """Per-round translation step as a fraction of the scene extent."""
    max_rotation_step_deg: float = 30.0
    """Per-round rotation step cap in degrees."""
    novel_view_scale: float = 1.0
    """Novel views are rendered at this fraction of their reference camera's resolution."""
    alpha_threshold: Optional[float] = 0.5
    """Pixels with rendered opacity at most this are not supervised; None supervises every pixel."""

    @classmethod
    def from_config(cls, config: Any) -> "NovelViewFixStrategy":
        """Settings of a ``Difix3DPipelineConfig``."""
        return cls(
            pose_step_fraction=config.pose_step_fraction,
            max_rotation_step_deg=config.max_rotation_step_deg,
            novel_view_scale=config.novel_view_scale,
            alpha_threshold=config.alpha_threshold if config.use_alpha_mask else None,
        )

    def initialize_state(self, rounds_dir: Optional[Path] = None) -> FixRoundState:
        return FixRoundState(rounds_dir=rounds_dir)

    def plan(
        self, state: FixRoundState, targets: Tensor, references: ReferenceViews, reference_cameras: Cameras
    ) -> RoundPlan:
        """Next novel poses, their reference views and cameras (does not change ``state``)."""
        current = state.novel_poses
        if current is None or current.shape != targets.shape:
            current = references.c2w[references.nearest(targets)]
        shifted = shift_poses(
            current, targets, self.pose_step_fraction, references.extent, np.deg2rad(self.max_rotation_step_deg)
        )
        reference_index = references.nearest(shifted.poses)
        cameras = novel_cameras(shifted.poses, reference_cameras, reference_index, self.novel_view_scale)
        return RoundPlan(shifted.poses, shifted.arrived, reference_index, cameras)

    @torch.no_grad()
    def render(
        self,
        step: int,
        plan: RoundPlan,
        model: Any,
        references: ReferenceViews,
        device: Any,
        advance: Callable[..., Any] = lambda n=1, description=None: None,
        plain_renders: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
    ) -> RoundRenders:
        """Render the planned views (eval mode, no grad) and look up each one's reference image at its size.

        ``plain_renders``: a context in which renders are never post-fixed (the viewer checkbox may be ticked);
        ``advance(n)`` is called once per render (a progress bar's)."""
        started = time.perf_counter()
        cameras = plan.cameras
        was_training = model.training
        model.eval()
        renders, alphas = [], []
        with plain_renders():
            try:
                for i in range(len(cameras)):
                    out = model.get_outputs_for_camera(cameras[i : i + 1].to(device))
                    renders.append(out["rgb"][..., :3].clamp(0, 1).float())  # [H, W, 3]
                    alphas.append(out["accumulation"].reshape(*out["rgb"].shape[:2], 1).float())  # [H, W, 1]
                    advance(1)
            finally:
                model.train(was_training)
        refs = [  # each view's reference training image at the render's size
            references.image(int(r), *img.shape[:2], device=img.device) for r, img in zip(plan.reference_index, renders)
        ]
        names = references.names
        ref_index = [int(r) for r in plan.reference_index]
        return RoundRenders(
            step=int(step), plan=plan, renders=renders, alphas=alphas, references=refs,
            reference_names=[names[r] if r < len(names) else None for r in ref_index],
            render_s=time.perf_counter() - started,
        )

    @torch.no_grad()
    def fix(self, rendered: RoundRenders, fixer: Any, advance: Callable[..., Any] | None = None) -> FixRound:
        """Fix the rendered views with their references and mask them by opacity: the round, ready to commit.

        Runs wherever it is called (a round that overlaps training calls it on the fixer thread): it touches
        neither the model nor the state. ``advance(n)`` is called once per batch of fixed views."""
        # A round fixes a few views: compiling the fixer's fast path would cost more than it saves (ns-render and
        # the viewer, which fix many frames, use it). References are still encoded once across rounds.
        eager = getattr(fixer, "eager", None)
        with eager() if callable(eager) else contextlib.nullcontext():
            fixed = fix_in_batches(fixer, rendered.renders, rendered.references, rendered.plan.cameras, advance)
        threshold = self.alpha_threshold if self.alpha_threshold is not None else -1.0
        plan = rendered.plan
        return FixRound(
            step=rendered.step,
            cameras=plan.cameras,
            fixed=[(f.clamp(0, 1) * 255).round().to(torch.uint8) for f in fixed],
            masks=[a > threshold for a in rendered.alphas],
            renders=rendered.renders,
            references=rendered.references,
            alphas=rendered.alphas,
            arrived=[bool(a) for a in plan.arrived],
            reference_index=[int(r) for r in plan.reference_index],
            reference_names=rendered.reference_names,
        )

    def run(
        self,
        step: int,
        plan: RoundPlan,
        model: Any,
        fixer: Any,
        references: ReferenceViews,
        device: Any,
        progress: Any = None,
        plain_renders: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
        label: str = "",
    ) -> tuple[FixRound, dict]:
        """:meth:`render`, then :meth:`fix`, one after the other. Returns the round and its timing (seconds
        rendering, fixing); ``progress``: a ``difix_ns.progress`` reporter advanced once per render and per fixed
        view, its description ``label`` + the phase."""
        advance = progress.advance if progress is not None else (lambda n=1, description=None: None)
        rendered = self.render(step, plan, model, references, device, advance, plain_renders)
        advance(0, description=f"{label}: fixing")
        started = time.perf_counter()
        fix_round = self.fix(rendered, fixer, advance)
        return fix_round, {"render_s": rendered.render_s, "fix_s": time.perf_counter() - started}

    def commit(self, state: FixRoundState, fix_round: FixRound, pool: NovelViewPool) -> None:
        """Put ``fix_round`` into ``pool`` and advance ``state`` to its poses."""
        pool.update(fix_round.cameras, fix_round.fixed, fix_round.masks, fix_round.step)
        state.novel_poses = fix_round.poses
        state.completed.append(int(fix_round.step))


@dataclass(frozen=True)
class RendersReady:
    """Where a round's CUDA renders are complete: an event recorded after them on the training stream."""

    event: torch.cuda.Event
    training_stream: torch.cuda.Stream

    @classmethod
    def after(cls, rendered: RoundRenders) -> Optional["RendersReady"]:
        """Record the event on the current stream of the renders' device; None for renders not on a GPU."""
        if not rendered.renders or not rendered.renders[0].is_cuda:
            return None
        stream = torch.cuda.current_stream(rendered.renders[0].device)
        event = torch.cuda.Event()
        event.record(stream)
        return cls(event, stream)


@dataclass
class PendingRound:
    """A round rendered at its step and still being fixed (``--pipeline.fix-lag-steps``)."""

    rendered: Optional[RoundRenders]
    """The renders (None for a round restored from disk, fixed already)."""
    fixing: Optional[Future]
    """The fix on the fixer thread (its result: the round and the seconds the fix took); None: fixed at commit."""
    commit_step: int
    """The training step before which the round enters the pool."""
    extent: float
    """Scene extent of the round's references (recorded with the round)."""
    seconds: float
    """Seconds the training thread spent rendering it."""
    result: Optional[tuple[FixRound, dict]] = None
    """The fixed round and its timings, once known."""
    written: bool = False
    """Its files are on disk (a checkpoint was taken while it was pending, or it was restored from them)."""


def fix_beside_training(
    strategy: NovelViewFixStrategy, rendered: RoundRenders, ready: Optional[RendersReady], fixer: Any
) -> tuple[FixRound, float]:
    """``strategy.fix`` as a job for the fixer thread while training goes on; returns the round and the seconds the
    fix took. With CUDA renders (``ready``) a CUDA fixer runs on a stream of its own that first waits for the
    renders, so its kernels run beside the training's instead of queueing behind them; the job returns once the
    round's images are complete, and marks them as read by the training stream next (the caching allocator then
    does not hand their memory to the fixer's stream early)."""
    started = time.perf_counter()
    stream = None
    if ready is not None:
        fixer_device = torch.device(getattr(fixer, "device", "cpu"))
        if fixer_device.type == "cuda":
            stream = torch.cuda.Stream(fixer_device)
            stream.wait_event(ready.event)
        else:
            ready.event.synchronize()
    with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
        fix_round = strategy.fix(rendered, fixer)
        if ready is not None:
            for image in (*fix_round.fixed, *fix_round.masks):
                image.record_stream(ready.training_stream)
            torch.cuda.current_stream(ready.training_stream.device).synchronize()  # copies back to the render device
    if stream is not None:
        stream.synchronize()
    return fix_round, time.perf_counter() - started
