"""The marker of random-weight model folders: written by the tiny model makers, read by every tool that loads a model
and reports numbers, so those numbers say "plumbing only". Standard library only (imported by the makers and the
loaders alike)."""
from __future__ import annotations

import json
from pathlib import Path

RANDOM_WEIGHTS_MARKER = "RANDOM_WEIGHTS.json"
"""File the tiny random-weight model writers put in the model folder; tools that load the folder say PLUMBING ONLY."""
PLUMBING_NOTE = "random weights: numbers check plumbing, not quality"
"""The note every JSON written from a random-weight model carries."""


def mark_random_weights(folder) -> None:
    """Mark a model folder as random weights (read by :func:`has_random_weights`)."""
    Path(folder, RANDOM_WEIGHTS_MARKER).write_text(json.dumps({"random_weights": True, "note": PLUMBING_NOTE}) + "\n")


def has_random_weights(folder) -> bool:
    """True for a model folder written by a tiny random-weight maker (difix-make-tiny-model, NiFi's smoke models)."""
    return folder is not None and Path(str(folder), RANDOM_WEIGHTS_MARKER).is_file()
