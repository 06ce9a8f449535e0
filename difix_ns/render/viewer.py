"""Difix3D+ in the nerfstudio viewer (ns-viewer and ns-train).

:class:`DifixViewerControls` is attached to the model by :func:`difix_ns.render.postfix.install_render_fix` (it is an
``nn.Module`` without parameters, so the viewer's element parser finds it and checkpoints do not change):

* **"Difix: fix render"** checkbox: renders get ``rgb_fixed`` and the displayed output switches to it (with split
  screen enabled, the split shows ``rgb`` | ``rgb_fixed`` instead); unticking switches back to ``rgb``.
* **"Difix reference"** text: file name of the training view used as reference for the last fixed frame; that
  camera is also drawn as a red frustum (``/difix/reference``).
* The novel-view pool of a ``difix3d`` run (``pipeline.datamanager.novel_pool``) is drawn as frustums carrying their
  fixed images under ``/difix/novel_views``; it is redrawn when a fix round changes the pool.

``difix-viewer`` (:mod:`difix_ns.cli.viewer`) is ns-viewer with these controls on *any* run (stock
``splatfacto``/``nerfacto`` included), for Difix3D+ on models trained without the plugin.
"""
from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from nerfstudio.viewer.viewer_elements import ViewerCheckbox, ViewerControl, ViewerText
from torch import nn

from difix_ns.nerfstudio.fix_round import load_latest_round
from difix_ns.nerfstudio.pool import PoolDataManager
from difix_ns.progress import add_status_listener, remove_status_listener
from difix_ns.render import settings

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras

    from difix_ns.render.postfix import DifixRenderHook

REFERENCE_NODE = "/difix/reference"
POOL_NODE = "/difix/novel_views"
THUMBNAIL_HEIGHT = 100
"""Height in pixels of the images drawn inside frustums (the stock viewer uses 100 too)."""


def _frustum_kwargs(c2w: np.ndarray, fx: float, cx: float, cy: float) -> dict:
    """viser frustum placement of a nerfstudio camera (OpenGL camera axes -> viser's, world scaled like the viewer)."""
    import viser.transforms as vtf
    from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

    rot = vtf.SO3.from_matrix(c2w[:3, :3]) @ vtf.SO3.from_x_radians(np.pi)
    return dict(
        fov=float(2 * np.arctan(cx / fx)),
        aspect=float(cx / cy),
        wxyz=rot.wxyz,
        position=c2w[:3, 3] * VISER_NERFSTUDIO_SCALE_RATIO,
    )


def _thumbnail(image_uint8: torch.Tensor) -> np.ndarray:
    """[H, W, 3] uint8 -> [100, w, 3] uint8 numpy for a frustum."""
    img = image_uint8.permute(2, 0, 1)[None].float()
    h, w = img.shape[-2:]
    size = (THUMBNAIL_HEIGHT, max(1, round(w * THUMBNAIL_HEIGHT / h)))
    img = F.interpolate(img, size=size, mode="bilinear", antialias=True, align_corners=False)
    return img[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def draw_camera_frustums(server: Any, name: str, cameras: "Cameras", images: list, scale: float, color) -> list:
    """Draw ``cameras`` (N views) under scene node ``name`` with their uint8 [H, W, 3] ``images``; returns handles."""
    handles = []
    for i in range(cameras.shape[0]):
        cam = cameras[i : i + 1]
        c2w = cam.camera_to_worlds[0].detach().cpu().double().numpy()
        place = _frustum_kwargs(c2w, float(cam.fx[0, 0]), float(cam.cx[0, 0]), float(cam.cy[0, 0]))
        image = _thumbnail(images[i]) if images is not None else None
        handles.append(
            server.scene.add_camera_frustum(f"{name}/view_{i:04d}", scale=scale, image=image, color=color, **place)
        )
    return handles


class _ViewerHandle(ViewerControl):
    """Receives the viewer at construction (``Viewer`` calls ``_setup`` on every ``ViewerControl`` it finds)."""

    def __init__(self, controls: "DifixViewerControls"):
        self._controls = controls

    def _setup(self, viewer) -> None:
        super()._setup(viewer)
        self._controls.refresh_pool(force=True)


class DifixViewerControls(nn.Module):
    """The viewer controls of Difix3D+ (see the module docstring). Holds no parameters."""

    def __init__(self, hook: "DifixRenderHook", pipeline: Any):
        super().__init__()
        self._hook = hook
        # Stored outside nn.Module's registry: registering the pipeline as a child would make a module cycle.
        self.__dict__["_pipeline"] = pipeline
        self._pool_signature: Optional[tuple] = None
        self._pool_handles: list = []
        self.run_dir: Optional[Path] = None
        """Run directory (set by difix-viewer) used to find persisted fix rounds when the pool is empty."""
        self.pool_source: Optional[str] = None
        """Where the drawn novel views came from (for logs and tests)."""
        self.fix_render = ViewerCheckbox(
            "Difix: fix render",
            False,
            cb_hook=self._on_toggle,
            hint="Post-fix every render with Difix (Difix3D+), using the nearest training view as reference",
        )
        self.reference = ViewerText(
            "Difix reference", "", disabled=True, hint="Training image used as Difix reference for the last frame"
        )
        self.status = ViewerText(
            "Difix status", "", disabled=True, hint="Progress of the running long step (fix round: n/N views, ETA)"
        )
        ref = weakref.ref(self)

        def show_status(text: str) -> None:
            controls = ref()
            if controls is None:
                remove_status_listener(show_status)
            else:
                controls.status.value = text

        add_status_listener(show_status)
        self.viewer_handle = _ViewerHandle(self)
        hook.viewer_enabled = lambda: bool(self.fix_render.value)
        hook.on_reference = self._show_reference
        hook.before_render = self.refresh_pool

    # ------------------------------------------------------------------ helpers

    @property
    def viewer(self):
        """The nerfstudio ``Viewer`` (None outside the viewer, e.g. in ns-render)."""
        return getattr(self.viewer_handle, "viewer", None)

    def _frustum_scale(self) -> float:
        return float(getattr(getattr(self.viewer, "config", None), "camera_frustum_scale", 0.1))

    # ------------------------------------------------------------------ checkbox: switch the displayed output

    def _on_toggle(self, element: ViewerCheckbox) -> None:
        viewer = self.viewer
        if viewer is None:
            return
        panel = viewer.control_panel
        # The control panel has no public API to preselect an output; its dropdown elements are the only handle.
        output_dd, split_dd = panel._output_render, panel._split_output_render
        options = [o for o in output_dd.options if o not in ("not set", settings.OUTPUT_NAME)]
        if element.value:
            options = options + [settings.OUTPUT_NAME]
        if not options:
            return
        panel.update_output_options(options)
        # Keep the per-client render loops from resetting the dropdowns when the new key first appears.
        for machine in getattr(viewer, "render_statemachines", {}).values():
            machine.output_keys = set(options)
        if element.value and panel.split:
            output_dd.value, split_dd.value = "rgb", settings.OUTPUT_NAME
        elif element.value:
            output_dd.value = settings.OUTPUT_NAME
        else:
            output_dd.value = "rgb" if "rgb" in options else options[0]
            if split_dd.value not in options:
                split_dd.value = options[-1]
        panel.update_control_panel()

    # ------------------------------------------------------------------ reference view

    def _show_reference(self, index: int, camera: "Cameras") -> None:
        refs = self._hook.references
        if refs is None:
            return
        self.reference.value = refs.names[index]
        viewer = self.viewer
        if viewer is None:
            return
        c2w = refs.c2w[index].double().numpy()
        cams = getattr(getattr(self._pipeline, "datamanager", None), "train_dataset", None)
        fx, cx, cy = (float(cams.cameras.fx[index]), float(cams.cameras.cx[index]), float(cams.cameras.cy[index])) \
            if cams is not None else (1.0, 1.0, 1.0)
        viewer.viser_server.scene.add_camera_frustum(
            REFERENCE_NODE, scale=self._frustum_scale() * 1.5, color=(255, 40, 40), **_frustum_kwargs(c2w, fx, cx, cy)
        )

    # ------------------------------------------------------------------ novel-view pool

    def _run_dir(self) -> Optional[Path]:
        """The run directory: set by difix-viewer, else the viewer's log file's folder (ns-viewer and ns-train put
        it in the run directory, and nerfstudio's own viewer finds ``config.yml`` there the same way)."""
        if self.run_dir is not None:
            return Path(self.run_dir)
        log_filename = getattr(self.viewer, "log_filename", None)
        return Path(log_filename).parent if log_filename is not None else None

    def _rounds_dir(self) -> Optional[Path]:
        rounds = getattr(self._pipeline, "rounds_dir", None)  # set while training
        run_dir = self._run_dir() if rounds is None else None
        if run_dir is not None:
            name = getattr(getattr(self._pipeline, "config", None), "rounds_dir_name", "difix_rounds")
            rounds = run_dir / name
        return Path(rounds) if rounds is not None else None

    def refresh_pool(self, force: bool = False) -> None:
        """(Re)draw the novel-view pool when it changed since the last draw (cheap check, called before renders).

        Source: the in-memory pool of a difix3d pipeline (``datamanager.novel_pool``) while it holds views, else the
        latest fix round persisted under ``<run>/difix_rounds/step_*/`` (a finished run opened in the viewer), read
        through :mod:`difix_ns.nerfstudio.fix_round` (format-checked like a resume).
        """
        viewer = self.viewer
        datamanager = getattr(self._pipeline, "datamanager", None)
        pool = datamanager.novel_pool if isinstance(datamanager, PoolDataManager) else None  # None: a stock run
        if viewer is None or pool is None:
            return
        cameras = getattr(pool, "cameras", None)
        signature = (len(pool), id(cameras), tuple(getattr(pool, "round_steps", ())[-1:]))
        if signature == self._pool_signature and not force:
            return
        self._pool_signature = signature
        images = list(pool.images) if cameras is not None and len(pool) else None
        if images is None:
            latest = load_latest_round(self._rounds_dir())  # format-checked; a corrupt round names its file
            if latest is None:
                return
            cameras, images = latest.cameras, latest.fixed
            self.pool_source = f"{self._rounds_dir()} (step {latest.step})"
        else:
            self.pool_source = "in-memory pool"
        for handle in self._pool_handles:
            handle.remove()
        self._pool_handles = draw_camera_frustums(
            viewer.viser_server, POOL_NODE, cameras, images, self._frustum_scale(), color=(40, 200, 255)
        )
        from nerfstudio.utils.rich_utils import CONSOLE

        CONSOLE.print(f"Difix: showing {len(images)} novel views ({self.pool_source}) under {POOL_NODE}")
