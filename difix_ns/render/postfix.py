"""Difix3D+: the ``rgb_fixed`` output, added at the one seam ns-render, ns-viewer and eval share.

``install_render_fix(pipeline)`` wraps ``pipeline.model.get_outputs_for_camera`` on the instance, so it works on any
trained model (the plugin's ``difix3d``/``difix3d-splatfacto``, stock ``splatfacto``/``nerfacto``) without a subclass
or retraining. When switched on (see :mod:`difix_ns.render.settings`) every render gets
``outputs["rgb_fixed"]``: the render post-fixed by Difix with the nearest training view as reference.

* The reference is chosen by :class:`difix_ns.geometry.references.ReferenceViews` with the run's own
  ``reference_rotation_weight`` (stock runs: 1.0), so ``rgb_fixed`` and the fix rounds pick the same training view
  for the same camera; the choice is cached per frame (keyed by the camera's pose and intrinsics).
* Frames are fixed in batches when the caller announces the cameras it is about to render
  (:meth:`DifixRenderHook.plan`): the first request renders the next ``batch_size`` planned cameras, fixes them in one
  call and hands out the remaining outputs from a prefetch cache, so ns-render's one-frame-at-a-time loop still
  fixes in batches.
* Planned frames are worked on one batch ahead (``work_ahead``, on by default): when a batch is handed out, the next
  one is already rendered and its fix queued. On CUDA the fixer runs on its own stream, so the next batch's renders
  (gsplat's tile sorting waits for its stream), the reference images' loading and the caller's own per-frame work
  (ns-render's image writing) overlap the fix on the GPU instead of waiting for it. What makes the host wait (the
  cameras' copy to the host; the references' encoding, ``DifixFixer.encode_references``, which reads their cache
  keys back) is done on the caller's stream before the fix is queued, so it does not wait behind the fix still
  running on the fixer's stream. On the CPU only the order of the same work changes. The outputs are the same either
  way (``bench_postfix_render.py``'s ``work_ahead_max_abs_diff``: 0 on an NVIDIA H100); ns-render at batch 8 took
  40.5-42.7 instead of 46.0-51.7 ms a frame with it (H100, 2026-12-06,
  ``docs/gpu_results/bench_postfix_render_h100_session12*.json``).
* A fixer that caches reference latents gets each training view encoded once: the hook keeps the latent by the
  view's training index and size for as long as that fixer is in use (and its reference cache is not cleared), so
  a frame whose reference was seen before neither loads it nor hashes it on the GPU and reads the hash back. Every
  frame's reference is chosen before its render is queued. Nothing then makes the host wait between a frame's
  render and its fix. On an NVIDIA H100 (session 25) this changed nothing measurable one frame at a time (the GPU was
  already busy ~95 % of each frame with nvidia/difix_ref: 25.5 fps; ``docs/gpu_results/README.md``).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from difix_ns.geometry.poses import DEFAULT_ROTATION_WEIGHT
from difix_ns.geometry.references import ReferenceViews
from difix_ns.render import settings

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.data.datasets.base_dataset import InputDataset

    from difix_ns.fixer import DifixFixer, DifixFixerConfig

MIN_FIX_SIZE = 64
"""The fixer needs both sides >= 64 px; smaller renders (viewer previews) are upsampled for fixing, then resized
back."""
INSTALLED_HOOKS = [0]
"""How many models got the render hook in this process (the stock ns-render hint checks it at exit)."""
HOOK_ATTR = "_difix_render_hook"
"""Attribute under which the hook is stored on the model (leading underscore: the viewer's parser skips it)."""


def camera_key(camera: "Cameras") -> tuple:
    """Hashable identity of a single camera: pose, intrinsics and image size (rounded against float noise)."""
    vals = torch.cat(
        [
            camera.camera_to_worlds.reshape(-1),
            camera.fx.reshape(-1),
            camera.fy.reshape(-1),
            camera.cx.reshape(-1),
            camera.cy.reshape(-1),
            camera.width.reshape(-1).float(),
            camera.height.reshape(-1).float(),
        ]
    )
    return tuple(round(v, 4) for v in vals.detach().double().cpu().tolist())


class _LRU(OrderedDict):
    """A small least-recently-used dict."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.capacity:
            self.popitem(last=False)


@dataclass
class _Fixed:
    """A planned frame's outputs with ``rgb_fixed`` (or queued to get it)."""

    outputs: Dict[str, Any]
    done: Optional[Any] = None
    """CUDA event recorded after its fix on the fixer's stream (None: fixed on the caller's stream)."""


def _record_stream(outputs: Dict[str, Any], stream: Any) -> None:
    for value in outputs.values():
        if isinstance(value, Tensor) and value.is_cuda:
            value.record_stream(stream)


class DifixRenderHook:
    """Adds ``rgb_fixed`` to a model's ``get_outputs_for_camera``; see the module docstring."""

    def __init__(
        self,
        model: Any,
        references: Optional[ReferenceViews],
        fixer_config: Optional["DifixFixerConfig"] = None,
        fixer_factory: Optional[Callable[[], "DifixFixer"]] = None,
        enabled: Optional[bool] = None,
        work_ahead: bool = True,
    ):
        self.model = model
        self.references = references
        self.fixer_config = fixer_config
        self.fixer_factory = fixer_factory
        self.enabled = enabled
        """None: follow :func:`settings.render_fix_enabled` (and the viewer checkbox); True/False: force."""
        self.work_ahead = work_ahead
        """With a plan, render the next batch and queue its fix while the current one is handed out (the caller's own
        per-frame work, such as ns-render's image writing, then overlaps the fix; ``scripts/bench_postfix_render.py``
        times it with and without). False: each batch is rendered and fixed when its first frame is asked for."""
        self.viewer_enabled: Callable[[], bool] = lambda: False
        self.on_reference: Optional[Callable[[int, "Cameras"], None]] = None
        """Called with (training index, rendered camera) after every fix; the viewer shows the choice."""
        self.before_render: Optional[Callable[[], None]] = None
        """Called before every render (the viewer redraws the novel-view pool when it changed)."""
        self.original = model.get_outputs_for_camera  # bound method of the class implementation
        self._fixer: Optional["DifixFixer"] = None
        self._fixer_source: Optional[tuple] = None
        self._plan_keys: Dict[tuple, int] = {}
        self._plan: Optional["Cameras"] = None
        self._plan_pending = False
        self._prefetched: Dict[tuple, _Fixed] = {}
        self._plan_key_list: List[tuple] = []
        self._launched_to = 0  # plan frames [.., _launched_to) are rendered and their fix queued
        self._plan_device: Any = torch.device("cpu")
        self._fix_stream: Optional["torch.cuda.Stream"] = None
        self.frames_fixed_ahead = 0
        self._ref_cache = _LRU(4096)  # camera key -> training index, "cached per frame"
        self._ref_images = _LRU(16)  # (training index, H, W, device) -> [3, H, W] on the render device
        self._ref_latents = _LRU(256)  # (training index, H, W, device) -> the fixer's latent of that reference
        self._ref_latents_fixer: Any = None  # (fixer, its reference cache's generation) those latents belong to
        self._lock = threading.RLock()  # viewer render threads and the main thread may both render
        self.last_reference: Optional[int] = None
        self.world_frame: Any = None
        """World frame (``difix_ns.fixers.frames.WorldFrame``) of the rendered cameras, for teacher fixers."""
        self.frames_fixed = 0
        self.fix_calls = 0

    # ------------------------------------------------------------------ switches

    def active(self) -> bool:
        """Whether renders get ``rgb_fixed`` right now."""
        if self.enabled is not None:
            return self.enabled or self.viewer_enabled()
        return settings.render_fix_enabled() or self.viewer_enabled()

    @contextmanager
    def disabled(self) -> Iterator[None]:
        """Within the block renders are plain (e.g. a training-time fix round while the viewer box is ticked)."""
        previous, previous_viewer = self.enabled, self.viewer_enabled
        self.enabled, self.viewer_enabled = False, lambda: False
        try:
            yield
        finally:
            self.enabled, self.viewer_enabled = previous, previous_viewer

    @property
    def fixer(self) -> "DifixFixer":
        """The Difix fixer, built on first use (so ns-render without rgb_fixed never loads diffusers)."""
        config = settings.process_fixer_config() or self.fixer_config
        source = (id(config), id(self.fixer_factory) if config is None else None)
        if self._fixer is None or source != self._fixer_source:
            if config is None and self.fixer_factory is not None:
                self._fixer = self.fixer_factory()
            else:
                from difix_ns.fixers.factory import build_fixer

                self._fixer = build_fixer(config, student_frame=self.world_frame)
            self._fixer_source = source
        return self._fixer

    @property
    def batch_size(self) -> int:
        """Frames per fixer call: the fixer config's batch size, or a factory-built fixer's own (built here if need
        be, so the first batch already has the size every later one has: each new size compiles the fast path once);
        4 for a fixer without a config."""
        config = settings.process_fixer_config() or self.fixer_config
        if config is None and (self._fixer is not None or self.fixer_factory is not None):
            config = getattr(self.fixer, "config", None)
        return max(1, int(getattr(config, "batch_size", 4)))

    def release_fixer(self) -> None:
        """Drop the loaded fixer (frees its memory; the next fixed frame loads it again)."""
        self._fixer = None
        self._fixer_source = None
        self._ref_latents.clear()
        self._ref_latents_fixer = None

    # ------------------------------------------------------------------ planning (batched fixing)

    def plan(self, cameras: Optional["Cameras"]) -> None:
        """Announce the cameras about to be rendered, in order, so frames can be fixed ``batch_size`` at a time.

        Keys are computed at the first render, so in-place changes the caller makes before rendering (ns-render
        rescales the resolution) are seen. ``None`` clears the plan.
        """
        with self._lock:
            self._plan = cameras
            self._plan_keys = {}
            self._plan_key_list = []
            self._plan_pending = cameras is not None
            self._prefetched.clear()
            self._launched_to = 0

    def _planned_index(self, key: tuple) -> Optional[int]:
        if self._plan_pending and self._plan is not None:
            flat = self._plan.flatten() if len(self._plan.shape) > 1 else self._plan
            self._plan = flat
            self._plan_key_list = [camera_key(flat[i : i + 1]) for i in range(flat.shape[0])]
            self._plan_keys = {k: i for i, k in enumerate(self._plan_key_list)}
            self._plan_pending = False
            if self.references is not None and len(self.references) > 0 and flat.shape[0] > 0:
                # every planned frame's reference in one query, read from the plan's own poses (the cameras
                # handed to the renderer may live on the GPU, where each lookup would wait for the fixer)
                nearest = self.references.nearest(flat.camera_to_worlds).tolist()
                for k, ref in zip(self._plan_key_list, nearest):
                    self._ref_cache.put(k, int(ref))
        return self._plan_keys.get(key)

    def _planned_indices(self, start: int, stop: int) -> List[int]:
        """Plan indices in ``[start, stop)`` whose outputs are not handed out yet."""
        stop = min(stop, self._plan.shape[0]) if self._plan is not None else start
        return [j for j in range(start, stop) if self._plan_key_list[j] not in self._prefetched]

    def _render_device(self) -> torch.device:
        device = getattr(self.model, "device", None)  # nerfstudio models: where their parameters are
        return device if isinstance(device, torch.device) else torch.device("cpu")

    def _launch(self, indices: List[int], first: Optional["Cameras"], obb_box: Optional[Any]) -> None:
        """Render planned frames ``indices`` (``first``: the caller's camera for the first one) on the current stream
        and fix them; with ``work_ahead`` on CUDA the fix is queued on the fixer's own stream and not waited for."""
        device = first.camera_to_worlds.device if first is not None else self._plan_device
        cams = [first if (i == 0 and first is not None) else self._plan[j : j + 1].to(device)
                for i, j in enumerate(indices)]
        keys = [self._plan_key_list[j] for j in indices]
        for cam, key in zip(cams, keys):  # before the renders are queued: choosing reads the pose back to the host
            self.reference_index(cam, key)
        outputs = [self.original(cam, obb_box=obb_box) for cam in cams]
        stream, references = None, None
        if self.work_ahead and self._render_device().type == "cuda":
            render_device = self._render_device()
            if self._fix_stream is None or self._fix_stream.device != render_device:
                self._fix_stream = torch.cuda.Stream(render_device)
            stream = self._fix_stream
            # Whatever makes the host wait is done here, on the caller's stream, before the fix is queued: work
            # queued on the fixer's stream waits for the batch still being fixed there, and the GPU would idle while
            # the host prepared this batch after it. That is the cameras' copy to the host (an H100 trace showed
            # ~11 ms a batch) and the references' encoding, which reads their content hashes back (~25 ms a batch).
            cams = [c.to("cpu") for c in cams]
            references = self.reference_batches(cams, outputs, keys)
            stream.wait_stream(torch.cuda.current_stream(render_device))  # the renders and encodings are done there
            for out in outputs:
                _record_stream(out, stream)  # render memory is reused only after the fix has read it
            for batch in references.values():  # reference views or their latents, made here, read by the fix
                tensor = getattr(batch, "latents", batch)
                if isinstance(tensor, Tensor) and tensor.is_cuda:
                    tensor.record_stream(stream)
        with torch.cuda.stream(stream) if stream is not None else nullcontext():
            self.add_fixed(cams, outputs, keys, references)
            done = None
            if stream is not None:
                done = torch.cuda.Event()
                done.record(stream)
        for k, out in zip(keys, outputs):
            self._prefetched[k] = _Fixed(out, done)
        if indices:
            self._launched_to = indices[-1] + 1  # a caller that jumps back in the plan is worked ahead from there

    def _hand_out(self, fixed: "_Fixed") -> Dict[str, Any]:
        """A fixed frame's outputs, safe to use on the current stream."""
        if fixed.done is not None:
            current = torch.cuda.current_stream(self._render_device())
            current.wait_event(fixed.done)
            _record_stream(fixed.outputs, current)  # rgb_fixed was made on the fixer's stream
        return fixed.outputs

    # ------------------------------------------------------------------ the wrapped call

    def get_outputs_for_camera(self, camera: "Cameras", obb_box: Optional[Any] = None) -> Dict[str, Any]:
        """Drop-in replacement of ``model.get_outputs_for_camera`` that adds ``rgb_fixed`` when active."""
        if self.before_render is not None:
            self.before_render()
        if not self.active():
            return self.original(camera, obb_box=obb_box)
        with self._lock, torch.no_grad():
            key = camera_key(camera)
            index = self._planned_index(key)
            if index is None or self._plan is None:  # unplanned (the viewer): render and fix this frame now
                # its reference is chosen before the render is queued: choosing reads the result back to the host,
                # which after the render would leave the GPU idle until the fix is queued
                self.reference_index(camera, key)
                outputs = [self.original(camera, obb_box=obb_box)]
                self.add_fixed([camera], outputs, [key])
                return outputs[0]
            self._plan_device = camera.camera_to_worlds.device  # where the caller keeps its cameras
            if key not in self._prefetched:
                self._launch([index] + self._planned_indices(index + 1, index + self.batch_size), camera, obb_box)
            if self.work_ahead and index >= self._launched_to - self.batch_size:  # in the last launched batch
                ahead = self._planned_indices(self._launched_to, self._launched_to + self.batch_size)
                if ahead:
                    self._launch(ahead, None, obb_box)
                    self.frames_fixed_ahead += len(ahead)
            return self._hand_out(self._prefetched.pop(key))

    # ------------------------------------------------------------------ fixing

    def reference_index(self, camera: "Cameras", key: Optional[tuple] = None) -> Optional[int]:
        """Nearest training view of a camera (cached per frame); None when the run has no training views."""
        if self.references is None or len(self.references) == 0:
            return None
        key = camera_key(camera) if key is None else key
        if key not in self._ref_cache:
            self._ref_cache.put(key, int(self.references.nearest(camera.camera_to_worlds)[0]))
        return self._ref_cache[key]

    def _reference_image(self, index: int, height: int, width: int) -> Tensor:
        """Training view ``index`` as [3, H, W], loaded once, then resized and kept where the renders are (a batch's
        references are stacked there, with no host-side resize, stack or copy per batch)."""
        device = self._render_device()
        slot = (index, height, width, str(device))
        if slot not in self._ref_images:
            self._ref_images.put(slot, self.references.image(index, height, width, device=device).permute(2, 0, 1))
        image = self._ref_images[slot]
        if image.is_cuda:  # kept across batches and streams: its memory is reused only after this stream read it
            image.record_stream(torch.cuda.current_stream(image.device))
        return image

    @staticmethod
    def _size_groups(outputs: List[Dict[str, Any]]) -> Dict[tuple, List[int]]:
        """Frames by render size (H, W): each group is one fixer call."""
        groups: Dict[tuple, List[int]] = {}
        for i, out in enumerate(outputs):
            groups.setdefault(tuple(out["rgb"].shape[:2]), []).append(i)
        return groups

    def reference_batches(self, cameras: List["Cameras"], outputs: List[Dict[str, Any]],
                          keys: Optional[List[tuple]] = None) -> Dict[tuple, Any]:
        """Per render size (H, W), the references of those frames as the fixer takes them: [B, 1, 3, H, W] (each
        frame's nearest training view), encoded by the fixer first when it caches reference latents
        (``DifixFixer.encode_references``), or None when a frame has no reference or the fixer takes none."""
        keys = keys or [camera_key(c) for c in cameras]
        fixer = self.fixer
        if not getattr(fixer, "uses_references", False):
            return {size: None for size in self._size_groups(outputs)}
        refs = [self.reference_index(c, k) for c, k in zip(cameras, keys)]
        batches: Dict[tuple, Any] = {}
        for (height, width), idx in self._size_groups(outputs).items():
            if any(refs[i] is None for i in idx):
                batches[(height, width)] = None
                continue
            if getattr(fixer, "caches_references", False) and min(height, width) >= MIN_FIX_SIZE:
                batches[(height, width)] = self._encoded_references(fixer, [refs[i] for i in idx], height, width)
            else:
                batches[(height, width)] = torch.stack([self._reference_image(refs[i], height, width)
                                                        for i in idx])[:, None]
        return batches

    def _encoded_references(self, fixer: "DifixFixer", indices: List[int], height: int, width: int) -> Any:
        """``fixer.encode_references`` of training views ``indices`` (one reference a frame) for renders of (H, W).

        Each view's latent is kept by its training index and size after its first encoding, for as long as the same
        fixer is in use and its reference cache is not cleared, so a frame whose reference was seen before neither
        loads the image nor hashes its content on the GPU and reads the hash back (that read made the host wait for
        the frame's render before it could queue the fix: the viewer's way, one frame at a time). The latents are
        the ones the fixer's own cache holds, so the frames are the same either way."""
        from difix_ns.fixers.reference_cache import EncodedReferences

        generation = getattr(getattr(fixer, "reference_cache", None), "generation", None)
        kept = self._ref_latents_fixer
        if kept is None or kept[0] is not fixer or kept[1] != generation:
            self._ref_latents.clear()  # another fixer, or this one's cache was cleared (weights edited in place)
            self._ref_latents_fixer = (fixer, generation)
        device = str(self._render_device())
        latents, missing = {}, []
        for i in dict.fromkeys(indices):
            key = (i, height, width, device)
            if key in self._ref_latents:
                latents[i] = self._ref_latents[key]
                self._ref_latents.move_to_end(key)
            else:
                missing.append(i)
        if missing:
            views = torch.stack([self._reference_image(i, height, width) for i in missing])[:, None]
            encoded = fixer.encode_references(views, (height, width))
            if encoded is None:  # the model mixes no references after all: hand it the views
                return torch.stack([self._reference_image(i, height, width) for i in indices])[:, None]
            for row, i in enumerate(missing):
                latents[i] = encoded.latents[row]
                self._ref_latents.put((i, height, width, device), latents[i])
        return EncodedReferences(torch.stack([latents[i] for i in indices]), (height, width))

    def add_fixed(self, cameras: List["Cameras"], outputs: List[Dict[str, Any]], keys: Optional[List[tuple]] = None,
                  references: Optional[Dict[tuple, Any]] = None):
        """Set ``outputs[i]["rgb_fixed"]`` for every frame, fixing same-sized frames together in one batch
        (``references``: :meth:`reference_batches` of these frames, computed here when not given)."""
        keys = keys or [camera_key(c) for c in cameras]
        if references is None:
            references = self.reference_batches(cameras, outputs, keys)
        refs = [self.reference_index(c, k) for c, k in zip(cameras, keys)]
        for (height, width), idx in self._size_groups(outputs).items():
            images = torch.stack([outputs[i]["rgb"][..., :3].permute(2, 0, 1).float() for i in idx])  # [B, 3, H, W]
            fixed = self._fix(images, references[(height, width)], _stack_cameras([cameras[i] for i in idx]))
            for b, i in enumerate(idx):
                rgb = outputs[i]["rgb"]
                outputs[i][settings.OUTPUT_NAME] = fixed[b].permute(1, 2, 0).to(device=rgb.device, dtype=rgb.dtype)
        self.frames_fixed += len(outputs)
        self.fix_calls += len(references)
        if refs and refs[-1] is not None:
            self.last_reference = refs[-1]
            if self.on_reference is not None:
                self.on_reference(refs[-1], cameras[-1])

    def _fix(self, images: Tensor, refs: Optional[Tensor], cameras: Optional["Cameras"] = None) -> Tensor:
        """Fixer call that also accepts renders smaller than the fixer's 64 px minimum."""
        height, width = images.shape[-2:]
        scale = MIN_FIX_SIZE / min(height, width)
        if scale <= 1:
            return self.fixer.fix(images.clamp(0, 1), refs, cameras)
        size = (max(MIN_FIX_SIZE, round(height * scale)), max(MIN_FIX_SIZE, round(width * scale)))
        up = F.interpolate(images, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
        up_refs = None
        if refs is not None:
            b, v = refs.shape[:2]
            up_refs = F.interpolate(refs.flatten(0, 1), size=size, mode="bilinear", align_corners=False)
            up_refs = up_refs.clamp(0, 1).unflatten(0, (b, v))
        fixed = self.fixer.fix(up, up_refs, cameras)  # camera-based fixers scale intrinsics to the image size
        return F.interpolate(fixed, size=(height, width), mode="bilinear", antialias=True, align_corners=False)


def _stack_cameras(cameras: List["Cameras"]) -> Optional["Cameras"]:
    """One ``Cameras`` [N] from single cameras (None when that is not possible, e.g. mixed camera models)."""
    try:
        from difix_ns.nerfstudio.pool import _cat_cameras

        return _cat_cameras([c.reshape((-1,))[:1].to("cpu") for c in cameras])
    except (RuntimeError, ValueError, TypeError, AttributeError):  # AttributeError: camera-like stand-ins
        return None


def reference_dataset(pipeline: Any) -> Optional["InputDataset"]:
    """The training views of a loaded pipeline, with image paths that can be read.

    nerfstudio's ``test_mode="inference"`` (ns-render camera-path / dataset) parses the data with
    ``downscale_factor=1`` to avoid opening images, so its file names point at full-resolution images that may not
    exist (e.g. only ``images_4/`` is present). Then the training split is parsed again with the run's own settings.
    """
    datamanager = getattr(pipeline, "datamanager", None)
    dataset = getattr(datamanager, "train_dataset", None)
    if dataset is None or getattr(datamanager, "test_mode", None) != "inference":
        return dataset
    from nerfstudio.data.datasets.base_dataset import InputDataset

    outputs = datamanager.config.dataparser.setup().get_dataparser_outputs(split="train")
    return InputDataset(outputs)


def get_render_hook(model: Any) -> Optional[DifixRenderHook]:
    """The hook installed on ``model`` (or None)."""
    return model.__dict__.get(HOOK_ATTR)


def install_render_fix(
    pipeline: Any,
    fixer_config: Optional["DifixFixerConfig"] = None,
    fixer_factory: Optional[Callable[[], "DifixFixer"]] = None,
    enabled: Optional[bool] = None,
    viewer_controls: Optional[Callable[[DifixRenderHook, Any], Any]] = None,
) -> DifixRenderHook:
    """Give ``pipeline.model`` the ``rgb_fixed`` output (idempotent; returns the hook).

    ``viewer_controls(hook, pipeline)`` builds the viewer controls (``difix_ns.render.viewer.DifixViewerControls``)
    stored as ``model.difix_render``; call it at the end of a pipeline's ``__init__`` (before the viewer is built).
    References are the pipeline's training views (``pipeline.datamanager.train_dataset``), chosen with the run's
    ``pipeline.config.reference_rotation_weight`` (the fix rounds' setting; 1.0 for runs without one).
    ``fixer_config``/``fixer_factory``: which fixer to use (a process-level config set by
    :func:`settings.enable_render_fix` wins); ``enabled``: force on/off instead of following the process settings.
    """
    model = pipeline.model
    hook = get_render_hook(model)
    if hook is None:
        dataset = reference_dataset(pipeline)
        weight = float(getattr(getattr(pipeline, "config", None), "reference_rotation_weight", DEFAULT_ROTATION_WEIGHT))
        references = ReferenceViews.from_dataset(dataset, weight) if dataset is not None and len(dataset) > 0 else None
        hook = DifixRenderHook(model, references, fixer_config, fixer_factory, enabled)
        from difix_ns.fixers.frames import WorldFrame

        hook.world_frame = WorldFrame.of_pipeline(pipeline)
        model.__dict__[HOOK_ATTR] = hook
        INSTALLED_HOOKS[0] += 1
        # An instance attribute shadows the class method: ns-render, the viewer and eval all call through it.
        model.__dict__["get_outputs_for_camera"] = hook.get_outputs_for_camera
        if viewer_controls:
            model.difix_render = viewer_controls(hook, pipeline)
    else:
        if fixer_config is not None:
            hook.fixer_config = fixer_config
        if fixer_factory is not None:
            hook.fixer_factory = fixer_factory
        if enabled is not None:
            hook.enabled = enabled
    return hook
