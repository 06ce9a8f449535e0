"""``difix-viewer``: nerfstudio's ``ns-viewer`` with the Difix3D+ controls, for any run.

The controls ("Difix: fix render", the reference view, the novel-view pool) are
:class:`difix_ns.render.viewer.DifixViewerControls`; this module only parses the command line and hands them to
the ``eval_setup`` patch of :mod:`difix_ns.render.runtime`, so runs of stock ``splatfacto``/``nerfacto`` get them too.
"""
from __future__ import annotations

import sys
from typing import Optional

from difix_ns.fixers.config import FixerConfig


def _viewer_command():
    from dataclasses import dataclass, field

    from nerfstudio.scripts.viewer.run_viewer import RunViewer

    @dataclass
    class DifixRunViewer(RunViewer):
        """ns-viewer with the Difix3D+ controls ("Difix: fix render", reference view, novel-view pool)."""

        fixer: FixerConfig = field(default_factory=lambda: FixerConfig(batch_size=1))
        """Fixer (--fixer.kind, default difix) used when "Difix: fix render" is ticked (a plugin run's own pipeline
        fixer is not used)."""

        def main(self) -> None:
            import nerfstudio.scripts.viewer.run_viewer as run_viewer

            from difix_ns.render.runtime import patched_eval_setup, prepare_runtime
            from difix_ns.render.viewer import DifixViewerControls
            from difix_ns.safe_config import load_run_config

            load_run_config(self.load_config)  # missing, garbage or hostile config.yml: one clear error
            prepare_runtime()
            with patched_eval_setup(run_viewer, fixer_config=self.fixer, enabled=None, controls=DifixViewerControls):
                super().main()

    return DifixRunViewer


def entrypoint(argv: Optional[list] = None) -> None:
    """``ns-viewer`` with the Difix3D+ controls installed on any run (stock splatfacto / nerfacto too)."""
    import tyro

    tyro.extras.set_accent_color("bright_yellow")
    tyro.cli(_viewer_command(), args=argv).main()


if __name__ == "__main__":
    sys.exit(entrypoint())
