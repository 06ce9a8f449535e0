"""Fixers: anything that turns renders into cleaner renders, behind one contract (``ImageFixer``).

``difix_ns.fixer.DifixFixer`` (a Difix-layout model, hub id or local folder) is the default implementation.
Evaluation fixers live in this package, one module each: ``identity`` (control), ``teacher`` (oracle: renders of
another trained run) and ``degraded-teacher``. ``FixerConfig.kind`` picks one; ``build_fixer`` builds it.
"""
from difix_ns.fixers.config import FIXER_KINDS, DegradationConfig, FixerConfig
from difix_ns.fixers.factory import build_fixer
from difix_ns.fixers.protocol import ImageFixer

__all__ = ["ImageFixer", "FixerConfig", "DegradationConfig", "FIXER_KINDS", "build_fixer"]
