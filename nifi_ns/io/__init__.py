"""Gaussian-splat containers and PLY I/O (INRIA 3DGS layout, PlayCanvas compressed PLY): the names of
:mod:`difix_ns.splat_io`, their one home, which both packages use."""

from difix_ns.splat_io import *  # noqa: F401,F403
from difix_ns.splat_io import __all__  # noqa: F401
