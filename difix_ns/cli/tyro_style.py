"""The one command-line style of the plugin's tools: a tyro dataclass whose field docstrings are the help.

Tools whose command line is a Difix3D / NiFi reference script's keep that script's underscored flags
(``--input_image``, ``--data_root``, ``--smoke_test``): :func:`parse` builds them with ``use_underscores=True``, and
boolean options are single flags as in the reference scripts (``--smoke_test``, no ``--no_smoke_test`` pair).
Import-light: only tyro.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from typing import Optional, Sequence, Type, TypeVar

import tyro

T = TypeVar("T")
_MARKERS = (tyro.conf.FlagCreatePairsOff,)


def parse(config: Type[T], argv: Optional[Sequence[str]], *, prog: Optional[str] = None,
          description: Optional[str] = None, nonempty: Sequence[str] = ()) -> T:
    """Parse ``argv`` (``None``: ``sys.argv[1:]``) into ``config``; bad or missing options exit with code 2.

    ``nonempty`` names list options that need at least one value when given (argparse's ``nargs="+"``): tyro
    accepts a bare ``--rates`` as an empty list, which is refused here with an ``error:`` line naming the option.
    """
    parsed = tyro.cli(config, args=argv, prog=prog, description=description, use_underscores=True, config=_MARKERS)
    for name in nonempty:
        value = getattr(parsed, name)
        if value is not None and len(value) == 0:
            print(f"error: --{name} needs at least one value", file=sys.stderr)
            raise SystemExit(2)
    return parsed


def option_strings(config: Type[T]) -> set[str]:
    """Every ``--flag`` spelling (aliases included) that ``--help`` lists as an option of ``config`` (flags named only
    in help texts do not count): read from the help tyro prints, so it is what users see and :func:`parse` accepts."""
    text = io.StringIO()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "400"  # one option per help line: no flag is wrapped
    try:
        with contextlib.redirect_stdout(text):
            parse(config, ["--help"])
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
    flags = set()
    for line in text.getvalue().splitlines():  # option lines: "│ --flag TYPE, --alias TYPE   help text │"
        head = re.split(r"\s{2,}", line.strip("│ \t"))[0]
        if head.startswith("-"):
            flags.update(re.findall(r"(?<![\w-])--[A-Za-z][\w-]*", head))
    return flags
