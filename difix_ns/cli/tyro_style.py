"""The one command-line style of the plugin's tools: a tyro dataclass whose field docstrings are the help.

Tools whose command line is a Difix3D / NiFi reference script's keep that script's underscored flags
(``--input_image``, ``--data_root``, ``--smoke_test``): :func:`parse` builds them with ``use_underscores=True``, and
boolean options are single flags as in the reference scripts (``--smoke_test``, no ``--no_smoke_test`` pair).
Import-light: only tyro.
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence, Type, TypeVar

import tyro

T = TypeVar("T")
_MARKERS = (tyro.conf.FlagCreatePairsOff,)


def parse(config: Type[T], argv: Optional[Sequence[str]], *, prog: Optional[str] = None,
          description: Optional[str] = None) -> T:
    """Parse ``argv`` (``None``: ``sys.argv[1:]``) into ``config``; bad or missing options exit with code 2."""
    return tyro.cli(config, args=argv, prog=prog, description=description, use_underscores=True, config=_MARKERS)


def parser(config: Type[T], *, prog: Optional[str] = None, description: Optional[str] = None) -> argparse.ArgumentParser:
    """The argparse parser tyro builds for ``config`` (the same flags :func:`parse` accepts), e.g. to list options."""
    return tyro.extras.get_parser(config, prog=prog, description=description, use_underscores=True, config=_MARKERS)


def option_strings(config: Type[T]) -> set[str]:
    """Every ``--flag`` spelling (aliases included) the tool accepts."""
    return {o for action in parser(config)._actions for o in action.option_strings}
