"""One-line errors for the mistakes a new user makes with the plugin's nerfstudio methods.

Each check runs before the expensive part and ends the command with one red line saying what to do (exit code 2),
instead of a nerfstudio traceback: ``--eval-mode filename`` on data without train/eval file names, and a
``--load-checkpoint`` of the other model family (a splatfacto checkpoint into the nerfacto-based ``difix3d``, ...).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional

EXIT_BAD_INPUT = 2

FAMILY_METHODS = {"splatfacto": "difix3d-splatfacto (or nifi-splatfacto)", "nerfacto": "difix3d"}
"""Which plugin method starts from a checkpoint of each model family."""


def exit_with(message: str) -> "NoReturn":  # noqa: F821
    """Print ``error: message`` on one line and end the command (exit code 2)."""
    from nerfstudio.utils.rich_utils import CONSOLE

    CONSOLE.print(f"[bold red]error:[/bold red] {message}", soft_wrap=True, highlight=False)
    raise SystemExit(EXIT_BAD_INPUT)


def is_filename_split_error(err: BaseException) -> bool:
    """nerfstudio's ValueError for ``--eval-mode filename`` on image names without train/eval."""
    return isinstance(err, ValueError) and "train/eval in its name" in str(err)


def filename_split_message(data: Optional[Path]) -> str:
    example = ""
    if data is not None:
        folder = Path(data)
        for sub in ("images", "images_2", "images_4", "images_8", ""):
            images = sorted(p.name for p in (folder / sub).glob("*.*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
            if images:
                example = f" (e.g. {images[0]})"
                break
    where = f" in {data}" if data is not None else ""
    return (f"--eval-mode filename needs image file names containing 'train' or 'eval'; the images{where} have "
            f"neither{example}. Use --eval-mode interval --eval-interval 8 (every 8th image is a target view) or "
            f"--eval-mode fraction instead.")


def model_family(keys: Iterable[str]) -> Optional[str]:
    """``"splatfacto"`` / ``"nerfacto"`` from the state-dict keys of a pipeline or model, else None."""
    keys = list(keys)
    if any(k.endswith("gauss_params.means") for k in keys):
        return "splatfacto"
    if any("proposal_networks." in k for k in keys) and any(".field." in k or k.startswith("field.") for k in keys):
        return "nerfacto"
    return None


def check_checkpoint_family(loaded_state: dict, model: Any, method: str) -> None:
    """End with one line when a checkpoint's model family differs from ``model``'s (instead of a KeyError)."""
    theirs = model_family(loaded_state.keys())
    ours = model_family(k for k, _ in model.named_parameters()) or model_family(model.state_dict().keys())
    if theirs is None or ours is None or theirs == ours:
        return
    exit_with(f"the loaded checkpoint holds a {theirs} model, but {method} is {ours}-based: start from it with "
              f"ns-train {FAMILY_METHODS[theirs]}, or load a {ours} checkpoint into {method}.")
