"""Training your own Difix fixer: pair curation (``pairs``, ``scenes``, ``splat_runs``), the training loop
(``trainer``, ``model``, ``losses``, ``dataset``) and the from-scratch architectures (``architectures``).

Import the submodules directly; this package imports nothing heavy.
"""
