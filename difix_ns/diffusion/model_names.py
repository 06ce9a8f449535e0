"""Fixer model names as users type them: a hub id, a local folder, or ``random-tiny``; one error style for all.

* ``random-tiny`` builds a tiny random-weight Difix (``nvidia/difix_ref`` layout) once per process in a temporary
  folder, and prints the PLUMBING ONLY banner: its outputs are noise, numbers from it say nothing about quality.
* :func:`check_difix_model` resolves a name without loading weights, so tools can fail before any expensive work
  (loading a nerfstudio run, training) with one line that says what to do offline.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Optional, Tuple

from difix_ns.diffusion.hub import ModelResolutionError, resolve_model_dir
from difix_ns.diffusion.random_weights import (  # noqa: F401  (re-exported)
    PLUMBING_NOTE,
    RANDOM_WEIGHTS_MARKER,
    has_random_weights,
    mark_random_weights,
)

RANDOM_TINY = "random-tiny"
"""Model name that stands for a tiny random-weight Difix (plumbing only)."""
OFFLINE_HINT = (
    "Offline: make a tiny random model with `difix-make-tiny-model DIR` and pass DIR, or pass `random-tiny` "
    "(random weights: plumbing only, not quality)."
)

_lock = threading.Lock()
_tiny_dir: Optional[Path] = None


def is_random_tiny(name: object) -> bool:
    return str(name).strip().lower() == RANDOM_TINY


def plumbing_banner(what: str = "--model_name random-tiny", console=None) -> None:
    """The loud PLUMBING ONLY panel (stderr)."""
    from rich.console import Console
    from rich.panel import Panel

    (console or Console(stderr=True)).print(Panel(
        f"[bold]{what}[/]: a tiny Difix model with RANDOM weights.\n"
        "Its outputs are noise-like: this run checks the plumbing (load -> fix -> write), NOT quality.\n"
        "For real results use nvidia/difix_ref, or a local directory holding a copy of it.",
        title="PLUMBING ONLY", border_style="bold yellow"))


def random_tiny_dir() -> Path:
    """Folder of the process's tiny random Difix (built on first call, removed at exit)."""
    global _tiny_dir
    with _lock:
        if _tiny_dir is None:
            from difix_ns.testing import save_tiny_difix

            root = Path(tempfile.mkdtemp(prefix="difix-random-tiny-"))
            atexit.register(shutil.rmtree, root, True)
            _tiny_dir = save_tiny_difix(root / "difix_ref_tiny", reference_mixing=True)
        return _tiny_dir


def resolve_difix_model(name: str, option: str = "--model_name") -> Tuple[str, bool]:
    """``(name or folder to load, plumbing_only)``; ``random-tiny`` prints the banner and builds the tiny model; a
    folder marked as random weights gives ``plumbing_only`` (the loader prints the banner once it loaded)."""
    if is_random_tiny(name):
        plumbing_banner(f"{option} random-tiny")
        return str(random_tiny_dir()), True
    return str(name), has_random_weights(name)  # e.g. a folder written by difix-make-tiny-model


def model_error_message(name: str, err: BaseException, option: Optional[str] = "--model_name") -> str:
    """One line: the option and name (when ``option`` is given), what went wrong, and what to do offline."""
    text = " ".join(str(err).split())
    if OFFLINE_HINT not in text:
        text = f"{text} {OFFLINE_HINT}"
    return f"{option} {name}: {text}" if option else text


def check_difix_model(name: str, option: str = "--model_name") -> None:
    """Raise ``ModelResolutionError`` (one line, with the offline hint) when ``name`` cannot be loaded.

    Resolves hub ids through the local cache / hub without loading weights; ``random-tiny`` always passes.
    """
    if is_random_tiny(name):
        return
    local = Path(str(name)).expanduser()
    if local.is_dir():  # an NVIDIA Fixer-layout folder (detected by its files) is a valid fixer model too
        from difix_ns.fixers.cosmos_files import is_fixer_dir

        if is_fixer_dir(local):
            return
    try:
        resolve_model_dir(name, required_files=("model_index.json",), what="Difix model")
    except ModelResolutionError as err:
        raise ModelResolutionError(model_error_message(name, err, option)) from None

