"""Fixers: anything that turns renders into cleaner renders, behind one contract (``ImageFixer``).

``difix_ns.fixer.DifixFixer`` (a Difix-layout model, hub id or local folder) is the default implementation.
Evaluation fixers (control, oracle) and other backends live in this package, one module each.
"""
from difix_ns.fixers.protocol import ImageFixer

__all__ = ["ImageFixer"]
