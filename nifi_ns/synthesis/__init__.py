"""Artifact synthesis: (clean photo, degraded render) pairs per rate, from a trained run (``from_run``) or from
renders of an external codec (``precomputed``), written in the pair layout of ``layout``."""
