"""What every Difix3D+ render tool sets up before it loads a run: offline/CPU support, ffmpeg, the model check, the
``eval_setup`` patch that gives the loaded pipeline its ``rgb_fixed`` output, and the ns-render patch that announces
the cameras about to be rendered (so frames are fixed in batches).

Shared by ``ns-difix-render``, ``difix-trajectory`` and ``difix-viewer``; it imports no CLI and no viewer module
(those pass their viewer controls in), so the render package has no import cycle.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

from difix_ns.fixer import DifixFixerConfig
from difix_ns.render.ffmpeg import ensure_ffmpeg
from difix_ns.render.postfix import get_render_hook, install_render_fix

__all__ = ["batched_rendering", "check_fixer_model", "ensure_ffmpeg", "patched_eval_setup", "prepare_runtime"]


def prepare_runtime() -> None:
    """Let any stock run load and render here.

    * Offline machines: nerfacto and splatfacto build torchmetrics' LPIPS (AlexNet) when the model is constructed,
      which downloads torchvision weights; the offline fallback serves the cached ImageNet features instead
      (a no-op when the download works).
    * Machines without CUDA: splatfacto gets the pure-PyTorch rasterizer (no-op with CUDA).
    """
    from difix_ns.metrics import install_torchvision_offline_fallback

    install_torchvision_offline_fallback()
    if not torch.cuda.is_available():
        os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")
        from difix_ns.splat import install_cpu_support

        install_cpu_support()


@contextmanager
def patched_eval_setup(
    module: Any,
    fixer_config: Optional[DifixFixerConfig],
    enabled: Optional[bool],
    controls: Optional[Callable[[Any, Any], Any]] = None,
) -> Iterator[list]:
    """Within the block, ``module.eval_setup`` also installs the Difix render hook on the loaded pipeline.

    ``controls(hook, pipeline)``: the viewer controls to attach (e.g. ``DifixViewerControls``), or None.

    nerfstudio's render/viewer scripts call ``eval_setup`` inside their ``main``; swapping the module attribute is
    the one place to reach the pipeline without copying those ``main`` bodies. Yields a list that receives the hooks.
    """
    original = module.eval_setup
    hooks: list = []

    def eval_setup_with_fix(*args, **kwargs):
        config, pipeline, checkpoint_path, step = original(*args, **kwargs)
        hooks.append(install_render_fix(pipeline, fixer_config=fixer_config, enabled=enabled, viewer_controls=controls))
        attached = getattr(pipeline.model, "difix_render", None)
        config_path = Path(args[0] if args else kwargs["config_path"])
        if attached is not None:
            attached.run_dir = config_path.parent  # where a difix3d run keeps its fix rounds
        return config, pipeline, checkpoint_path, step

    module.eval_setup = eval_setup_with_fix
    try:
        yield hooks
    finally:
        module.eval_setup = original


def check_fixer_model(fixer: DifixFixerConfig, option: str = "--fixer.model-name") -> None:
    """End the command with one line (exit code 2) when the fixer model cannot be found: before any run is loaded."""
    from difix_ns.diffusion.hub import ModelResolutionError
    from difix_ns.diffusion.model_names import check_difix_model

    if getattr(fixer, "kind", "difix") != "difix":  # evaluation fixers (identity, teacher) load no model
        return
    try:
        check_difix_model(fixer.model_name, option=option)
    except ModelResolutionError as err:
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {err}", soft_wrap=True, highlight=False)
        raise SystemExit(2) from None


@contextmanager
def batched_rendering(render_module: Any, hooks: list, work_ahead: Optional[bool] = None) -> Iterator[None]:
    """Announce to the hook which cameras ns-render is about to render, so frames are fixed in batches;
    ``work_ahead`` (None: the hook's own setting) sets ``DifixRenderHook.work_ahead`` of every hook it plans for."""
    original_video = render_module._render_trajectory_video
    original_loader = render_module.FixedIndicesEvalDataloader

    def plan(hook, cameras) -> None:
        if work_ahead is not None and cameras is not None:
            hook.work_ahead = work_ahead
        hook.plan(cameras)

    def render_video(pipeline, cameras, *args, **kwargs):
        hook = get_render_hook(pipeline.model)
        if hook is not None:
            plan(hook, cameras)
        try:
            return original_video(pipeline, cameras, *args, **kwargs)
        finally:
            if hook is not None:
                hook.plan(None)

    class PlannedDataloader(original_loader):
        def __init__(self, input_dataset, *args, **kwargs):
            super().__init__(input_dataset, *args, **kwargs)
            for hook in hooks:
                plan(hook, input_dataset.cameras)

    render_module._render_trajectory_video = render_video
    render_module.FixedIndicesEvalDataloader = PlannedDataloader
    try:
        yield
    finally:
        render_module._render_trajectory_video = original_video
        render_module.FixedIndicesEvalDataloader = original_loader
