"""``ns-difix-render``: nerfstudio's ``ns-render`` with a Difix3D+ post-fix flag, for any trained run.

Subcommands ``camera-path``, ``interpolate`` and ``dataset`` are nerfstudio's own (same options, same outputs), plus
``--postfix/--no-postfix`` and ``--fixer.*`` (model name or local directory, dtype, batch size, device). With
``--postfix`` (default) the pipeline loaded by ``eval_setup`` gets the ``rgb_fixed`` output (see
:mod:`difix_ns.render.postfix`; the viewer controls are handed to it from here) and the default
``--rendered-output-names`` becomes ``rgb_fixed``; ask for ``rgb rgb_fixed`` to get both panels side by side.
Works on runs of stock ``splatfacto``/``nerfacto`` (no retraining) and of the plugin's methods. Frames are fixed
``--fixer.batch-size`` at a time.

Example::

    ns-difix-render interpolate --load-config outputs/fox/splatfacto/<ts>/config.yml \\
        --rendered-output-names rgb rgb_fixed --output-path renders/fox.mp4 --fixer.model-name nvidia/difix_ref
"""
from __future__ import annotations

import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Union

import tyro
from typing_extensions import Annotated

from difix_ns.fixers.config import FixerConfig
from difix_ns.render import settings
from difix_ns.render.runtime import (
    batched_rendering,
    check_fixer_model,
    ensure_ffmpeg,
    patched_eval_setup,
    prepare_runtime,
)
from difix_ns.render.viewer import DifixViewerControls

__all__ = ["commands", "entrypoint", "get_parser_fn"]


@dataclass
class PostFixArgs:
    """The options and behaviour the three subcommands add to nerfstudio's (their fields follow nerfstudio's)."""

    postfix: bool = True
    """Post-fix every rendered frame with Difix (adds the rgb_fixed output)."""
    fixer: FixerConfig = field(default_factory=lambda: FixerConfig(batch_size=4))
    """Fixer used for post-fixing: --fixer.kind difix (default, --fixer.model-name) or an evaluation tool."""
    work_ahead: bool = True
    """Render the next batch and queue its fix while the current batch is written (same frames, faster on a GPU;
    --no-work-ahead: one batch at a time)."""

    def _default_output_names(self) -> Optional[List[str]]:
        return [settings.OUTPUT_NAME] if self.postfix else ["rgb"]

    def main(self) -> None:
        import nerfstudio.scripts.render as render_module

        names = self.rendered_output_names
        if not self.postfix and names is not None and settings.OUTPUT_NAME in names:
            raise SystemExit(
                f"error: --rendered-output-names asks for {settings.OUTPUT_NAME} but --no-postfix was given; "
                f"drop {settings.OUTPUT_NAME} or use --postfix"
            )
        if names is None:
            self.rendered_output_names = self._default_output_names()
        if self.postfix and self.fixer.batch_size < 1:
            raise SystemExit(f"error: --fixer.batch-size must be >= 1, got {self.fixer.batch_size}")
        if self.postfix:
            check_fixer_model(self.fixer)  # before the run is loaded: a missing model fails in one line, now
        prepare_runtime()
        ensure_ffmpeg()
        settings.enable_render_fix(self.postfix, self.fixer if self.postfix else None)
        with ExitStack() as stack:
            hooks = stack.enter_context(
                patched_eval_setup(render_module, self.fixer, self.postfix, controls=DifixViewerControls)
            )
            stack.enter_context(batched_rendering(render_module, hooks, work_ahead=self.work_ahead))
            super().main()  # type: ignore[misc]


@dataclass
class PostFixOutputNames:
    """The default outputs of a post-fixed video (nerfstudio's is rgb)."""

    rendered_output_names: Optional[List[str]] = None
    """Outputs to render side by side; default: rgb_fixed with --postfix, rgb with --no-postfix."""


def _render_classes():
    from nerfstudio.scripts.render import DatasetRender, RenderCameraPath, RenderInterpolated

    @dataclass
    class DifixRenderCameraPath(PostFixOutputNames, PostFixArgs, RenderCameraPath):
        """Render a viewer/Blender camera path; with --postfix every frame is fixed by Difix (Difix3D+)."""

    @dataclass
    class DifixRenderInterpolated(PostFixOutputNames, PostFixArgs, RenderInterpolated):
        """Render a trajectory interpolating the eval or train cameras; with --postfix frames are fixed by Difix."""

    @dataclass
    class DifixDatasetRender(PostFixArgs, DatasetRender):
        """Render every image of a split (one folder per output); with --postfix an rgb_fixed folder is added."""

        def _default_output_names(self) -> Optional[List[str]]:
            return None  # nerfstudio's default for dataset renders: every output (gt-rgb, rgb, ..., rgb_fixed)

    return DifixRenderCameraPath, DifixRenderInterpolated, DifixDatasetRender


def commands():
    """The tyro subcommand union of ns-difix-render."""
    camera_path, interpolate, dataset = _render_classes()
    return Union[
        Annotated[camera_path, tyro.conf.subcommand(name="camera-path")],
        Annotated[interpolate, tyro.conf.subcommand(name="interpolate")],
        Annotated[dataset, tyro.conf.subcommand(name="dataset")],
    ]


def entrypoint(argv: Optional[List[str]] = None) -> None:
    """Console script ``ns-difix-render``."""
    tyro.extras.set_accent_color("bright_yellow")
    cmd = tyro.cli(commands(), args=argv)
    from difix_ns.safe_config import load_run_config

    if cmd.postfix and Path(cmd.load_config).is_file():
        check_fixer_model(cmd.fixer)  # a missing model: one line, before the run's config is even parsed
    load_run_config(Path(cmd.load_config))  # missing, garbage or hostile config.yml: one clear error, nothing runs
    cmd.main()


def get_parser_fn():
    """Parser for the docs."""
    return tyro.extras.get_parser(commands())  # noqa


if __name__ == "__main__":
    sys.exit(entrypoint())
