"""Resolve a model name to a local directory: an existing folder, or a Hugging Face hub id (cache-aware).

Hub ids go through ``huggingface_hub.snapshot_download``, which honours ``HF_HOME`` / ``HF_HUB_CACHE`` and
``HF_HUB_OFFLINE=1`` (cached snapshots are used without any network access). Only weights, configs and tokenizer
files are fetched: the ``*.py`` files some checkpoints carry (e.g. NVIDIA's remote code) are never downloaded.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Sequence

# What a diffusers-layout pipeline needs; remote-code ``.py`` files are deliberately absent.
DEFAULT_ALLOW_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelResolutionError(OSError):
    """A model name could not be turned into a usable local directory (missing folder/files, hub unreachable)."""


def looks_like_hub_id(name: str) -> bool:
    return bool(_HUB_ID.match(name)) and not name.startswith((".", "~"))


def resolve_model_dir(
    name_or_path: str | os.PathLike,
    *,
    required_files: Sequence[str] = ("model_index.json",),
    allow_patterns: Iterable[str] = DEFAULT_ALLOW_PATTERNS,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
    what: str = "model",
) -> Path:
    """Return a local directory holding ``required_files`` for a local path or a hub id.

    Raises ``ModelResolutionError`` naming the path / id and what is missing.
    """
    name = os.fspath(name_or_path)
    local = Path(name).expanduser()
    if local.is_dir():
        _check_required(local, required_files, what=what, origin=f"local directory '{local}'")
        return local
    if local.exists():
        raise ModelResolutionError(f"{what} path '{name}' is a file; expected a directory in the Hugging Face layout.")
    if not looks_like_hub_id(name):
        raise ModelResolutionError(
            f"{what} directory '{name}' does not exist (and it is not a Hugging Face hub id of the form 'owner/name')."
        )
    folder = _snapshot(name, allow_patterns, revision, cache_dir, local_files_only, token, what)
    _check_required(folder, required_files, what=what, origin=f"hub snapshot of '{name}' ({folder})")
    return folder


def _snapshot(repo_id, allow_patterns, revision, cache_dir, local_files_only, token, what) -> Path:
    from huggingface_hub import snapshot_download

    offline = local_files_only or os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on")
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=list(allow_patterns),
            local_files_only=bool(offline),
            token=token,
        )
    except Exception as err:  # hub errors come in many classes (offline, DNS, 401/404, ...): report them all alike
        hint = (
            "HF_HUB_OFFLINE is set and the model is not in the local Hugging Face cache"
            if offline
            else "the Hugging Face hub could not be reached or refused the request"
        )
        raise ModelResolutionError(
            f"Could not load {what} '{repo_id}': {hint} ({type(err).__name__}: {err}). "
            f"Download it on a machine with internet access (it is cached under HF_HOME) or pass a local directory "
            f"in the Hugging Face layout instead of the hub id."
        ) from err
    return Path(folder)


def _check_required(folder: Path, required_files: Sequence[str], *, what: str, origin: str) -> None:
    missing = [f for f in required_files if not (folder / f).is_file()]
    if missing:
        raise ModelResolutionError(f"{what} {origin} lacks required file(s): {', '.join(missing)}.")
